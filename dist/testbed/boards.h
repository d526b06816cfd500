// Which board each emulated device stands for, and the dilation factor that makes one core of
// this machine run at that board's speed. The factor is calibrated, not a constant: this
// machine's own time for a reference model (1 thread, measured now) against the time published
// for the board. When the engine gets faster, the factor grows with it, so the emulated board
// stays as fast as the real one.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/graph.h"

namespace eb::dist {

// One device's slowdown and where it comes from (printed by `cluster`).
struct Slowdown {
  double factor = 1;  // 1: this machine's speed (one core)
  std::string source;
};

// A board's published whole-model time, with its source.
struct BoardFigure {
  const char* board;      // "pi4"
  const char* model;      // the built-in model it was measured on, canonical ("vgg16:224")
  double ms;              // 4 threads, fp32
  const char* described;  // the board and the source, one line
};
const std::vector<BoardFigure>& board_figures();
std::vector<std::string> board_names();

// Per-device slowdowns from exactly one of three comma lists (one item for every device, or
// one per device): factors ("9" or "9,9,18"), boards ("pi4", "pi4,pi3,x86"; x86 = this machine)
// or target times of `g` in ms ("900,900,1800"). `measure_ms(model)` times a built-in model or
// `g` itself ("") here, 1 thread, undilated. Throws std::invalid_argument on bad lists.
std::vector<Slowdown> resolve_slowdowns(const Graph& g, int devices, const std::string& factors,
                                        const std::string& boards, const std::string& target_ms,
                                        const std::function<double(const std::string&)>& measure_ms);
// Validation only (flags are checked before any work): throws std::invalid_argument.
void check_board_list(const std::string& boards);

// The least of `runs` timed inferences of `g` after one warm-up, 1 thread, undilated.
double time_model_ms(const Graph& g, int runs = 5);

}  // namespace eb::dist
