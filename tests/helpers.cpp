#include "tests/helpers.h"

#include <doctest/doctest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>

namespace eb::test {

std::vector<RowRange> band_cases(int h, std::mt19937& rng) {
  std::vector<RowRange> c;
  for (int r = 0; r < h; ++r) c.push_back({r, r + 1});
  for (int s = 1; s < h; ++s) {
    c.push_back({0, s});
    c.push_back({s, h});
  }
  std::uniform_int_distribution<int> d(0, h);
  for (int i = 0; i < 8; ++i) {
    int a = d(rng), b = d(rng);
    if (a > b) std::swap(a, b);
    if (a < b) c.push_back({a, b});
  }
  c.push_back({0, h});
  return c;
}

void check_bands(const Layer& layer, const Tensor& input, const Tensor& full, std::mt19937& rng) {
  for (const RowRange r : band_cases(full.h(), rng)) {
    const RowRange need = layer.input_rows(r, 0).clip(input.h());
    Band in{input.rows(need).clone(), need.begin};
    Band out{Tensor(r.size(), full.w(), full.c()), r.begin};
    layer.forward({&in}, out);
    INFO("rows [" << r.begin << "," << r.end << ") from input [" << need.begin << "," << need.end << ")");
    CHECK(ref::bit_equal(out.t, full.rows(r)));
  }
}

void check_bands(const Layer& layer, const std::vector<Tensor>& inputs, const Tensor& full,
                 std::mt19937& rng) {
  for (const RowRange r : band_cases(full.h(), rng)) {
    std::vector<Band> in;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const RowRange need = layer.input_rows(r, int(i)).clip(inputs[i].h());
      in.push_back(Band{inputs[i].rows(need).clone(), need.begin});
    }
    std::vector<const Band*> ptrs;
    for (const Band& b : in) ptrs.push_back(&b);
    Band out{Tensor(r.size(), full.w(), full.c()), r.begin};
    layer.forward(ptrs, out);
    INFO("rows [" << r.begin << "," << r.end << ")");
    CHECK(ref::bit_equal(out.t, full.rows(r)));
  }
}

CliResult run_edgeband(const std::string& args) { return run_edgeband_after("", args); }

CliResult run_edgeband_after(const std::string& shell_prefix, const std::string& args) {
  const std::string cmd = shell_prefix + std::string(EDGEBAND_BIN) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  CliResult r{0, ""};
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
  const int st = pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

std::vector<float> read_floats(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<float> v;
  float x;
  while (f.read(reinterpret_cast<char*>(&x), 4)) v.push_back(x);
  return v;
}

}  // namespace eb::test
