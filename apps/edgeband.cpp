// edgeband: one static binary, one subcommand per job. Only flag parsing and printing here;
// the work is done by the libraries.
#include <omp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <exception>
#include <fstream>
#include <string>
#include <thread>

#include "apps/bench.h"
#include "apps/cli.h"
#include "apps/svg.h"
#include "core/image.h"
#include "core/progress.h"
#include "core/weights_io.h"
#include "dist/plan/memory.h"
#include "dist/plan/planner.h"
#include "dist/plan/stats.h"
#include "dist/runtime/data_path.h"
#include "dist/runtime/host.h"
#include "dist/runtime/palette_wire.h"
#include "dist/runtime/crypto.h"
#include "dist/runtime/handshake.h"
#include "dist/runtime/tcp.h"
#include "dist/runtime/worker.h"
#include "dist/testbed/cluster.h"
#include "dist/testbed/dilation.h"
#include "dist/testbed/reliability.h"
#include "kernels/microkernels.h"
#include "models/catalog.h"
#include "models/classify.h"
#include "models/import/importers.h"
#include "models/zoo.h"

namespace {

using eb::cli::Args;
using eb::cli::split_list;

// Threads, kernels and (except for cluster, which gives each device its own) dilation.
void common(const Args& a, bool dilation = true) {
  if (a.has("threads")) omp_set_num_threads(a.integer("threads", 1));
  if (a.has("isa")) eb::kernels::set_active(eb::kernels::parse_isa(a.str("isa").c_str()));
  if (dilation && a.has("dilate")) {
    const double f = a.number("dilate", 1);
    // Dilation counts the calling thread's CPU time only (dist/testbed/dilation.h).
    if (f > 1 && a.integer("threads", 1) != 1)
      throw std::invalid_argument("--dilate needs one compute thread (--threads 1)");
    if (f > 1) omp_set_num_threads(1);
    eb::set_compute_dilation(f);
  }
}

// cluster, reliability: devices x --threads against this machine's cores (0: cores / devices).
void warn_if_devices_share_cores(const char* cmd, int devices, int threads) {
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  if (threads * devices > cores)
    std::fprintf(stderr,
                 "edgeband %s: warning: %d devices x %d threads on %d cores: devices that share "
                 "cores slow each other down (leave --threads out: cores / devices)\n",
                 cmd, devices, threads, cores);
}

// worker, infer: the processes of one testbed name the same file (cluster picks its own).
void dilation_turns(const Args& a) {
  if (a.has("dilate-lock") && a.str("dilate-lock") != "none")
    eb::set_dilation_turns(a.str("dilate-lock"));
}

void write_text_file(const std::string& path, const std::string& text, const char* what) {
  std::ofstream f(path);
  if (!(f << text) || !f.flush()) throw std::runtime_error("cannot write '" + path + "'");
  std::fprintf(stderr, "wrote %s (%s)\n", path.c_str(), what);
}

// Built-in models without --weights carry deterministic random weights: fine for timing and
// planning, meaningless as classes.
void warn_if_synthetic(const Args& a, const eb::Graph& g) {
  if (!a.has("weights"))
    std::fprintf(stderr,
                 "warning: no --weights: '%s' has synthetic (random) weights, so its classes mean "
                 "nothing (convert real weights: edgeband convert --help)\n",
                 g.model.c_str());
}

eb::Tensor load_image_input(const std::string& path, const eb::Graph& g) {
  const eb::RgbImage im = eb::load_image(path);
  if (std::min(im.h, im.w) * 2 < g.input.h)
    std::fprintf(stderr,
                 "warning: %s is %dx%d, much smaller than the model's %dx%d input: it is upscaled "
                 "and the result may mean little\n",
                 path.c_str(), im.w, im.h, g.input.w, g.input.h);
  return eb::preprocess(im, g.input.h, g.norm);
}

float max_abs_difference(const eb::Tensor& a, const eb::Tensor& b) {
  float m = a.size() == b.size() ? 0.0f : INFINITY;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    m = std::max(m, std::fabs(a.data()[i] - b.data()[i]));
  return m;
}

void print_top(const eb::Tensor& out, const eb::Graph& g, int k) {
  for (const auto& p : eb::top_k(out, k)) {
    const char* label = size_t(p.index) < g.labels.size() ? g.labels[size_t(p.index)].c_str() : "";
    std::printf("  %4d  %.5f  %s\n", p.index, double(p.prob), label);
  }
}

// Devices a plan gives work (rows or FC channels) and the share of the spatial rows the host
// computes, as planned.
struct PlanWork {
  int devices_used = 0;
  double host_rows = 0;
};
PlanWork plan_work(const eb::dist::Plan& p) {
  std::vector<bool> used(size_t(std::max(1, p.devices)), false);
  used[0] = true;
  double host_share = 0;
  // A batch's image plans (whole and split images): the union of their devices, the mean share.
  const size_t plans = std::max<size_t>(1, p.image_plans.size());
  for (size_t i = 0; i < plans; ++i) {
    const eb::dist::Plan& ip = p.for_image(i);
    double host = 0, all = 0;
    for (const auto& b : ip.blocks)
      for (size_t d = 0; d < b.zones.size(); ++d)
        for (const auto& r : b.zones[d]) {
          if (!r.empty()) used[d] = true;
          all += r.size();
          if (d == 0) host += r.size();
        }
    for (const auto& t : ip.tail_slices)
      for (size_t d = 0; d < t.size(); ++d)
        if (!t[d].empty()) used[d] = true;
    host_share += (all > 0 ? host / all : 1.0) / double(plans);
  }
  return {int(std::count(used.begin(), used.end(), true)), host_share};
}

// A batch plan that runs images whole (Plan::image_plans): which device runs which image, and
// how the others are shared (a pipelined image: the early blocks split, the deep ones on a worker).
void print_whole_images(const eb::Graph& g, const eb::dist::Plan& p) {
  if (p.image_plans.empty()) return;
  std::printf("  images:");
  for (size_t i = 0; i < p.image_plans.size(); ++i) {
    const eb::dist::Plan& ip = p.image_plans[i];
    const int d = ip.sole_device(), deep = eb::dist::finishing_worker(g, ip);
    if (d >= 0) std::printf("  %zu whole on dev%d", i, d);
    else if (deep > 0) std::printf("  %zu pipelined as below (its blocks end on dev%d)", i, deep);
    else std::printf("  %zu split as below", i);
  }
  std::printf("\n");
}

// One line when a distributed scheme's plan keeps everything on the host, with the reason: the
// best split over every device, forced, is predicted slower than one device.
void explain_fallback(const eb::Graph& g, const eb::dist::Cluster& c, const eb::dist::Plan& p) {
  if (p.scheme == eb::dist::Scheme::local || c.devices.size() < 2) return;
  const PlanWork w = plan_work(p);
  if (w.devices_used == int(c.devices.size())) return;
  const double local = eb::dist::make_plan(g, c, eb::dist::Scheme::local, p.batch).predicted_ms;
  eb::dist::Plan forced =
      eb::dist::best_blocks(g, c, p.scheme, 1.0 / double(c.devices.size()), p.batch);
  eb::dist::simulate(g, c, forced);
  if (w.devices_used == 1)
    std::printf("[%s] falls back to local: splitting over %zu devices on link %s is predicted at "
                "%.2f ms against %.2f ms on one device (moving rows costs more than it saves)\n",
                eb::dist::scheme_name(p.scheme), c.devices.size(), c.link.str().c_str(),
                forced.predicted_ms, local);
  else
    std::printf("[%s] uses %d of %zu devices: more would be slower on link %s (all %zu: %.2f ms "
                "predicted)\n",
                eb::dist::scheme_name(p.scheme), w.devices_used, c.devices.size(),
                c.link.str().c_str(), c.devices.size(), forced.predicted_ms);
}

int cmd_run(const Args& a) {
  common(a);
  eb::Graph g = eb::models::load_model(a.str("model"), a.str("weights"), nullptr, eb::models::Hold::lean);
  eb::Tensor in;
  if (a.has("input-tensor") == a.has("image"))
    throw std::invalid_argument("give one of --image FILE or --input-tensor FILE");
  if (a.has("input-tensor"))
    in = eb::load_raw_tensor(a.str("input-tensor"), g.input);
  else
    in = load_image_input(a.str("image"), g);
  warn_if_synthetic(a, g);
  // One warm-up run (first touch of weights and buffers), then the median of the timed runs.
  eb::Tensor out = g.forward(in);
  const int runs = a.integer("runs", 3);
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    const double t0 = omp_get_wtime();
    out = g.forward(in);
    ms.push_back((omp_get_wtime() - t0) * 1e3);
  }
  std::printf("model %s, input %s, %.2f ms (median of %d runs after a warm-up run; %d threads, "
              "%s)\n",
              g.model.c_str(), g.input.str().c_str(), eb::median(ms), runs,
              omp_get_max_threads(), eb::kernels::isa_name(eb::kernels::active().isa));
  print_top(out, g, a.integer("top", 5));
  return 0;
}

int cmd_bench(const Args& a) {
  common(a);
  const eb::Graph g = eb::models::load_model(a.str("model"), a.str("weights"), nullptr, eb::models::Hold::lean);
  const int runs = a.integer("runs", 10);
  // Eight warm-up runs, as ncnn's benchncnn does: the first runs after another large process
  // exits are slower on this VM for a second or so (the kernel is still reclaiming its memory).
  const eb::BenchResult r = eb::benchmark(g, runs, a.integer("warmup", 8));
  eb::cli::progress_done();
  const char* isa = eb::kernels::isa_name(eb::kernels::active().isa);
  if (a.has("json")) {
    eb::Json j = eb::Json::object();
    j["model"] = g.model;
    j["threads"] = omp_get_max_threads();
    j["isa"] = isa;
    j["runs"] = runs;
    j["median_ms"] = r.median_ms;
    j["min_ms"] = r.min_ms;
    j["max_ms"] = r.max_ms;
    j["gflops"] = r.gflops;
    j["model_gflop"] = g.flops() / 1e9;
    if (a.has("layers")) {
      eb::Json ls = eb::Json::array();
      for (int i = 0; i < g.size(); ++i) {
        eb::Json l = eb::Json::object();
        l["name"] = g.node(i).name;
        l["type"] = g.node(i).layer->type();
        l["median_ms"] = r.layer_median_ms[size_t(i)];
        ls.push_back(l);
      }
      j["layers"] = ls;
    }
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("model %s  threads %d  isa %s  runs %d\n", g.model.c_str(), omp_get_max_threads(),
              isa, runs);
  std::printf("median %.2f ms  min %.2f ms  max %.2f ms  %.2f GFLOP  %.1f GFLOP/s\n", r.median_ms,
              r.min_ms, r.max_ms, g.flops() / 1e9, r.gflops);
  if (a.has("layers")) {
    // Peak: this ISA's FMA throughput on one core, measured now, times the threads. Winograd
    // layers count the FLOPs of a direct convolution (F(6,3) does 5.06x fewer multiplies,
    // F(4,3) 4x, F(2,3) 2.25x), so they can pass 100%.
    const double peak = eb::kernels::measure_fma_peak_gflops(eb::kernels::active()) *
                        omp_get_max_threads();
    std::printf("peak %.1f GFLOP/s (%s FMAs, %d thread%s, measured)\n", peak, isa,
                omp_get_max_threads(), omp_get_max_threads() == 1 ? "" : "s");
    std::printf("%-18s %-16s %-14s %9s %9s %7s\n", "layer", "type", "output", "ms", "GFLOP/s",
                "% peak");
    for (int i = 0; i < g.size(); ++i) {
      const auto& n = g.node(i);
      const double ms = r.layer_median_ms[size_t(i)];
      const double f = n.layer->flops({0, n.layer->output_shape().h});
      const double gf = ms > 0 ? f / 1e6 / ms : 0.0;
      std::printf("%-18s %-16s %-14s %9.3f %9.1f %6.0f%%\n", n.name.c_str(),
                  n.layer->type().c_str(), n.layer->output_shape().str().c_str(), ms, gf,
                  100 * gf / peak);
    }
  }
  return 0;
}

int cmd_export(const Args& a) {
  if (!a.has("o")) throw std::invalid_argument("export needs -o FILE");
  eb::Graph g = eb::models::build_synthetic(a.str("model"));
  const uint64_t h = eb::save_weights(g, a.str("o"));
  std::printf("wrote %s (%s, checksum %016llx)\n", a.str("o").c_str(), g.model.c_str(),
              static_cast<unsigned long long>(h));
  return 0;
}

// "a,b,c" or one value for all three channels.
std::array<float, 3> parse_triple(const std::string& s, const char* what) {
  const std::vector<std::string> parts = split_list(s);
  std::array<float, 3> v{};
  if (parts.size() != 1 && parts.size() != 3)
    throw std::invalid_argument(std::string(what) + " takes one value or three (r,g,b)");
  for (size_t i = 0; i < 3; ++i) {
    char* end = nullptr;
    const std::string& p = parts[parts.size() == 1 ? 0 : i];
    v[i] = std::strtof(p.c_str(), &end);
    if (end == p.c_str() || *end || !(v[i] == v[i]))
      throw std::invalid_argument(std::string(what) + ": bad number '" + p + "'");
  }
  return v;
}

// --preset, then --mean/--std over it. ONNX files carry no normalisation and torchvision's
// differs from the engine's default [-1, 1]: converting one without any is never silent.
void set_normalisation(const Args& a, const std::vector<std::string>& in, eb::Graph& g) {
  if (a.has("preset")) {
    if (a.str("preset") == "imagenet") {  // torchvision: (x / 255 - mean) / std, RGB
      g.norm.mean = {0.485f * 255, 0.456f * 255, 0.406f * 255};
      g.norm.std = {0.229f * 255, 0.224f * 255, 0.225f * 255};
    } else {  // inception: x / 127.5 - 1
      g.norm.mean = {127.5f, 127.5f, 127.5f};
      g.norm.std = {127.5f, 127.5f, 127.5f};
    }
  }
  if (a.has("mean")) g.norm.mean = parse_triple(a.str("mean"), "--mean");
  if (a.has("std")) g.norm.std = parse_triple(a.str("std"), "--std");
  for (float v : g.norm.std)
    if (v == 0) throw std::invalid_argument("--std must not be zero");
  const bool given = a.has("preset") || a.has("mean") || a.has("std");
  for (const std::string& f : in)
    if (!given && f.size() >= 5 && f.compare(f.size() - 5, 5, ".onnx") == 0) {
      std::fprintf(stderr,
                   "edgeband convert: WARNING: %s carries no input normalisation and none was "
                   "given; assuming [-1, 1] (mean 127.5, std 127.5 of [0, 255] pixels). "
                   "torchvision models need --preset imagenet; give --preset, or --mean and "
                   "--std, to choose\n",
                   f.c_str());
      break;
    }
}

int cmd_convert(const Args& a) {
  if (!a.has("o")) throw std::invalid_argument("convert needs -o FILE");
  const std::vector<std::string>& in = a.positional();
  if (in.empty() || in.size() > 2)
    throw std::invalid_argument("convert takes one model file, or a feature extractor and a head");
  eb::import::ImportOptions opt;
  opt.labels_path = a.str("labels");
  std::string stem = in[0].substr(in[0].find_last_of('/') + 1);
  opt.name = a.str("name", stem.substr(0, stem.find_last_of('.')));
  eb::Graph g = eb::import::import_model(in, opt);
  set_normalisation(a, in, g);
  long params = 0;
  for (int i = 0; i < g.size(); ++i)
    for (const eb::Param& p : g.node(i).layer->params()) params += long(p.data->size());
  const uint64_t h = eb::save_weights(g, a.str("o"));
  std::printf(
      "wrote %s: model '%s', input %s, %d layers, %.2fM parameters, %.1f MFLOP, %ld outputs, "
      "checksum %016llx\n",
      a.str("o").c_str(), g.model.c_str(), g.input.str().c_str(), g.size(), params / 1e6,
      g.flops() / 1e6, g.output_shape().size(), static_cast<unsigned long long>(h));
  return 0;
}

int cmd_reliability(const Args& a) {
  eb::dist::ReliabilityOptions o;
  o.model = a.str("model", o.model);
  o.devices = a.integer("devices", 3);
  if (a.has("trace") == a.has("channel"))
    throw std::invalid_argument("give one of --trace FILE or --channel SPEC");
  o.channel = a.has("trace") ? eb::dist::load_trace(a.str("trace"))
                             : eb::dist::make_channel(a.str("channel"));
  o.deadlines_ms = eb::dist::parse_range(a.str("deadlines", "20:200:10"));
  o.requests = a.integer("requests", 20);
  o.threads = a.integer("threads", 0);
  warn_if_devices_share_cores("reliability", o.devices, o.threads);
  o.cpu_share = !a.has("no-cpu-share");
  if (a.has("candidates")) o.candidates = split_list(a.str("candidates"));
  if (a.has("latency")) o.link_latency_ms = std::stod(a.str("latency"));
  const eb::dist::ReliabilityReport rep = eb::dist::run_reliability(o);
  eb::cli::progress_done();
  std::string csv = "deadline_ms,scheme,reliability,mean_accuracy,effective_accuracy\n";
  for (const auto& r : rep.rows) {
    char line[256];
    std::snprintf(line, sizeof line, "%g,%s,%.4f,%.2f,%.2f\n", r.deadline_ms, r.scheme.c_str(),
                  r.reliability, r.mean_accuracy, r.effective_accuracy);
    csv += line;
  }
  if (a.has("o")) {
    write_text_file(a.str("o"), csv, "reliability per deadline and scheme, CSV");
  } else {
    std::fputs(csv.c_str(), stdout);
  }
  std::printf("%d requests, channel mean %.1f Mbit/s; per request (t, true Mbit/s, estimate):\n",
              o.requests, o.channel.mean_mbit());
  for (const auto& q : rep.requests) {
    std::printf("  t=%6.2fs  %7.1f  %7.1f  ms:", q.t_s, q.true_mbit, q.est_mbit);
    for (double ms : q.scheme_ms) std::printf(" %7.1f", ms);
    std::printf("  candidates:");
    for (size_t i = 0; i < q.candidates.size(); ++i)
      std::printf(" %s %s %.1f/%.1f", q.candidates[i].model.c_str(),
                  eb::dist::scheme_name(q.candidates[i].scheme), q.candidates[i].predicted_ms,
                  q.candidate_ms[i]);
    std::printf("\n");
  }
  if (a.has("plot")) {
    std::vector<eb::PlotSeries> series;
    for (const std::string& s : rep.schemes) {
      eb::PlotSeries ps{s, {}, {}};
      for (const auto& r : rep.rows)
        if (r.scheme == s) ps.x.push_back(r.deadline_ms), ps.y.push_back(r.reliability);
      series.push_back(ps);
    }
    eb::PlotSpec spec;
    spec.title = "Service reliability, " + o.model + ", " + std::to_string(o.devices) + " devices";
    spec.subtitle = "channel " + (a.has("trace") ? a.str("trace") : a.str("channel")) + ", " +
                    std::to_string(o.requests) + " requests per deadline";
    spec.x_label = "deadline (ms)";
    spec.y_label = "fraction of requests meeting the deadline";
    spec.y_min = 0, spec.y_max = 1;
    write_text_file(a.str("plot"), eb::svg_line_plot(spec, series), "SVG plot");
  }
  return 0;
}

int cmd_plot_speedup(const Args& a) {
  if (!a.has("o")) throw std::invalid_argument("plot-speedup needs -o FILE.svg");
  const eb::Graph g = eb::models::load_model(a.str("model", "vgg16"), "", nullptr, eb::models::Hold::lazy);
  const std::vector<double> devs = eb::dist::parse_range(a.str("devices", "1:6:1"));
  const eb::dist::Scheme scheme = eb::dist::parse_scheme(a.str("scheme", "halp"));
  // Links as everywhere else: RATE,DELAY, several separated by ';'.
  std::vector<eb::dist::LinkModel> links;
  for (const std::string& spec : split_list(a.str("links", "10mbit,1ms;100mbit,1ms;1gbit,0.2ms"), ';'))
    links.push_back(eb::dist::parse_link(spec));
  const eb::dist::DeviceProfile prof = eb::dist::estimate_profile(g, "device", 20.0);
  std::vector<eb::PlotSeries> series;
  for (size_t li = 0; li < links.size(); ++li) {
    eb::dist::Cluster c;
    c.link = links[li];
    eb::PlotSeries ps{c.link.str(), {}, {}};
    c.devices.assign(1, prof);
    const double local = eb::dist::make_plan(g, c, eb::dist::Scheme::local).predicted_ms;
    for (double n : devs) {
      eb::cli::progress("planning: link " + std::to_string(li + 1) + "/" +
                        std::to_string(links.size()) + ", " + std::to_string(int(n)) +
                        " devices");
      c.devices.assign(size_t(n), prof);
      ps.x.push_back(n);
      ps.y.push_back(
          local / eb::dist::make_plan(g, c, n > 1 ? scheme : eb::dist::Scheme::local).predicted_ms);
    }
    series.push_back(ps);
  }
  eb::cli::progress_done();
  eb::PlotSpec spec;
  spec.title = std::string("Predicted ") + eb::dist::scheme_name(scheme) + " speedup, " + g.model +
               ", " + std::to_string(int(devs.front())) + "-" + std::to_string(int(devs.back())) +
               " devices";
  spec.subtitle = "one link per series; every device estimated at 20 GFLOP/s (no measurement)";
  spec.x_label = "devices";
  spec.x_integer = true;
  spec.y_label = "speedup over one device";
  write_text_file(a.str("o"), eb::svg_line_plot(spec, series), "SVG plot");
  return 0;
}

// Layers and the data path (frames' encode, decode, checksum, encryption), at this process's
// --dilate like everything it measures.
eb::dist::DeviceProfile profile_this_machine(const eb::Graph& g, const std::string& name, int reps) {
  eb::dist::DeviceProfile p = eb::dist::measure_profile(g, name, reps);
  p.data_path = eb::dist::measure_data_path().scaled(eb::compute_dilation());
  return p;
}

int cmd_profile(const Args& a) {
  common(a);
  if (!a.has("o")) throw std::invalid_argument("profile needs -o FILE");
  const eb::Graph g = eb::models::load_model(a.str("model"), a.str("weights"), nullptr, eb::models::Hold::lean);
  auto p = profile_this_machine(g, a.str("name", "device"), a.integer("reps", 5));
  p.memory_mb = a.has("memory") ? eb::dist::parse_memory_mb(a.str("memory")) : eb::dist::available_memory_mb();
  eb::cli::progress_done();
  eb::dist::save_profile(p, a.str("o"));
  std::printf("wrote %s: %s, %d threads, %.2f ms for the whole model, %.0f MB of memory%s\n",
              a.str("o").c_str(), g.model.c_str(), p.threads, p.full_ms(g), p.memory_mb,
              a.has("memory") ? "" : " (available here now)");
  return 0;
}

// --devices: a count of devices like this machine ("3"), not a list of profile files.
bool is_device_count(const std::string& devs) {
  return !devs.empty() && devs.find_first_not_of("0123456789") == std::string::npos;
}
// --devices N (or none): every device is this machine, profiled now; else one profile file each.
bool devices_profiled_here(const Args& a) { return is_device_count(a.str("devices", "3")); }

// Device profiles from "N" (N copies of a fresh profile of this machine) or a list of files.
eb::dist::Cluster cluster_from_args(const Args& a, const eb::Graph& g) {
  eb::dist::Cluster c;
  const std::string devs = a.str("devices", "3");
  const std::vector<eb::dist::LinkModel> links = eb::dist::parse_link_list(a.str("link", "1gbit,0.2ms"));
  const size_t n_devices = devices_profiled_here(a) ? size_t(a.integer("devices", 3)) : split_list(devs).size();
  c.set_worker_links(links, n_devices - 1);  // before profiling: a wrong count fails at once
  const std::string wire = a.str("wire", "fp32");
  c.bytes_per_value = wire == "fp16" ? 2 : 4;
  c.edge_first = a.has("edge-first");
  if (devices_profiled_here(a)) {
    const int n = a.integer("devices", 3);
    const auto p = profile_this_machine(g, "this-machine", 3);
    for (int i = 0; i < n; ++i) c.devices.push_back(p);
    eb::cli::progress_done();
    std::fprintf(stderr,
                 "note: every device is this machine as profiled just now, so plans move with its "
                 "load; for repeatable plans save a profile (edgeband profile -o dev.json) and "
                 "pass --devices dev.json,dev.json,...\n");
    return c;
  }
  for (const std::string& f : split_list(devs)) {
    if (f.empty()) throw std::invalid_argument("--devices: empty profile name");
    c.devices.push_back(eb::dist::load_profile(f, g));
  }
  return c;
}

// The cluster's link as --link spells it: one for all, or one per worker.
std::string link_spelling(const eb::dist::Cluster& c) {
  if (c.links.empty()) return c.link.str();
  return eb::dist::link_list_str(c.worker_links());
}

void write_json_file(const std::string& path, const eb::Json& j, const char* what) {
  std::ofstream f(path);
  f << j.dump() << "\n";
  if (!f.flush()) throw std::runtime_error("cannot write " + path);
  std::fprintf(stderr, "wrote %s (%s)\n", path.c_str(), what);
}

// Weights it holds + activations + the process's base, per device (dist/plan/memory.h).
void print_predicted_memory(const eb::Graph& g, const eb::dist::Cluster& c, const eb::dist::Plan& p,
                            const char* indent) {
  std::printf("%speak memory (predicted):", indent);
  const auto mem = eb::dist::predict_memory(g, c, p);
  for (size_t d = 0; d < mem.size(); ++d)
    std::printf("  dev%zu %.1f MB (weights %.1f)", d, mem[d].total_mb, mem[d].weights_mb);
  std::printf("\n");
}

int cmd_plan(const Args& a) {
  if (a.has("trace") && (!a.has("scheme") || a.str("scheme") == "all" ||
                         a.str("scheme").find(',') != std::string::npos))
    throw std::invalid_argument("--trace needs one --scheme");
  common(a);
  // From profile files, planning needs the model's shapes, not its weights (VGG-16: 0.5 GB made
  // and packed for nothing, 672 MB at its peak). Profiling this machine (--devices N) times every layer 4 times:
  // the weights are made once, not streamed in for each turn.
  const eb::models::Hold hold = devices_profiled_here(a) ? eb::models::Hold::lean : eb::models::Hold::lazy;
  const eb::Graph g = eb::models::load_model(a.str("model"), a.str("weights"), nullptr, hold);
  eb::dist::Cluster c = cluster_from_args(a, g);
  if (a.has("memory")) c.set_memory(a.str("memory"));
  c.input_levels = a.integer("input-levels", 0);
  const int batch = a.integer("batch", 1);
  std::vector<eb::dist::Scheme> schemes;
  const std::string sch = a.str("scheme", "all");
  if (sch == "all")
    schemes = {eb::dist::Scheme::local, eb::dist::Scheme::modnn, eb::dist::Scheme::dpfp,
               eb::dist::Scheme::halp};
  else
    schemes = {eb::dist::parse_scheme(sch)};
  std::vector<eb::dist::Plan> plans;
  for (auto s : schemes) plans.push_back(eb::dist::make_plan(g, c, s, batch));
  eb::cli::progress_done();
  if (a.has("trace")) {
    write_json_file(a.str("trace"), eb::dist::chrome_trace(plans[0]),
                    "predicted timeline, Chrome trace: open in chrome://tracing or Perfetto");
  }
  if (a.has("json")) {
    eb::Json j = eb::Json::object();
    eb::Json js = eb::Json::object();
    for (const auto& p : plans) js[eb::dist::scheme_name(p.scheme)] = p.to_json(g);
    j["schemes"] = js;
    j["model"] = g.model;
    j["devices"] = int(c.devices.size());
    j["link"] = link_spelling(c);
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("model %s, %zu devices, link %s, batch %d, wire %s\n", g.model.c_str(),
              c.devices.size(), link_spelling(c).c_str(), batch,
              c.bytes_per_value == 2 ? "fp16" : "fp32");
  double local_ms = 0;
  for (const auto& p : plans)
    if (p.scheme == eb::dist::Scheme::local) local_ms = p.predicted_ms;
  if (local_ms == 0)
    local_ms = eb::dist::make_plan(g, c, eb::dist::Scheme::local, batch).predicted_ms;
  for (const auto& p : plans) {
    std::printf("\n[%s] predicted %.2f ms, %.1f KB moved per image",
                eb::dist::scheme_name(p.scheme), p.predicted_ms, double(p.bytes) / 1024.0);
    if (p.scheme != eb::dist::Scheme::local)
      std::printf(", %d of %d devices work, the host computes %.0f%% of the rows",
                  plan_work(p).devices_used, int(c.devices.size()), plan_work(p).host_rows * 100);
    std::printf("\n");
    explain_fallback(g, c, p);
    print_whole_images(g, p);
    for (size_t b = 0; b < p.blocks.size(); ++b) {
      const auto& bp = p.blocks[b];
      std::printf("  block %zu: %s..%s  rows of %s:", b, g.node(bp.first).name.c_str(),
                  g.node(bp.last - 1).name.c_str(), g.shape_of(bp.last - 1).str().c_str());
      for (size_t d = 0; d < bp.zones.size(); ++d) {
        std::printf("  dev%zu", d);
        if (bp.zones[d].empty()) std::printf(" -");
        for (const auto& r : bp.zones[d]) std::printf(" [%d,%d)", r.begin, r.end);
      }
      std::printf("%s\n", bp.overlap ? "  (overlap)" : "");
    }
    for (int j = 0; j < p.split_tail; ++j) {
      const int n = p.tail_first + j;
      std::printf("  tail %s: channels of %s:", g.node(n).name.c_str(),
                  g.shape_of(n).str().c_str());
      for (size_t d = 0; d < p.tail_slices[size_t(j)].size(); ++d) {
        const auto& r = p.tail_slices[size_t(j)][d];
        if (r.empty())
          std::printf("  dev%zu -", d);
        else
          std::printf("  dev%zu [%d,%d)", d, r.begin, r.end);
      }
      std::printf("\n");
    }
    for (size_t d = 1; d < p.link_bytes.size(); ++d)
      std::printf("  link host<->dev%zu: %.1f KB\n", d, double(p.link_bytes[d]) / 1024.0);
    print_predicted_memory(g, c, p, "  ");
  }
  std::printf("\n%-8s %12s %10s %12s\n", "scheme", "predicted_ms", "speedup", "KB/image");
  for (const auto& p : plans)
    std::printf("%-8s %12.2f %10.2f %12.1f\n", eb::dist::scheme_name(p.scheme), p.predicted_ms,
                local_ms > 0 ? local_ms / p.predicted_ms : 0.0, double(p.bytes) / 1024.0);
  return 0;
}

// --secret-file (a pre-shared key), or --key with the other side's public keys (`peers`:
// --authorized-keys on a worker, --worker-keys on a host); docs/SECURITY.md.
eb::dist::Credentials load_credentials(const Args& a, const char* peers) {
  eb::dist::Credentials c;
  if (a.has("secret-file")) c.psk = eb::dist::load_psk_file(a.str("secret-file"));
  if (a.has("key")) c.key = eb::dist::load_key_file(a.str("key"));
  if (a.has(peers)) c.trusted = eb::dist::load_public_keys(a.str(peers));
  if (a.has("key") && !a.has(peers))
    throw std::invalid_argument(std::string("--key needs --") + peers +
                                " (the public keys of the devices to trust)");
  if (a.has(peers) && !a.has("key"))
    throw std::invalid_argument(std::string("--") + peers + " needs --key (this device's own key)");
  c.mode();  // both kinds at once are refused
  return c;
}

void warn_insecure(const char* who) {
  std::fprintf(stderr,
               "edgeband %s: warning: --insecure: no authentication and no encryption; anyone "
               "on this network can read the images and bands and send this device work\n",
               who);
}

int cmd_worker(const Args& a) {
  common(a);
  dilation_turns(a);
  eb::dist::WorkerOptions o;
  o.creds = load_credentials(a, "authorized-keys");
  o.insecure = a.has("insecure");
  // Without a key, loopback only unless --insecure (WorkerServer refuses other addresses).
  o.listen = a.str("listen", o.creds.enabled() || o.insecure ? "0.0.0.0:7070" : "127.0.0.1:7070");
  if (o.insecure && !o.creds.enabled()) warn_insecure("worker");
  o.weights = a.str("weights");
  o.max_connections = a.integer("max-conn", 16);
  o.threads = omp_get_max_threads();
  o.idle_timeout_ms = a.integer("idle-timeout", 300) * 1000;
  o.handshake_timeout_ms = a.integer("handshake-timeout", 10) * 1000;
  o.max_frame_bytes = uint64_t(a.integer("max-frame-mb", 256)) << 20;
  o.max_pending = a.integer("max-pending", 8);
  o.send_timeout_ms = a.integer("send-timeout", 10) * 1000;
  // SIGTERM/SIGINT stop the worker cleanly (sessions closed, threads joined, exit 0): systemd's
  // stop, and LeakSanitizer's report at exit. Blocked here so every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  eb::dist::WorkerServer w(o);
  std::thread signals([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    // A worker started by cluster or reliability (--announce) is stopped by them: no news.
    if (!a.has("announce")) std::fprintf(stderr, "edgeband worker: %s: stopping\n", strsignal(sig));
    w.stop();
  });
  if (a.has("announce")) {
    std::printf("PORT %u\n", unsigned(w.port()));
    std::fflush(stdout);
  } else {
    const eb::dist::AuthMode mode = o.creds.mode();
    std::fprintf(stderr, "edgeband worker: listening on port %u (%s, %d threads, %s kernels, %s)\n",
                 unsigned(w.port()), o.listen.substr(0, o.listen.rfind(':')).c_str(),
                 omp_get_max_threads(), eb::kernels::isa_name(eb::kernels::active().isa),
                 mode == eb::dist::AuthMode::psk    ? "pre-shared key, encrypted"
                 : mode == eb::dist::AuthMode::keys ? "authorized host keys, encrypted"
                                                    : "no authentication, no encryption");
  }
  w.run();
  signals.join();
  return 0;
}

// Workers on this machine (loopback addresses) and the host share its cores. Each worker's thread
// count is its own (--threads, default: every core), so the check assumes the default unless the
// host runs one thread, the usual setting in that case.
void warn_if_cores_shared(const std::vector<std::string>& workers) {
  int local = 0;
  for (const auto& w : workers)
    if (w.rfind("127.", 0) == 0 || w.rfind("localhost:", 0) == 0) ++local;
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  const int host_threads = omp_get_max_threads();
  if (local == 0) return;
  eb::cli::progress_done();
  if (host_threads > std::max(1, cores / (local + 1)))
    std::fprintf(stderr,
                 "edgeband infer: warning: the host and %d worker%s on this machine ask for about "
                 "%d threads on %d cores; devices that share cores slow each other down: give the "
                 "host and each local worker --threads %d\n",
                 local, local == 1 ? "" : "s", host_threads + local * cores, cores,
                 std::max(1, cores / (local + 1)));
  else if (local + 1 > cores)
    std::fprintf(stderr,
                 "edgeband infer: note: %d devices share this machine's %d cores and take turns on "
                 "them, so this speedup says little about separate boards (cluster --dilate "
                 "emulates boards)\n",
                 local + 1, cores);
}

// infer's link and wire: --link RATE,DELAY emulates that link (and plans for it), --link
// L1/L2/... one per worker; --link measure plans for the real network as measured
// (measure_links), emulating nothing.
void infer_link_and_wire(const Args& a, eb::dist::Cluster& c, size_t workers) {
  const bool measure_link = a.str("link", "") == "measure";
  c.set_worker_links(
      eb::dist::parse_link_list(measure_link ? "1gbit,0.2ms" : a.str("link", "1gbit,0.2ms")),
      workers);
  c.bytes_per_value = a.str("wire", "fp32") == "fp16" ? 2 : 4;
  c.edge_first = a.has("edge-first");
}

eb::dist::RuntimeOptions infer_runtime_options(const Args& a, const eb::dist::Cluster& c) {
  eb::dist::RuntimeOptions ro;
  ro.fp16 = a.str("wire", "fp32") == "fp16";
  ro.timeout_ms = a.integer("timeout", 10000);
  if (a.has("link") && a.str("link") != "measure") {
    ro.shaping.enabled = true, ro.shaping.link = c.link;
    ro.worker_links = c.worker_links();
  }
  ro.creds = load_credentials(a, "worker-keys");
  ro.insecure = a.has("insecure");
  if (ro.insecure && !ro.creds.enabled()) warn_insecure("infer");
  return ro;
}

// --link measure: every worker's link, printed, planned for per worker (into c).
void measure_links(eb::dist::HostRuntime& host, const std::vector<std::string>& workers,
                   eb::dist::Cluster& c) {
  eb::dist::InferStats probe;
  const std::vector<eb::dist::MeasuredLink> links = host.measure_links(&probe);
  for (size_t i = 0; i < links.size(); ++i)
    if (links[i].mbit > 0)
      std::printf("link to %s: %.1f Mbit/s, round trip %.2f ms\n", workers[i].c_str(),
                  links[i].mbit, links[i].rtt_ms);
  for (const auto& f : probe.fault_messages)
    std::printf("fault: %s (worker dropped)\n", f.c_str());
  c.set_worker_links(eb::dist::planning_links(links), workers.size());
  std::printf("planning for links %s (per worker: its rate, half its round trip)\n",
              link_spelling(c).c_str());
}

// --- infer --deadline: per request, the most accurate candidate predicted to finish in time ---

// "NAME" (its top-1 from the catalogue) or "NAME=TOP1" (percent, for a model it does not list).
struct NamedModel {
  std::string name;
  double top1;
};
NamedModel parse_candidate(const std::string& item) {
  const size_t eq = item.find('=');
  NamedModel m{eb::models::parse_model_name(item.substr(0, eq)).canonical(), -1};
  if (eq == std::string::npos) {
    m.top1 = eb::models::top1_accuracy(m.name);
    if (m.top1 < 0)
      throw std::invalid_argument(m.name + " has no top-1 in the catalogue; give it as " + m.name +
                                  "=TOP1 (percent)");
    return m;
  }
  char* end = nullptr;
  const std::string acc = item.substr(eq + 1);
  m.top1 = std::strtod(acc.c_str(), &end);
  if (acc.empty() || *end != '\0' || !(m.top1 >= 0 && m.top1 <= 100))
    throw std::invalid_argument("'" + item + "': TOP1 must be a percentage in [0, 100]");
  return m;
}
std::vector<NamedModel> parse_candidates(const std::string& list) {
  std::vector<NamedModel> ms;
  for (const std::string& item : split_list(list)) {
    ms.push_back(parse_candidate(item));
    for (size_t i = 0; i + 1 < ms.size(); ++i)
      if (ms[i].name == ms.back().name)
        throw std::invalid_argument(ms.back().name + " is listed twice");
  }
  return ms;
}

// Options that describe one model or one scheme; --deadline chooses those per request.
void check_deadline_flags(const Args& a) {
  if (!a.has("deadline")) throw std::invalid_argument("--candidates needs --deadline MS");
  if (a.has("weights"))
    throw std::invalid_argument("--deadline chooses among built-in models, which workers build "
                                "by name: it cannot take --weights");
  if (a.has("model"))
    throw std::invalid_argument("--deadline chooses the model: give --candidates M1,M2,..., not "
                                "--model");
  for (const char* o : {"scheme", "devices", "trace", "top"})
    if (a.has(o))
      throw std::invalid_argument(std::string("--") + o + " describes one model's run; "
                                  "--deadline chooses the model and its scheme per request");
}

// Every candidate loaded on the host and the workers, profiled here; one line each.
std::vector<eb::dist::DeployedModel> deploy_candidates(const Args& a,
                                                       const std::vector<std::string>& workers,
                                                       const eb::dist::RuntimeOptions& ro) {
  std::vector<NamedModel> names;
  if (a.has("candidates"))
    names = parse_candidates(a.str("candidates"));
  else
    for (const std::string& n : eb::models::mobilenet_candidates())
      names.push_back({n, eb::models::top1_accuracy(n)});
  std::vector<eb::dist::DeployedModel> ms;
  for (const NamedModel& n : names) {
    eb::cli::progress("loading and profiling " + n.name);
    ms.push_back(eb::dist::deploy_model(n.name, workers, ro));
    ms.back().top1 = n.top1;
    if (a.has("image")) ms.back().set_input(load_image_input(a.str("image"), *ms.back().g));
  }
  eb::cli::progress_done();
  for (const auto& m : ms)
    std::printf("candidate %s: %.1f%% top-1, %.2f ms for the whole model on this machine\n",
                m.name.c_str(), m.top1, m.profile.full_ms(*m.g));
  return ms;
}

// The batch a request sends: the model's input (--image preprocessed for it by
// deploy_candidates, or its synthetic input).
std::vector<eb::Tensor> request_images(const Args& a, const eb::dist::DeployedModel& m) {
  return std::vector<eb::Tensor>(size_t(a.integer("batch", 1)), m.input);
}

// One request: wake every candidate's workers (untimed, finds the dead), select on the current
// bandwidth estimate, run the choice and feed its transfers back into the estimate. Whether
// the measured latency met the deadline.
bool serve_request(const Args& a, int r, std::vector<eb::dist::DeployedModel>& ms,
                   eb::dist::Cluster shape, eb::dist::BandwidthEstimator& est,
                   eb::dist::PredictionMemo& memo, double deadline) {
  eb::dist::InferStats pings, st;
  std::vector<eb::dist::ModelOption> options;
  for (auto& m : ms) m.host->ping(&pings), options.push_back(m.option());
  shape.link.bits_per_s = est.bits_per_s();
  const double t0 = omp_get_wtime();
  const eb::dist::Predictions& p = memo.predict(options, shape, a.integer("batch", 1));
  const eb::dist::Choice ch = eb::dist::choose(p.candidates, deadline);
  const double select_ms = (omp_get_wtime() - t0) * 1e3;
  const eb::dist::Plan& plan = p.plans[ch.index];
  eb::dist::DeployedModel& m = ms[ch.index];
  const double ms_run = eb::dist::run_and_estimate(m, request_images(a, m), plan, est, &st);
  const bool met = ms_run <= deadline;
  const int used = plan_work(plan).devices_used;
  std::printf("request %d/%d: %s (%s, %d device%s): predicted %.1f ms, measured %.1f ms: %s the %g "
              "ms deadline (bandwidth estimate %.1f Mbit/s)\n",
              r + 1, a.integer("runs", 3), m.name.c_str(), eb::dist::scheme_name(plan.scheme),
              used, used == 1 ? "" : "s", plan.predicted_ms, ms_run, met ? "met" : "MISSED",
              deadline, shape.link.bits_per_s / 1e6);
  std::printf("  why: %s (selected in %.1f ms)\n", ch.reason.c_str(), select_ms);
  for (const auto* faults : {&pings.fault_messages, &st.fault_messages})
    for (const auto& f : *faults) std::printf("fault: %s (worker dropped)\n", f.c_str());
  return met;
}

int infer_deadline(const Args& a) {
  check_deadline_flags(a);
  common(a);
  dilation_turns(a);
  const double deadline = a.number("deadline", 0);
  const std::vector<std::string> workers =
      a.has("workers") ? split_list(a.str("workers")) : std::vector<std::string>{};
  eb::dist::Cluster shape;  // link and wire; each candidate brings its own device profiles
  infer_link_and_wire(a, shape, workers.size());
  warn_if_cores_shared(workers);
  std::vector<eb::dist::DeployedModel> ms =
      deploy_candidates(a, workers, infer_runtime_options(a, shape));
  if (a.str("link", "") == "measure") measure_links(*ms[0].host, workers, shape);
  // The live estimate: starts at the planned link's rate, then follows the host's sends.
  eb::dist::BandwidthEstimator est(shape.link.bits_per_s);
  const int warmup = a.integer("warmup", eb::dist::default_warmup(eb::compute_dilation()));
  for (auto& m : ms)  // first touch of weights and buffers on every device, for every candidate
    for (int w = 0; w < warmup; ++w) {
      eb::cli::progress("warm-up: " + m.name);
      eb::dist::run_and_estimate(m, request_images(a, m), eb::dist::best_plan(*m.g, m.option().on(shape)),
                                 est);
    }
  eb::cli::progress_done();
  const int runs = a.integer("runs", 3);
  int met = 0;
  eb::dist::PredictionMemo memo;
  for (int r = 0; r < runs; ++r) met += serve_request(a, r, ms, shape, est, memo, deadline) ? 1 : 0;
  std::printf("%d of %d requests met the %g ms deadline (%d warm-up run%s per candidate first)\n",
              met, runs, deadline, warmup, warmup == 1 ? "" : "s");
  return 0;
}

// Who got how much of the work: slow boards and slow links should get less.
void print_row_shares(const eb::Graph& g, const eb::dist::Plan& plan,
                      const std::vector<std::string>& workers) {
  if (plan.blocks.empty() || plan.devices < 2) return;
  const std::vector<double> share = eb::dist::row_shares(g, plan);
  std::printf("rows per device (share of each block's rows, averaged over %zu blocks): host %.0f%%",
              plan.blocks.size(), share[0] * 100);
  for (size_t d = 1; d < share.size() && d <= workers.size(); ++d)
    std::printf(", %s %.0f%%", workers[d - 1].c_str(), share[d] * 100);
  std::printf("\n");
}

// Measured peak resident memory per device: the host's own (this process, which also ran the
// local comparison) and what each worker last reported (its process's high-water mark).
void print_peak_rss(std::vector<long> kb, int devices) {
  kb.resize(size_t(std::max(devices, 1)), 0);
  kb[0] = eb::peak_rss_kb();
  std::printf("peak RSS (measured):");
  for (size_t d = 0; d < kb.size(); ++d)
    kb[d] ? std::printf(" dev%zu %.1f MB", d, double(kb[d]) / 1024.0) : std::printf(" dev%zu -", d);
  std::printf("\n");
}

int cmd_infer(const Args& a) {
  if (a.has("deadline") || a.has("candidates")) return infer_deadline(a);
  common(a);
  dilation_turns(a);
  const std::vector<std::string> workers =
      a.has("workers") ? split_list(a.str("workers")) : std::vector<std::string>{};
  eb::dist::Cluster c;
  const bool measure_link = a.str("link", "") == "measure";
  infer_link_and_wire(a, c, workers.size());  // before any work: --link's count
  uint64_t hash = 0;
  auto g =
      std::make_shared<eb::Graph>(eb::models::load_model(a.str("model"), a.str("weights"), &hash, eb::models::Hold::lazy));
  warn_if_synthetic(a, *g);
  const int batch = a.integer("batch", 1);
  eb::Tensor img;
  if (a.has("image")) {
    img = load_image_input(a.str("image"), *g);
  } else {
    img = eb::Tensor(g->input);
    for (size_t k = 0; k < img.size(); ++k) img.data()[k] = float(int(k % 251) - 125) / 125.0f;
  }
  const std::vector<eb::Tensor> images(size_t(batch), img);
  c.input_levels = eb::dist::images_palette_levels(images);  // as run_paired plans (explain_fallback)
  const bool fp16 = c.bytes_per_value == 2;
  if (a.has("devices")) {
    for (const auto& f : split_list(a.str("devices")))
      c.devices.push_back(eb::dist::load_profile(f, *g));
    if (c.devices.size() != workers.size() + 1)
      throw std::invalid_argument("--devices needs one profile for the host and one per worker");
  } else {
    const auto p = profile_this_machine(*g, "this-machine", 3);
    c.devices.assign(workers.size() + 1, p);
  }
  warn_if_cores_shared(workers);
  const eb::dist::RuntimeOptions ro = infer_runtime_options(a, c);
  c.encrypted = ro.creds.enabled();
  eb::dist::HostRuntime host(g, hash, workers, ro);
  if (measure_link) measure_links(host, workers, c);
  const auto scheme = eb::dist::parse_scheme(a.str("scheme", "halp"));
  // Warm-up runs (first touch of weights and buffers on every device, connections' slow start),
  // then R runs, each beside a local run of the same images: medians of both.
  const int runs = a.integer("runs", 3);
  const int warmup = a.integer("warmup", eb::dist::default_warmup(eb::compute_dilation()));
  const eb::dist::PairedRuns pr = eb::dist::run_paired(host, *g, c, scheme, images, runs, warmup);
  eb::cli::progress_done();
  const eb::dist::Plan& plan = pr.plan;
  const eb::dist::InferStats& st = pr.last;
  const double dm = eb::median(pr.dist_ms), lm = eb::median(pr.local_ms);
  std::printf(
      "model %s, scheme %s, %d devices, batch %d: %.2f ms (local %.2f ms, speedup %.2fx; medians "
      "of %d runs after %d warm-up runs), %.1f KB moved, predicted %.2f ms\n",
      g->model.c_str(), eb::dist::scheme_name(plan.scheme), plan.devices, batch, dm, lm, lm / dm,
      runs, warmup, double(st.bytes_sent + st.bytes_received) / 1024.0, plan.predicted_ms);
  if (plan.devices > 1)
    std::printf("local: this host holds only its share of the model, so the local runs stream the "
                "other layers through memory (their computing timed, their loading not)\n");
  print_row_shares(*g, plan, workers);
  for (const auto& l : pr.loads)  // the warm-up's, normally: a new plan is loaded once
    std::printf("device %d loaded its share of the plan's layers in %.1f ms (before the runs)\n",
                l.device, double(l.t1_us - l.t0_us) / 1e3);
  if (!pr.ping_ms.empty())
    std::printf("slowest worker's round trip before each run (untimed): median %.2f ms\n",
                eb::median(pr.ping_ms));
  for (const auto& f : pr.fault_messages)
    std::printf("fault: %s (worker dropped; what it owed was recomputed on the host)\n", f.c_str());
  explain_fallback(*g, c, plan);
  print_predicted_memory(*g, c, plan, "");  // unindented: indented lines are the top-K
  print_peak_rss(st.peak_rss_kb, plan.devices);
  // The answer against this machine's own: bit for bit on an fp32 wire, top-1 on fp16.
  const eb::Tensor local = g->forward(img), &got = pr.warmup_out[0];
  const bool same_bits = got.size() == local.size() &&
                         std::memcmp(got.data(), local.data(), local.size() * sizeof(float)) == 0;
  const bool same_top1 = eb::top_k(got, 1)[0].index == eb::top_k(local, 1)[0].index;
  // Devices whose kernels differ (an AVX-512 host, NEON boards) round differently: then only the
  // top-1 class must agree, and the difference is printed.
  if (same_bits)
    std::printf("output equals local: yes, bit for bit\n");
  else
    std::printf("output equals local: no, max abs difference %.3g, top-1 %s (%s)\n",
                double(max_abs_difference(got, local)), same_top1 ? "same" : "DIFFERS",
                fp16 ? "the fp16 wire rounds the bands" : "devices with other kernels round differently");
  print_top(got, *g, a.integer("top", 5));
  if (a.has("trace")) {
    write_json_file(a.str("trace"), eb::dist::chrome_trace(st, plan.devices),
                    "measured timeline, Chrome trace: open in chrome://tracing or Perfetto");
  }
  return same_top1 ? 0 : 1;
}

eb::dist::ClusterOptions cluster_options(const Args& a) {
  eb::dist::ClusterOptions o;
  o.weights = a.str("weights");
  o.model = a.str("model", o.weights.empty() ? "vgg16" : "");  // "": the model the file holds
  o.devices = a.integer("devices", 3);
  const std::string sch = a.str("scheme", "all");
  o.schemes.clear();  // in the order given: later schemes run in processes that ran the earlier
  for (const std::string& s : split_list(sch == "all" ? "modnn,dpfp,halp" : sch))
    o.schemes.push_back(eb::dist::parse_scheme(s));
  o.link = a.str("link");
  if (!o.link.empty()) {  // validate before spawning anything
    eb::dist::Cluster c;
    c.set_worker_links(eb::dist::parse_link_list(o.link), size_t(o.devices - 1));
  }
  o.batch = a.integer("batch", 1);
  o.runs = a.integer("runs", 3);
  o.warmup = a.integer("warmup", 0);
  o.threads = a.integer("threads", 0);
  o.cpu_share = !a.has("no-cpu-share");
  o.pin = a.has("pin");
  o.dilate = a.str("dilate");
  o.board = a.str("board");
  o.memory = a.str("memory");
  if (!o.memory.empty() && split_list(o.memory).size() != 1 &&
      split_list(o.memory).size() != size_t(o.devices))
    throw std::invalid_argument("--memory: give one size, or one per device (" +
                                std::to_string(o.devices) + ")");
  o.dilate_to = a.str("dilate-to");
  if (int(a.has("dilate")) + a.has("board") + a.has("dilate-to") > 1)
    throw std::invalid_argument("give one of --dilate, --board and --dilate-to");
  o.dilate_lock = a.str("dilate-lock");
  if (a.has("cpu-share")) o.cores_per_device = a.number("cpu-share", 0);
  o.fp16 = a.str("wire", "fp32") == "fp16";
  o.edge_first = a.has("edge-first");
  o.trace = a.str("trace");
  o.timeout_ms = a.integer("timeout", 30000);
  o.secret_file = a.str("secret-file");
  return o;
}

void print_cluster_json(const eb::dist::ClusterOptions& o, const std::vector<eb::dist::SchemeResult>& results,
                        const std::vector<eb::dist::Slowdown>& slowdown) {
  eb::Json j = eb::Json::object();
  eb::Json rs = eb::Json::array();
  for (const auto& r : results) {
    eb::Json x = eb::Json::object();
    x["scheme"] = eb::dist::scheme_name(r.scheme);
    x["devices"] = r.devices;
    x["latency_ms"] = r.latency_ms;
    x["local_ms"] = r.local_ms;
    x["speedup"] = r.speedup;
    x["predicted_ms"] = r.predicted_ms;
    x["equal"] = r.equal;
    x["max_abs_dev"] = double(r.max_abs_dev);
    x["bytes"] = static_cast<unsigned long>(r.bytes);
    x["faults"] = r.faults;
    eb::Json rss = eb::Json::array(), pred = eb::Json::array();
    for (long kb : r.peak_rss_kb) rss.push_back(double(kb) / 1024.0);  // 0: no report from it
    for (double mb : r.predicted_peak_mb) pred.push_back(mb);
    x["peak_rss_mb"] = rss;
    x["predicted_peak_mb"] = pred;
    eb::Json dp = eb::Json::object();
    for (int k = 1; k < eb::kWorkKinds; ++k) dp[eb::work_name(eb::Work(k))] = r.host_data_path_ms[k];
    x["host_data_path_ms"] = dp;
    rs.push_back(x);
  }
  j["results"] = rs;
  j["model"] = o.model.empty() ? o.weights : o.model;
  j["link"] = o.link.empty() ? "unshaped" : o.link;
  j["batch"] = o.batch;
  j["cpu_share"] = results.empty() ? "" : results[0].cpu_share;
  eb::Json sl = eb::Json::array();
  for (const auto& s : slowdown) {
    eb::Json x = eb::Json::object();
    x["factor"] = s.factor;
    x["source"] = s.source;
    sl.push_back(x);
  }
  j["slowdown"] = sl;
  std::printf("%s\n", j.dump().c_str());
}

void print_cluster_text(const eb::dist::ClusterOptions& o, const std::vector<eb::dist::SchemeResult>& results,
                        const std::vector<eb::dist::Slowdown>& slowdown) {
  std::printf("model %s, %d devices, link %s, batch %d, wire %s\ncpu share: %s\n",
              o.model.empty() ? o.weights.c_str() : o.model.c_str(), o.devices,
              o.link.empty() ? "unshaped loopback" : o.link.c_str(), o.batch, o.fp16 ? "fp16" : "fp32",
              results.empty() ? "" : results[0].cpu_share.c_str());
  for (size_t d = 0; d < slowdown.size(); ++d)
    if (slowdown[d].factor > 1 || !slowdown[d].source.empty())
      std::printf("device %zu: %.3gx slower than one core here (%s)\n", d, slowdown[d].factor,
                  slowdown[d].source.c_str());
  std::printf("%-7s %8s %12s %10s %9s %13s %12s %7s\n", "scheme", "devices", "latency_ms",
              "local_ms", "speedup", "predicted_ms", "bytes", "equal");
  for (const auto& r : results)
    std::printf("%-7s %8d %12.2f %10.2f %8.2fx %13.2f %12llu %7s\n",
                eb::dist::scheme_name(r.scheme), r.devices, r.latency_ms, r.local_ms, r.speedup,
                r.predicted_ms, static_cast<unsigned long long>(r.bytes), r.equal ? "yes" : "NO");
  std::printf("local_ms: the host streams the layers it does not hold through memory (their "
              "loading not timed)\n");
  for (const auto& r : results) {
    std::printf("peak RSS %-6s", eb::dist::scheme_name(r.scheme));
    for (size_t d = 0; d < r.peak_rss_kb.size(); ++d) {
      r.peak_rss_kb[d] ? std::printf(" dev%zu %.1f MB", d, double(r.peak_rss_kb[d]) / 1024.0)
                       : std::printf(" dev%zu -", d);
      if (d < r.predicted_peak_mb.size()) std::printf(" (predicted %.1f)", r.predicted_peak_mb[d]);
    }
    std::printf("\n");
  }
  if (slowdown.empty() || slowdown[0].factor <= 1) return;
  std::printf("host CPU outside layers, per run (planning: once), x %.3g on the board:\n", slowdown[0].factor);
  for (const auto& r : results) {
    std::printf("  %-6s", eb::dist::scheme_name(r.scheme));
    for (int k = 1; k < eb::kWorkKinds; ++k)
      std::printf(" %s %.2f ms%s", eb::work_name(eb::Work(k)), r.host_data_path_ms[k],
                  k + 1 < eb::kWorkKinds ? "," : "\n");
  }
}

int cmd_cluster(const Args& a) {
  common(a, false);
  const eb::dist::ClusterOptions o = cluster_options(a);
  warn_if_devices_share_cores("cluster", o.devices, o.threads);
  std::vector<eb::dist::Slowdown> slowdown;
  const auto results = eb::dist::run_cluster(o, &slowdown);
  eb::cli::progress_done();
  if (a.has("json"))
    print_cluster_json(o, results, slowdown);
  else
    print_cluster_text(o, results, slowdown);
  if (!results.empty())  // the last scheme's: each scheme's run overwrites them
    for (const std::string& w : results.back().wrote) std::fprintf(stderr, "wrote %s\n", w.c_str());
  for (const auto& r : results)
    if (!r.equal) {
      std::fprintf(stderr, "edgeband cluster: error: distributed output differs from local output\n");
      return 1;
    }
  return 0;
}

int cmd_info(const Args& a) {
  common(a);
  std::printf("edgeband " EDGEBAND_VERSION "\nkernels: %s (gemm %zux%zu)\nthreads: %d\navailable:",
              eb::kernels::isa_name(eb::kernels::active().isa), eb::kernels::active().gemm_mr,
              eb::kernels::active().gemm_nr, omp_get_max_threads());
  for (auto i : {eb::kernels::Isa::scalar, eb::kernels::Isa::avx2, eb::kernels::Isa::avx512,
                 eb::kernels::Isa::neon})
    if (eb::kernels::table_for(i)) std::printf(" %s", eb::kernels::isa_name(i));
  std::printf("\ncrypto: %s; frames sealed and opened (ChaCha20-Poly1305) at %.0f MB/s on one "
              "core\n",
              eb::dist::crypto_library_version(), eb::dist::cipher_mb_per_s());
  return 0;
}

int cmd_keygen(const Args& a) {
  const std::string out = a.str("o");
  if (out.empty()) throw std::invalid_argument("keygen needs -o FILE");
  if (a.has("psk")) {
    std::FILE* f = std::fopen(out.c_str(), "wx");
    if (!f) throw std::runtime_error("cannot create " + out + ": " + std::strerror(errno));
    ::chmod(out.c_str(), 0600);
    const std::string key = eb::dist::new_psk_text();
    const bool ok = std::fwrite(key.data(), 1, key.size(), f) == key.size();
    if (std::fclose(f) != 0 || !ok) throw std::runtime_error("cannot write " + out);
    std::printf("wrote %s (pre-shared key: copy it to every device, mode 600)\n", out.c_str());
    return 0;
  }
  const std::string name = a.str("name", out.substr(out.rfind('/') + 1));
  const std::string pub = eb::dist::write_key_pair(eb::dist::new_key_pair(), out, name);
  std::printf("wrote %s (secret key, mode 600: stays on this device)\nwrote %s.pub: %s\n",
              out.c_str(), out.c_str(), pub.c_str());
  return 0;
}


// --- declarations: every option of every command, once --------------------------------------

// Values that need parsing are checked while the command line is read, before any work.
void check_model(const std::string& m) {
  if (m.empty()) throw std::invalid_argument("empty model name");
}
void check_link(const std::string& s) {  // one link, one per worker (L1/L2/...), or measure
  if (s != "measure") eb::dist::parse_link_list(s);
}
void check_schemes(const std::string& s) {  // a list, or all
  if (s == "all") return;
  for (const std::string& x : split_list(s)) eb::dist::parse_scheme(x);
}
void check_scheme(const std::string& s) {  // exactly one distributed scheme
  if (eb::dist::parse_scheme(s) == eb::dist::Scheme::local)
    throw std::invalid_argument("one of modnn, dpfp or halp");
}
void check_scheme_or_all(const std::string& s) {
  if (s != "all") eb::dist::parse_scheme(s);
}
void check_memory_list(const std::string& s) {
  for (const std::string& x : split_list(s)) eb::dist::parse_memory_mb(x);
}
void check_planned_link(const std::string& s) { eb::dist::parse_link_list(s); }
void check_range(const std::string& s) { eb::dist::parse_range(s); }
void check_device_counts(const std::string& s) {  // LO:HI:STEP, each a count a plan can span
  for (double n : eb::dist::parse_range(s))
    if (n < 1 || n > double(eb::dist::kMaxPlanDevices) || n != std::floor(n))
      throw std::invalid_argument("device counts are whole numbers in [1, " +
                                  std::to_string(eb::dist::kMaxPlanDevices) + "]");
}
void check_dilate_list(const std::string& s) {  // positive numbers, comma-separated
  for (const std::string& x : split_list(s)) {
    char* end = nullptr;
    const double v = std::strtod(x.c_str(), &end);
    if (x.empty() || *end != '\0' || !(v > 0 && v < 1e7))
      throw std::invalid_argument("'" + x + "' is not a positive number");
  }
}
void check_profiles(const std::string& s) {
  const std::vector<std::string> files = split_list(s);
  for (const std::string& f : files)
    if (f.empty()) throw std::invalid_argument("empty profile file name in '" + s + "'");
  if (files.size() > eb::dist::kMaxPlanDevices)
    throw std::invalid_argument("at most " + std::to_string(eb::dist::kMaxPlanDevices) +
                                " devices, host included; " + std::to_string(files.size()) + " profiles given");
}
void check_devices(const std::string& s) {
  if (is_device_count(s)) {
    const long n = std::stol(s);
    if (n < 1 || n > long(eb::dist::kMaxPlanDevices))
      throw std::invalid_argument("a device count in [1, " + std::to_string(eb::dist::kMaxPlanDevices) +
                                  "], or profile files");
    return;
  }
  check_profiles(s);
}
void check_workers(const std::string& s) {
  std::vector<std::string> seen;
  for (const std::string& w : split_list(s)) {
    eb::dist::parse_endpoint(w);
    if (std::find(seen.begin(), seen.end(), w) != seen.end())
      throw std::invalid_argument("worker " + w + " is listed twice");
    seen.push_back(w);
  }
  if (seen.size() >= eb::dist::kMaxPlanDevices)
    throw std::invalid_argument("at most " + std::to_string(eb::dist::kMaxPlanDevices - 1) +
                                " workers (a plan spans " + std::to_string(eb::dist::kMaxPlanDevices) +
                                " devices, host included)");
}

void check_deadline(const std::string& s) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !(v > 0 && v < 1e9))
    throw std::invalid_argument("'" + s + "' is not a positive number of ms");
}
void check_candidates(const std::string& s) { parse_candidates(s); }

void opt_model(Args& a, bool weights = true) {
  a.text("model", "M",
         "model: vgg16[:RES], mobilenet_v1[:ALPHA[:RES]] (ALPHA 1.0|0.75|0.5|0.25, RES 32..1024); "
         "with --weights, the model the file holds",
         check_model);
  if (weights) a.text("weights", "FILE", "weights file (.ebw, from convert or export)");
}
void opt_threads(Args& a) { a.integer("threads", "OpenMP threads (default: all cores)", 1, 256); }
void opt_isa(Args& a) {
  a.choice("isa", "kernels to use instead of the best this CPU runs (also EDGEBAND_ISA)",
           {"scalar", "avx2", "avx512", "neon"});
}
void opt_dilate(Args& a, bool lock) {
  a.number("dilate", "emulate a device F times slower: each layer sleeps (F-1)x its CPU time (one thread)", 1, 100);
  if (lock)
    a.text("dilate-lock", "FILE",
           "dilated devices on this machine take turns to compute through this lock file ('none': never)");
}
void opt_quiet(Args& a) { a.flag("quiet,-q", "no progress on stderr"); }

void declare_run(Args& a) {
  opt_model(a);
  a.text("image", "FILE", "image to classify (JPEG, PNG, BMP)");
  a.text("input-tensor", "FILE", "raw float32 NHWC input instead of an image");
  a.integer("top", "classes to print", 1, 1000);
  a.integer("runs", "timed runs after a warm-up run; the median is printed", 1, 1000);
  opt_threads(a), opt_isa(a), opt_dilate(a, false), opt_quiet(a);
}
void declare_bench(Args& a) {
  opt_model(a);
  a.integer("runs", "timed runs", 1, 100000);
  a.integer("warmup", "untimed runs first", 0, 1000);
  a.flag("layers", "per-layer times, GFLOP/s and share of the measured FMA peak");
  a.flag("json", "one JSON object on stdout");
  opt_threads(a), opt_isa(a), opt_dilate(a, false), opt_quiet(a);
}
void declare_export(Args& a) {
  opt_model(a, false);
  a.text("o", "FILE", "the .ebw file to write");
}
void declare_convert(Args& a) {
  a.files("files", "IN [HEAD]: .tflite, TensorFlow frozen .pb or .onnx; HEAD is joined after IN", 1, 2);
  a.text("o", "FILE", "the .ebw file to write");
  a.text("labels", "FILE", "class names, one per line");
  a.text("name", "NAME", "model name stored in the file (default: IN's file name)");
  a.choice("preset", "input normalisation: imagenet (torchvision: mean 0.485,0.456,0.406, std "
                     "0.229,0.224,0.225 of [0,1] RGB) or inception ([-1,1]); without it or "
                     "--mean/--std an ONNX model gets [-1,1] and a warning",
           {"imagenet", "inception"});
  a.text("mean", "M", "input mean, one value or r,g,b (pixels scaled to [0,255]); overrides --preset");
  a.text("std", "S", "input standard deviation, one value or r,g,b; overrides --preset");
}
void declare_profile(Args& a) {
  opt_model(a);
  a.integer("reps", "timed runs per layer", 1, 1000);
  a.text("name", "NAME", "device name stored in the profile");
  a.text("o", "FILE", "the profile (.json) to write");
  a.text("memory", "SIZE", "the board's usable memory, e.g. 900M or 1G (default: this machine's available memory)",
         check_memory_list);
  opt_threads(a), opt_isa(a), opt_dilate(a, false), opt_quiet(a);
}
// link, batch, wire, edge-first; infer's link may also be "measure".
void opt_cluster_shape(Args& a, bool measured_link, long max_batch) {
  a.text("link", measured_link ? "RATE,DELAY|measure" : "RATE,DELAY",
         measured_link ? "link to emulate and plan for, e.g. 1gbit,0.2ms, or one per worker "
                         "(1gbit,0.2ms/50mbit,2ms); measure: each worker's real one"
                       : "link to plan for, e.g. 1gbit,0.2ms or 100mbit,2ms, or one per worker "
                         "(1gbit,0.2ms/50mbit,2ms)",
         measured_link ? check_link : check_planned_link);
  a.integer("batch", "images per request", 1, max_batch);
  a.choice("wire", "value format on the wire", {"fp32", "fp16"});
  a.flag("edge-first", "HALP: compute the band edges the neighbours need first");
}
// Each board's memory, for the planner to keep within (overrides the profiles').
void opt_memory(Args& a) {
  a.text("memory", "SIZE|S0,S1,...",
         "each board's usable memory, e.g. 512M (one for all, or one per device, host first; 0: no limit)",
         check_memory_list);
}
void declare_plan(Args& a) {
  opt_model(a);
  a.text("devices", "N|a.json,...", "N devices like this machine, or one profile per device",
         check_devices);
  opt_cluster_shape(a, false, 1024);
  a.text("scheme", "S", "local, modnn, dpfp, halp or all", check_scheme_or_all);
  a.flag("json", "the plans as JSON on stdout");
  a.text("trace", "FILE", "write the predicted timeline as a Chrome trace (one --scheme)");
  a.integer("input-levels", "most distinct values per channel in the images to plan for: an 8-bit image's rows go as palettes (infer and cluster count them; default 0: fp32 rows)", 0, 256);
  opt_memory(a);
  opt_threads(a), opt_isa(a), opt_quiet(a);
}
void opt_keys(Args& a, const char* peers, const char* peers_help) {
  a.text("secret-file", "FILE", "pre-shared key (edgeband keygen --psk): authenticate, encrypt");
  a.text("key", "FILE", "this device's secret key (edgeband keygen -o FILE)");
  a.text(peers, "FILE", peers_help);
  a.flag("insecure", "allow other than loopback addresses without a key (no encryption)");
}
void declare_worker(Args& a) {
  a.text("listen", "ADDR:PORT",
         "address to listen on (default 0.0.0.0:7070 with a key, else 127.0.0.1:7070)");
  a.text("weights", "FILE", "serve this converted model (built-in models need no file)");
  opt_keys(a, "authorized-keys", "public keys of the hosts allowed in, one a line");
  a.integer("max-conn", "concurrent hosts (counted after the handshake)", 1, 1024);
  a.integer("max-pending", "connections in their handshake (the oldest is dropped)", 1, 1024);
  a.integer("idle-timeout", "seconds a connection may stay silent", 1, 86400);
  a.integer("handshake-timeout", "seconds to finish the handshake", 1, 3600);
  a.integer("send-timeout", "seconds a host may stop reading before it is dropped", 1, 3600);
  a.integer("max-frame-mb", "largest frame accepted, MB", 1, 512);
  a.flag("announce", "print PORT N on stdout when listening (for the process that started it)");
  opt_threads(a), opt_isa(a), opt_dilate(a, true);
}
void declare_infer(Args& a) {
  opt_model(a);
  a.text("workers", "H:P,...", "the workers' addresses", check_workers);
  a.text("scheme", "S", "modnn, dpfp or halp", check_scheme);
  a.text("image", "FILE", "image to classify (default: a synthetic input)");
  a.text("devices", "a.json,...", "one profile for the host and one per worker", check_profiles);
  a.integer("timeout", "ms to wait for a worker before dropping it (plus twice the predicted batch time for an image it computes whole)", 10, 3600000);
  a.text("trace", "FILE", "write the last run's measured timeline as a Chrome trace");
  a.integer("top", "classes to print", 1, 1000);
  opt_keys(a, "worker-keys", "public keys of the workers to trust, one a line");
  a.integer("runs", "timed runs, each beside a local run", 1, 1000);
  a.integer("warmup", "untimed runs first", 1, 1000);
  a.text("deadline", "MS",
         "per request, run the most accurate candidate predicted to take at most MS ms",
         check_deadline);
  a.text("candidates", "M[=TOP1],...",
         "built-in models --deadline chooses among (default: the MobileNet-V1 family); TOP1: "
         "accuracy in percent, for a model the catalogue does not list",
         check_candidates);
  opt_cluster_shape(a, true, 256);
  opt_threads(a), opt_isa(a), opt_dilate(a, true), opt_quiet(a);
}
void declare_cluster(Args& a) {
  opt_model(a);
  a.integer("devices", "devices (the host is one), each a local process", 1, 16);
  a.text("scheme", "S,...", "schemes to run in this order (all = modnn,dpfp,halp)", check_schemes);
  opt_memory(a);
  a.integer("runs", "timed runs per scheme, each beside a local run", 1, 1000);
  a.integer("warmup", "untimed runs first (0: the default for the dilation)", 0, 1000);
  a.integer("threads", "threads per device (0: cores / devices)", 0, 256);
  a.number("cpu-share", "cores per device, by cgroup quota", 0.1, 64);
  a.flag("pin", "pin each device to its own cores (cpuset)");
  a.flag("no-cpu-share", "no CPU quotas");
  a.text("trace", "FILE", "write the last scheme's last run as a Chrome trace, and the plan's predicted timeline beside it (run.json: run.predicted.json)");
  a.integer("timeout", "ms to wait for a worker (plus twice the predicted batch time for an image it computes whole)", 10, 3600000);
  a.text("secret-file", "FILE", "pre-shared key of host and workers (edgeband keygen --psk)");
  a.flag("json", "results as JSON on stdout");
  opt_cluster_shape(a, false, 64);
  a.text("dilate", "F|F,F,...", "emulate slower devices: F times slower than one core here (one F, or one per device)",
         check_dilate_list);
  a.text("board", "B|B,B,...", "emulate boards: pi4, pi3 or x86 (one, or one per device); the slowdown is calibrated here",
         eb::dist::check_board_list);
  a.text("dilate-to", "MS|MS,...", "slow each device down until the model takes MS ms on it", check_dilate_list);
  a.text("dilate-lock", "FILE",
         "dilated devices on this machine take turns to compute through this lock file ('none': never)");
  opt_isa(a), opt_quiet(a);
}
void declare_reliability(Args& a) {
  opt_model(a, false);
  a.integer("devices", "devices", 2, 16);
  a.text("trace", "FILE", "bandwidth trace: lines of 'seconds Mbit/s'");
  a.text("channel", "SPEC",
         "rayleigh:mean=50,coherence=0.1,duration=20 | markov:good=100,bad=5,step=0.1");
  a.text("deadlines", "LO:HI:STEP", "deadlines to evaluate, ms", check_range);
  a.integer("requests", "requests per deadline", 1, 100000);
  a.text("candidates", "M,...", "models for dynamic selection (default: MobileNet-V1 widths)");
  a.number("latency", "link latency, ms", 0, 10000);
  a.text("o", "FILE", "write the table as CSV (default: stdout)");
  a.text("plot", "FILE", "write the reliability curves as SVG");
  a.integer("threads", "threads per device (0: cores / devices)", 0, 256);
  a.flag("no-cpu-share", "no CPU quotas");
  opt_quiet(a);
}
void declare_plot_speedup(Args& a) {
  opt_model(a, false);
  a.text("devices", "LO:HI:STEP", "device counts", check_device_counts);
  a.text("links", "R,D;R,D", "links, e.g. '10mbit,1ms;1gbit,0.2ms'", [](const std::string& v) {
    for (const std::string& l : split_list(v, ';')) {
      if (l.find(':') != std::string::npos && l.find(',') == std::string::npos)
        throw std::invalid_argument("links are RATE,DELAY as everywhere else (10mbit,1ms), not '" +
                                    l + "'");
      eb::dist::parse_link(l);
    }
  });
  a.text("scheme", "S", "modnn, dpfp or halp", check_scheme);
  a.text("o", "FILE", "the SVG to write");
  opt_quiet(a);
}
void declare_info(Args& a) { opt_isa(a), opt_threads(a); }
void declare_keygen(Args& a) {
  a.text("o", "FILE", "the secret key to write (and FILE.pub, its public key)");
  a.flag("psk", "write a pre-shared key instead (32 random bytes, in hex)");
  a.text("name", "NAME", "name after the public key (default: the file's name)");
}

struct Command {
  const char* name;
  const char* help;
  void (*declare)(Args&);
  int (*run)(const Args&);
  bool needs_passive_omp;  // runs beside other devices' processes (see main)
};

const Command kCommands[] = {
    {"run", "classify an image on this machine", declare_run, cmd_run, false},
    {"bench", "time a model on this machine", declare_bench, cmd_bench, false},
    {"export", "write a built-in model's synthetic weights as .ebw", declare_export, cmd_export, false},
    {"convert", "convert a .tflite, .pb or .onnx model to .ebw", declare_convert, cmd_convert, false},
    {"profile", "measure this machine's per-layer times into a device profile", declare_profile, cmd_profile, false},
    {"plan", "plan a model over devices and links; print the predicted latency", declare_plan, cmd_plan, false},
    {"worker", "serve bands of a model to a host", declare_worker, cmd_worker, true},
    {"infer", "run a model across workers as host; compare with local", declare_infer, cmd_infer, true},
    {"cluster", "start local workers and compare schemes on emulated devices", declare_cluster, cmd_cluster, true},
    {"reliability", "service reliability under a time-variant channel", declare_reliability, cmd_reliability, true},
    {"plot-speedup", "plot the predicted speedup against devices and links", declare_plot_speedup, cmd_plot_speedup, false},
    {"info", "kernels, threads and libraries this binary uses here", declare_info, cmd_info, false},
    {"keygen", "write a device key pair, or a pre-shared key (docs/SECURITY.md)", declare_keygen, cmd_keygen, false},
};

}  // namespace

// Several devices on one machine (hosts and workers, and each worker's network threads) must not
// spin against each other: libgomp's default keeps idle OpenMP threads spinning for a while after
// every parallel region, which on a 2-core machine with three processes made a 6 ms model take
// 139 ms. The wait policy is read when libgomp starts, before main, so the distributed commands
// re-execute themselves once with OMP_WAIT_POLICY=passive unless the user chose a policy. Where
// the re-exec is impossible (an emulator without binfmt) they go on as they are.
static void wait_passively_between_layers(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY")) return;
  if (::setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
  ::execv("/proc/self/exe", argv);
}

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);  // a peer that vanishes mid-send is an error to report, not a kill
  CLI::App app("edgeband " EDGEBAND_VERSION
               ": one CNN inference split across several edge devices (RFS, DPFP, HALP)",
               "edgeband");
  app.set_version_flag("--version", "edgeband " EDGEBAND_VERSION);
  app.require_subcommand(1);
  // A repeated option keeps its last value, as with most tools.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::vector<std::unique_ptr<Args>> args;
  for (const Command& c : kCommands) {
    args.push_back(std::make_unique<Args>(app.add_subcommand(c.name, c.help)));
    c.declare(*args.back());
  }
  const std::string cmd = argc >= 2 ? argv[1] : "";
  if (cmd == "help") {  // `edgeband help` as well as `edgeband --help`
    std::printf("%s", app.help().c_str());
    return 0;
  }
  const bool known = std::any_of(std::begin(kCommands), std::end(kCommands),
                                 [&](const Command& c) { return cmd == c.name; });
  if (argc >= 2 && !known && cmd[0] != '-') {
    std::fprintf(stderr, "edgeband: unknown command '%s' (edgeband --help lists them)\n",
                 cmd.c_str());
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ExtrasError& e) {
    std::string extras = e.what();  // "The following argument(s) was/were not expected: ..."
    extras = extras.substr(extras.find(':') + 1);
    std::fprintf(stderr,
                 "edgeband %s: error: unknown option or argument:%s (edgeband %s --help lists "
                 "the options)\n",
                 cmd.c_str(), extras.c_str(), cmd.c_str());
    return 1;
  } catch (const CLI::ParseError& e) {
    if (!known) {
      std::fprintf(stderr, "%s", app.help().c_str());
      return 2;
    }
    std::fprintf(stderr, "edgeband %s: error: %s (edgeband %s --help lists the options)\n",
                 cmd.c_str(), e.what(), cmd.c_str());
    return 1;
  }
  for (size_t i = 0; i < args.size(); ++i) {
    if (!args[i]->app()->parsed()) continue;
    if (kCommands[i].needs_passive_omp) wait_passively_between_layers(argv);
    try {
      eb::cli::set_quiet(args[i]->has("quiet"));
      eb::set_progress_sink([](const std::string& what) { eb::cli::progress(what); });
      return kCommands[i].run(*args[i]);
    } catch (const std::exception& e) {
      eb::cli::progress_done();
      std::fprintf(stderr, "edgeband %s: error: %s\n", cmd.c_str(), e.what());
      return 1;
    }
  }
  return 2;
}
