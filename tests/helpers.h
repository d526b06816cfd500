#pragma once
#include <functional>
#include <random>
#include <string>

#include "core/layer.h"
#include "kernels/microkernels.h"
#include "tests/reference.h"

namespace eb::test {

// Runs fn once per ISA this binary and CPU support, with that ISA active; restores the default.
inline void for_each_isa(const std::function<void(kernels::Isa)>& fn) {
  const kernels::Isa original = kernels::active().isa;
  for (auto isa : {kernels::Isa::scalar, kernels::Isa::avx2, kernels::Isa::avx512, kernels::Isa::neon}) {
    if (!kernels::table_for(isa)) continue;
    kernels::set_active(isa);
    fn(isa);
  }
  kernels::set_active(original);
}

// Output rows the band tests try: every single row, every split in two, 8 random ranges, all.
std::vector<RowRange> band_cases(int h, std::mt19937& rng);

// Computes each case's rows from only the input rows the layer asks for (a copy, so reads
// outside them are caught) and requires bit-identical values to the full-image output.
void check_bands(const Layer& layer, const Tensor& input, const Tensor& full, std::mt19937& rng);
// The same for a layer of several inputs, each cut to the rows the layer asks of it.
void check_bands(const Layer& layer, const std::vector<Tensor>& inputs, const Tensor& full,
                 std::mt19937& rng);

// Runs the edgeband binary under test (EDGEBAND_BIN) with `args`: its exit code (128 + signal if
// killed) and its stdout and stderr together. With `shell_prefix`, that runs before it in the
// same shell (e.g. "ulimit -v N && ").
struct CliResult {
  int code;
  std::string out;
};
CliResult run_edgeband(const std::string& args);
CliResult run_edgeband_after(const std::string& shell_prefix, const std::string& args);

// A raw float32 file, or empty when it cannot be read.
std::vector<float> read_floats(const std::string& path);

}  // namespace eb::test
