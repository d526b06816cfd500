#include "dist/testbed/boards.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <stdexcept>

#include "dist/testbed/dilation.h"

namespace eb::dist {
namespace {

// ncnn's benchmark/README.md, `benchncnn 8 4 0` (4 threads, fp32), average times. The models
// are the same graphs as our built-in ones (ncnn's vgg16.param and mobilenet.param).
constexpr const char* kPi4 = "Raspberry Pi 4 Model B, Cortex-A72 1.5 GHz x 4 (ncnn benchmark/README.md, benchncnn 8 4 0)";
constexpr const char* kPi3 = "Raspberry Pi 3 Model B+, Cortex-A53 1.4 GHz x 4 (ncnn benchmark/README.md, benchncnn 8 4 0)";

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t at = 0;
  while (true) {
    const size_t comma = s.find(',', at);
    out.push_back(s.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
    if (comma == std::string::npos) return out;
    at = comma + 1;
  }
}

// One item per device, or one for all of them.
std::vector<std::string> per_device(const std::string& list, int devices, const char* what) {
  std::vector<std::string> items = split(list);
  if (items.size() == 1) items.assign(size_t(devices), items[0]);
  if (int(items.size()) != devices)
    throw std::invalid_argument(std::string(what) + ": give one value, or one per device (" +
                                std::to_string(devices) + ")");
  return items;
}

double positive_number(const std::string& s, const char* what, double lo, double hi) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != s.size() || !(v >= lo && v <= hi))
    throw std::invalid_argument(std::string(what) + ": '" + s + "' is not a number in [" +
                                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

const BoardFigure* figure(const std::string& board, const std::string& model) {
  for (const BoardFigure& f : board_figures())
    if (board == f.board && model == f.model) return &f;
  return nullptr;
}

std::string fixed(double v, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace

const std::vector<BoardFigure>& board_figures() {
  static const std::vector<BoardFigure> figures = {
      {"pi4", "vgg16:224", 988.65, kPi4},
      {"pi4", "mobilenet_v1:1:224", 86.01, kPi4},
      {"pi3", "vgg16:224", 1902.28, kPi3},
      {"pi3", "mobilenet_v1:1:224", 152.31, kPi3},
  };
  return figures;
}

std::vector<std::string> board_names() { return {"pi4", "pi3", "x86"}; }

void check_board_list(const std::string& boards) {
  const std::vector<std::string> names = board_names();
  for (const std::string& b : split(boards))
    if (std::find(names.begin(), names.end(), b) == names.end())
      throw std::invalid_argument("unknown board '" + b + "' (known: pi4, pi3, x86)");
}

double time_model_ms(const Graph& g, int runs) {
  const double before = compute_dilation();
  const int threads = omp_get_max_threads();
  set_compute_dilation(1);
  omp_set_num_threads(1);  // an emulated device computes on one thread
  Tensor x(g.input);
  for (size_t k = 0; k < x.size(); ++k) x.data()[k] = float(k % 255) / 255.0f;
  g.forward(x);  // warm-up: packing, first touches
  double best = 1e300;
  for (int r = 0; r < runs; ++r) best = std::min(best, timed_forward_ms(g, x));
  set_compute_dilation(before);
  omp_set_num_threads(threads);
  return best;
}

std::vector<Slowdown> resolve_slowdowns(const Graph& g, int devices, const std::string& factors,
                                        const std::string& boards, const std::string& target_ms,
                                        const std::function<double(const std::string&)>& measure_ms) {
  const int given = !factors.empty() + !boards.empty() + !target_ms.empty();
  if (given > 1) throw std::invalid_argument("give one of --dilate, --board and --dilate-to");
  std::vector<Slowdown> out(static_cast<size_t>(devices));
  std::map<std::string, double> measured;  // per reference model: measured once
  auto here_ms = [&](const std::string& model) {
    const auto it = measured.find(model);
    return it != measured.end() ? it->second : measured[model] = measure_ms(model);
  };
  if (!factors.empty()) {
    const std::vector<std::string> f = per_device(factors, devices, "--dilate");
    for (int d = 0; d < devices; ++d)
      out[size_t(d)] = {positive_number(f[size_t(d)], "--dilate", 1, 100), "--dilate"};
  } else if (!target_ms.empty()) {
    const std::vector<std::string> t = per_device(target_ms, devices, "--dilate-to");
    const double here = here_ms("");
    for (int d = 0; d < devices; ++d) {
      const double want = positive_number(t[size_t(d)], "--dilate-to", 0.001, 1e7);
      out[size_t(d)] = {std::clamp(want / here, 1.0, 100.0),
                        "--dilate-to " + fixed(want, 1) + " ms; " + g.model + " here: " + fixed(here, 1) + " ms, 1 thread"};
    }
  } else if (!boards.empty()) {
    check_board_list(boards);
    const std::vector<std::string> b = per_device(boards, devices, "--board");
    // Reference model: the model itself where the board's figure exists, else VGG-16.
    for (int d = 0; d < devices; ++d) {
      if (b[size_t(d)] == "x86") {
        out[size_t(d)] = {1, "x86: this machine, one core"};
        continue;
      }
      const BoardFigure* f = figure(b[size_t(d)], g.model);
      const std::string ref = f ? "" : "vgg16:224";
      if (!f) f = figure(b[size_t(d)], ref);
      const double here = here_ms(ref);
      out[size_t(d)] = {std::clamp(f->ms / here, 1.0, 100.0),
                        std::string(f->board) + ": " + f->model + " " + fixed(f->ms, 1) + " ms on a " +
                            f->described + "; here " + fixed(here, 1) + " ms, 1 thread"};
    }
  }
  return out;
}

}  // namespace eb::dist
