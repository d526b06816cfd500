#include "dist/testbed/reliability.h"
#include "core/progress.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <thread>

#include "dist/testbed/cluster.h"
#include "dist/runtime/host.h"
#include "dist/runtime/palette_wire.h"
#include "dist/plan/profile.h"
#include "models/catalog.h"
#include "models/zoo.h"

namespace eb::dist {

std::vector<double> parse_range(const std::string& spec) {
  double a, b, s;
  char c1, c2;
  if (std::sscanf(spec.c_str(), "%lf%c%lf%c%lf", &a, &c1, &b, &c2, &s) != 5 || c1 != ':' ||
      c2 != ':' || !(s > 0) || !(b >= a) || !(a >= 0) || (b - a) / s > 10000)
    throw std::invalid_argument("range '" + spec +
                                "': expected FROM:TO:STEP with 0 <= FROM <= TO, STEP > 0");
  std::vector<double> v;
  for (double x = a; x <= b + 1e-9; x += s) v.push_back(x);
  return v;
}

std::vector<ReliabilityRow> reliability_table(const std::vector<RequestLog>& log,
                                              const std::vector<std::string>& scheme_names,
                                              double model_top1,
                                              const std::vector<double>& deadlines_ms) {
  std::vector<ReliabilityRow> rows;
  if (log.empty()) return rows;
  const double n = double(log.size());
  for (double d : deadlines_ms) {
    for (size_t s = 0; s < scheme_names.size(); ++s) {
      ReliabilityRow r{d, scheme_names[s], 0, model_top1, 0};
      for (const RequestLog& q : log) r.reliability += q.scheme_ms.at(s) <= d ? 1 : 0;
      r.reliability /= n;
      r.effective_accuracy = r.reliability * model_top1;
      rows.push_back(r);
    }
    ReliabilityRow sel{d, "halp+select", 0, 0, 0};
    for (const RequestLog& q : log) {
      if (q.candidates.empty()) continue;
      const size_t i = choose(q.candidates, d).index;
      const bool met = q.candidate_ms.at(i) <= d;
      sel.reliability += met ? 1 : 0;
      sel.mean_accuracy += q.candidates[i].accuracy;
      sel.effective_accuracy += met ? q.candidates[i].accuracy : 0;
    }
    sel.reliability /= n, sel.mean_accuracy /= n, sel.effective_accuracy /= n;
    rows.push_back(sel);
  }
  return rows;
}

ModelOption DeployedModel::option() const {
  return {name, top1, g.get(), std::vector<DeviceProfile>(size_t(host->alive() + 1), profile),
          input_levels};
}

void DeployedModel::set_input(Tensor image) {
  input_levels = images_palette_levels({image});
  input = std::move(image);
}

DeployedModel deploy_model(const std::string& name, const std::vector<std::string>& workers,
                           const RuntimeOptions& ro) {
  DeployedModel d;
  d.name = models::parse_model_name(name).canonical();
  uint64_t hash = 0;
  // One build gives the graph and its identity.
  d.g = std::make_shared<Graph>(models::load_model(name, "", &hash, models::Hold::lean));
  d.host = std::make_unique<HostRuntime>(d.g, hash, workers, ro);
  d.profile = measure_profile(*d.g, "device", 3, /*least=*/true);  // busy CPUs only add time
  d.top1 = models::top1_accuracy(name);
  Tensor in(d.g->input);
  for (size_t k = 0; k < in.size(); ++k) in.data()[k] = float(int(k * 2654435761u % 255) - 127) / 127.0f;
  d.set_input(std::move(in));
  return d;
}

double run_and_estimate(DeployedModel& d, const std::vector<Tensor>& images, const Plan& p,
                        BandwidthEstimator& est, InferStats* st) {
  InferStats own;
  if (!st) st = &own;
  d.host->infer(images, p, st);
  for (const InferStats::Wire& w : st->wires)
    if (w.src == 0) est.add(w.bytes, double(w.t1_us - w.t0_us) * 1e-6);
  return st->ms;
}

ReliabilityReport run_reliability(const ReliabilityOptions& o) {
  if (o.devices < 2 || o.devices > 16) throw std::invalid_argument("--devices must be in [2, 16]");
  if (o.requests < 1 || o.requests > 100000)
    throw std::invalid_argument("--requests must be in [1, 100000]");
  if (o.deadlines_ms.empty()) throw std::invalid_argument("no deadlines");
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const int threads = o.threads > 0 ? o.threads : std::max(1, int(cores) / o.devices);
  omp_set_num_threads(threads);
  CpuShares shares(o.devices, o.cpu_share);
  shares.assign(0, getpid());
  std::vector<std::unique_ptr<WorkerProcess>> workers;
  std::vector<std::string> addrs;
  for (int d = 1; d < o.devices; ++d) {
    workers.push_back(std::make_unique<WorkerProcess>(o.self_exe, threads));
    shares.assign(d, workers.back()->pid());
    addrs.push_back(workers.back()->addr());
  }
  RuntimeOptions ro;
  ro.shaping.enabled = true;
  ro.shaping.link = parse_link("1gbit," + std::to_string(o.link_latency_ms) + "ms");
  ro.shaping.channel = std::make_shared<BandwidthTrace>(o.channel);
  ro.shaping.epoch = Clock::now();
  ro.timeout_ms = 30000;
  DeployedModel main = deploy_model(o.model, addrs, ro);
  std::vector<DeployedModel> cands;
  for (const std::string& c : o.candidates.empty() ? models::mobilenet_candidates() : o.candidates)
    cands.push_back(deploy_model(c, addrs, ro));

  ReliabilityReport rep;
  const std::vector<Scheme> fixed{Scheme::local, Scheme::modnn, Scheme::dpfp, Scheme::halp};
  for (Scheme s : fixed) rep.schemes.push_back(s == Scheme::local ? "standalone" : scheme_name(s));
  // The host's live estimate: seeded with the trace's mean, then fed by measured transfers.
  BandwidthEstimator est(o.channel.mean_mbit() * 1e6);
  const double interval_s = o.channel.period_s / o.requests;
  auto shape = [&] {  // the link as the host estimates it now
    Cluster c;
    c.link = ro.shaping.link;
    c.link.bits_per_s = est.bits_per_s();
    return c;
  };
  for (int r = 0; r < o.requests; ++r) {
    report_progress("request " + std::to_string(r + 1) + "/" + std::to_string(o.requests));
    // Requests are spread over one period of the channel, in real time.
    std::this_thread::sleep_until(
        ro.shaping.epoch +
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(r * interval_s)));
    RequestLog q;
    q.t_s = std::chrono::duration<double>(Clock::now() - ro.shaping.epoch).count();
    q.true_mbit = o.channel.rate_mbit_at(q.t_s);
    q.est_mbit = est.bits_per_s() / 1e6;
    for (Scheme s : fixed) {
      const Cluster c = main.option().on(shape());
      q.scheme_ms.push_back(run_and_estimate(main, {main.input}, make_plan(*main.g, c, s), est));
    }
    // Every candidate is predicted as infer --deadline predicts (select_model), then run, so
    // that the table can score the selection at every deadline.
    std::vector<ModelOption> options;
    for (const DeployedModel& c : cands) options.push_back(c.option());
    Predictions pred = predict(options, shape());
    for (size_t i = 0; i < cands.size(); ++i)
      q.candidate_ms.push_back(run_and_estimate(cands[i], {cands[i].input}, pred.plans[i], est));
    q.candidates = std::move(pred.candidates);
    rep.requests.push_back(std::move(q));
  }
  rep.rows = reliability_table(rep.requests, rep.schemes, main.top1, o.deadlines_ms);
  rep.schemes.push_back("halp+select");
  return rep;
}

}  // namespace eb::dist
