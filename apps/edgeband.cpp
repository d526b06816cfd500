// edgeband: one static binary, one subcommand per job. Only flag parsing and printing here;
// the work is done by the libraries.
#include <omp.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "apps/cli.h"
#include "core/benchmark.h"
#include "core/image.h"
#include "core/weights_io.h"
#include "kernels/microkernels.h"
#include "dist/planner.h"
#include "models/zoo.h"

namespace {

using eb::cli::Args;

const char* kUsage =
    "usage: edgeband <command> [options]\n"
    "commands:\n"
    "  run     --model M [--weights F] [--image F | --input-tensor F] [--threads N] [--top K]\n"
    "  bench   --model M [--weights F] [--threads N] [--runs R] [--warmup W] [--layers] [--json]\n"
    "  export  --model M -o FILE            write the synthetic weights as an .ebw file\n"
    "  profile --model M [--weights F] [--threads N] [--reps R] [--name NAME] -o device.json\n"
    "  plan    --model M --devices N|a.json,b.json,... [--link RATE,DELAY] [--scheme S|all]\n"
    "          [--batch B] [--wire fp32|fp16] [--json]\n"
    "  info                                 kernels and threads this machine uses\n"
    "models: vgg16[:RES], mobilenet_v1[:ALPHA[:RES]] (ALPHA 1.0|0.75|0.5|0.25, RES 32..1024)\n"
    "common: --isa scalar|avx2|avx512|neon overrides the kernel choice (also EDGEBAND_ISA)\n";

void common(const Args& a) {
  if (a.has("threads")) omp_set_num_threads(a.integer("threads", 1, 1, 256));
  if (a.has("isa")) eb::kernels::set_active(eb::kernels::parse_isa(a.str("isa").c_str()));
}

int cmd_run(int argc, char** argv) {
  Args a(argc, argv, 2, {"model", "weights", "image", "input-tensor", "threads", "top", "isa", "labels"}, {});
  common(a);
  eb::Graph g = eb::models::load_model(a.str("model"), a.str("weights"));
  eb::Tensor in;
  if (a.has("input-tensor")) {
    in = eb::load_raw_tensor(a.str("input-tensor"), g.input);
  } else if (a.has("image")) {
    in = eb::preprocess(eb::load_image(a.str("image")), g.input.h, g.norm);
  } else {
    throw std::invalid_argument("give --image FILE or --input-tensor FILE");
  }
  const double t0 = omp_get_wtime();
  eb::Tensor out = g.forward(in);
  const double ms = (omp_get_wtime() - t0) * 1e3;
  std::printf("model %s, input %s, %.2f ms (%d threads, %s)\n", g.model.c_str(),
              g.input.str().c_str(), ms, omp_get_max_threads(),
              eb::kernels::isa_name(eb::kernels::active().isa));
  for (const auto& p : eb::top_k(out, a.integer("top", 5, 1, 1000))) {
    const char* label = size_t(p.index) < g.labels.size() ? g.labels[size_t(p.index)].c_str() : "";
    std::printf("  %4d  %.5f  %s\n", p.index, double(p.prob), label);
  }
  return 0;
}

int cmd_bench(int argc, char** argv) {
  Args a(argc, argv, 2, {"model", "weights", "threads", "runs", "warmup", "isa"}, {"layers", "json"});
  common(a);
  const eb::Graph g = eb::models::load_model(a.str("model"), a.str("weights"));
  const int runs = a.integer("runs", 10, 1, 100000);
  const eb::BenchResult r = eb::benchmark(g, runs, a.integer("warmup", 2, 0, 1000));
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
  std::printf("model %s  threads %d  isa %s  runs %d\n", g.model.c_str(), omp_get_max_threads(), isa, runs);
  std::printf("median %.2f ms  min %.2f ms  max %.2f ms  %.2f GFLOP  %.1f GFLOP/s\n", r.median_ms,
              r.min_ms, r.max_ms, g.flops() / 1e9, r.gflops);
  if (a.has("layers")) {
    std::printf("%-18s %-16s %-14s %9s %9s\n", "layer", "type", "output", "ms", "GFLOP/s");
    for (int i = 0; i < g.size(); ++i) {
      const auto& n = g.node(i);
      const double ms = r.layer_median_ms[size_t(i)];
      const double f = n.layer->flops({0, n.layer->output_shape().h});
      std::printf("%-18s %-16s %-14s %9.3f %9.1f\n", n.name.c_str(), n.layer->type().c_str(),
                  n.layer->output_shape().str().c_str(), ms, ms > 0 ? f / 1e6 / ms : 0.0);
    }
  }
  return 0;
}

int cmd_export(int argc, char** argv) {
  Args a(argc, argv, 2, {"model", "o"}, {});
  if (!a.has("o")) throw std::invalid_argument("export needs -o FILE");
  eb::Graph g = eb::models::build_synthetic(a.str("model"));
  const uint64_t h = eb::save_weights(g, a.str("o"));
  std::printf("wrote %s (%s, checksum %016llx)\n", a.str("o").c_str(), g.model.c_str(),
              static_cast<unsigned long long>(h));
  return 0;
}

int cmd_profile(int argc, char** argv) {
  Args a(argc, argv, 2, {"model", "weights", "threads", "reps", "name", "o", "isa"}, {});
  common(a);
  if (!a.has("o")) throw std::invalid_argument("profile needs -o FILE");
  const eb::Graph g = eb::models::load_model(a.str("model"), a.str("weights"));
  const auto p = eb::dist::measure_profile(g, a.str("name", "device"), a.integer("reps", 5, 1, 1000));
  eb::dist::save_profile(p, a.str("o"));
  std::printf("wrote %s: %s, %d threads, %.2f ms for the whole model\n", a.str("o").c_str(),
              g.model.c_str(), p.threads, p.full_ms(g));
  return 0;
}

// Device profiles from "N" (N copies of a fresh profile of this machine) or a list of files.
eb::dist::Cluster cluster_from_args(const Args& a, const eb::Graph& g) {
  eb::dist::Cluster c;
  const std::string devs = a.str("devices", "3");
  c.link = eb::dist::parse_link(a.str("link", "1gbit,0.2ms"));
  const std::string wire = a.str("wire", "fp32");
  if (wire != "fp32" && wire != "fp16") throw std::invalid_argument("--wire must be fp32 or fp16");
  c.bytes_per_value = wire == "fp16" ? 2 : 4;
  if (!devs.empty() && devs.find_first_not_of("0123456789") == std::string::npos) {
    const int n = a.integer("devices", 3, 1, 64);
    const auto p = eb::dist::measure_profile(g, "this-machine", 3);
    for (int i = 0; i < n; ++i) c.devices.push_back(p);
    return c;
  }
  size_t start = 0;
  while (start <= devs.size()) {
    const size_t comma = devs.find(',', start);
    const std::string f = devs.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (f.empty()) throw std::invalid_argument("--devices: empty profile name");
    c.devices.push_back(eb::dist::load_profile(f, g));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return c;
}

int cmd_plan(int argc, char** argv) {
  Args a(argc, argv, 2, {"model", "weights", "devices", "link", "scheme", "batch", "threads", "wire", "isa"}, {"json"});
  common(a);
  const eb::Graph g = eb::models::load_model(a.str("model"), a.str("weights"));
  const eb::dist::Cluster c = cluster_from_args(a, g);
  const int batch = a.integer("batch", 1, 1, 1024);
  std::vector<eb::dist::Scheme> schemes;
  const std::string sch = a.str("scheme", "all");
  if (sch == "all")
    schemes = {eb::dist::Scheme::local, eb::dist::Scheme::modnn, eb::dist::Scheme::dpfp, eb::dist::Scheme::halp};
  else
    schemes = {eb::dist::parse_scheme(sch)};
  std::vector<eb::dist::Plan> plans;
  for (auto s : schemes) plans.push_back(eb::dist::make_plan(g, c, s, batch));
  if (a.has("json")) {
    eb::Json j = eb::Json::object();
    eb::Json js = eb::Json::object();
    for (const auto& p : plans) js[eb::dist::scheme_name(p.scheme)] = p.to_json(g);
    j["schemes"] = js;
    j["model"] = g.model;
    j["devices"] = int(c.devices.size());
    j["link"] = c.link.str();
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("model %s, %zu devices, link %s, batch %d, wire %s\n", g.model.c_str(), c.devices.size(),
              c.link.str().c_str(), batch, c.bytes_per_value == 2 ? "fp16" : "fp32");
  double local_ms = 0;
  for (const auto& p : plans)
    if (p.scheme == eb::dist::Scheme::local) local_ms = p.predicted_ms;
  for (const auto& p : plans) {
    std::printf("\n[%s] predicted %.2f ms, %.1f KB moved per image", eb::dist::scheme_name(p.scheme),
                p.predicted_ms, double(p.bytes) / 1024.0);
    if (p.scheme == eb::dist::Scheme::halp) std::printf(", host share %.0f%%", p.host_share * 100);
    std::printf("\n");
    for (size_t b = 0; b < p.blocks.size(); ++b) {
      const auto& bp = p.blocks[b];
      std::printf("  block %zu: %s..%s  rows of %s:", b, g.node(bp.first).name.c_str(),
                  g.node(bp.last - 1).name.c_str(), g.shape_of(bp.last - 1).str().c_str());
      for (size_t d = 0; d < bp.zones.size(); ++d) {
        std::printf("  dev%zu", d);
        if (bp.zones[d].empty()) std::printf(" -");
        for (const auto& r : bp.zones[d]) std::printf(" [%d,%d)", r.begin, r.end);
      }
      std::printf("\n");
    }
    for (size_t d = 1; d < p.link_bytes.size(); ++d)
      std::printf("  link host<->dev%zu: %.1f KB\n", d, double(p.link_bytes[d]) / 1024.0);
  }
  std::printf("\n%-8s %12s %10s %12s\n", "scheme", "predicted_ms", "speedup", "KB/image");
  for (const auto& p : plans)
    std::printf("%-8s %12.2f %10.2f %12.1f\n", eb::dist::scheme_name(p.scheme), p.predicted_ms,
                local_ms > 0 ? local_ms / p.predicted_ms : 0.0, double(p.bytes) / 1024.0);
  return 0;
}

int cmd_info() {
  std::printf("edgeband 0.1.0\nkernels: %s (gemm %zux%zu)\nthreads: %d\navailable:",
              eb::kernels::isa_name(eb::kernels::active().isa), eb::kernels::active().gemm_mr,
              eb::kernels::active().gemm_nr, omp_get_max_threads());
  for (auto i : {eb::kernels::Isa::scalar, eb::kernels::Isa::avx2, eb::kernels::Isa::avx512,
                 eb::kernels::Isa::neon})
    if (eb::kernels::table_for(i)) std::printf(" %s", eb::kernels::isa_name(i));
  std::printf("\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // "-o" is the one short option; normalise it to --o.
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "-o") == 0) argv[i] = const_cast<char*>("--o");
  if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help") ||
      !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  try {
    if (cmd == "run") return cmd_run(argc, argv);
    if (cmd == "bench") return cmd_bench(argc, argv);
    if (cmd == "export") return cmd_export(argc, argv);
    if (cmd == "info") return cmd_info();
    if (cmd == "profile") return cmd_profile(argc, argv);
    if (cmd == "plan") return cmd_plan(argc, argv);
    std::fprintf(stderr, "edgeband: unknown command '%s'\n%s", cmd.c_str(), kUsage);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "edgeband %s: error: %s\n", cmd.c_str(), e.what());
    return 1;
  }
}
