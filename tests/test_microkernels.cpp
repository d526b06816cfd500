// Every microkernel of every ISA on buffers that end (or begin) exactly at an inaccessible guard
// page: an access one float past the end (or before the start) of what the kernel's contract
// allows faults at once. This is the bounds check for the SIMD tables, which the sanitizer build
// does not instrument (CMakeLists.txt says why), and it runs in every build, qemu's NEON included.
#include <doctest/doctest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernels/half.h"
#include "kernels/microkernels.h"
#include "tests/helpers.h"

using namespace eb;

namespace {

enum class Flush { end, start };

// n floats flush against a PROT_NONE page on one side (and one on the other side too).
class Guarded {
 public:
  Guarded(const std::vector<float>& init, Flush flush) : n_(init.size()) {
    page_ = size_t(sysconf(_SC_PAGESIZE));
    const size_t data_pages = (n_ * sizeof(float) + page_ - 1) / page_ + 1;
    len_ = (data_pages + 2) * page_;
    void* m = mmap(nullptr, len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::runtime_error("mmap failed");
    base_ = static_cast<char*>(m);
    char* data_begin = base_ + page_;
    char* data_end = base_ + len_ - page_;
    if (mprotect(base_, page_, PROT_NONE) != 0 || mprotect(data_end, page_, PROT_NONE) != 0)
      throw std::runtime_error("mprotect failed");
    p_ = flush == Flush::start ? reinterpret_cast<float*>(data_begin)
                               : reinterpret_cast<float*>(data_end) - n_;
    if (n_) std::memcpy(p_, init.data(), n_ * sizeof(float));
  }
  ~Guarded() { munmap(base_, len_); }
  Guarded(const Guarded&) = delete;
  Guarded& operator=(const Guarded&) = delete;
  float* data() { return p_; }
  std::vector<float> values() const { return std::vector<float>(p_, p_ + n_); }

 private:
  size_t n_, page_ = 0, len_ = 0;
  char* base_ = nullptr;
  float* p_ = nullptr;
};

size_t pick(std::mt19937& rng, size_t lo, size_t hi) {
  return std::uniform_int_distribution<size_t>(lo, hi)(rng);
}

// Runs fn(flush) for both placements.
template <class F>
void both_sides(F&& fn) {
  for (Flush f : {Flush::end, Flush::start}) {
    CAPTURE(f == Flush::end ? "guard after" : "guard before");
    fn(f);
  }
}

}  // namespace

TEST_CASE("microkernels: gemm and gemv panel stay inside their operands (guard pages, every ISA)") {
  std::mt19937 rng(41);
  test::for_each_isa([&](kernels::Isa isa) {
    const kernels::KernelTable& kt = kernels::active();
    CAPTURE(kernels::isa_name(isa));
    const size_t MR = kt.gemm_mr, NR = kt.gemm_nr;
    for (size_t mr = 1; mr <= MR; ++mr)
      for (size_t nc = 1; nc <= NR; nc += (nc < 4 || nc + 4 > NR) ? 1 : 3) {
        CAPTURE(mr);
        CAPTURE(nc);
        const size_t kc = pick(rng, 0, 19), as = kc + pick(rng, 0, 3), cs = nc + pick(rng, 0, 3);
        const bool use_bias = rng() % 2, clamp = rng() % 2;
        const kernels::MinMax mm{-0.5f, 0.75f};
        // Exactly what the contract lets it touch: mr rows of kc, one kc x NR panel, NR biases,
        // mr rows of nc outputs.
        const auto a = ref::random_vec((mr - 1) * as + kc, rng), w = ref::random_vec(kc * NR, rng);
        const auto bias = ref::random_vec(NR, rng), c = ref::random_vec((mr - 1) * cs + nc, rng);
        // The same call on roomy buffers gives the values to expect.
        auto want = c;
        want.resize(want.size() + NR);
        {
          auto a2 = a, w2 = w, b2 = bias;
          a2.resize(a2.size() + 1), w2.resize(w2.size() + 1);
          kt.gemm(mr, nc, kc, a2.data(), as, w2.data(), want.data(), cs,
                  use_bias ? b2.data() : nullptr, clamp ? &mm : nullptr);
          want.resize(c.size());
        }
        // The full-width kernel and the fewer-row variants the driver picks for mr rows (their
        // prefetches past the panel may touch a guard page: prefetches never fault).
        for (const kernels::GemmUkernelFn fn : {kt.gemm, kt.gemm_rows[mr], kt.gemm_rows_stream[mr]})
          both_sides([&](Flush f) {
            Guarded ga(a, f), gw(w, f), gb(bias, f), gc(c, f);
            fn(mr, nc, kc, ga.data(), as, gw.data(), gc.data(), cs, use_bias ? gb.data() : nullptr,
               clamp ? &mm : nullptr);
            CHECK(gc.values() == want);
          });
        both_sides([&](Flush f) {  // prefetching lines past its panel: never faults
          Guarded ga(a, f), gw(w, f), gb(bias, f), gc(c, f);
          kt.gemm_rows_prefetching[mr](mr, nc, kc, ga.data(), as, gw.data(), gc.data(), cs,
                                       use_bias ? gb.data() : nullptr, clamp ? &mm : nullptr,
                                       gw.data() + kc * NR, kc + 3);
          CHECK(gc.values() == want);
        });
      }
    for (size_t k : {size_t(0), size_t(1), size_t(3), size_t(4), size_t(5), size_t(17)}) {
      CAPTURE(k);
      const auto x = ref::random_vec(k, rng), w = ref::random_vec(k * NR, rng);
      const auto bias = ref::random_vec(NR, rng);
      std::vector<float> want(NR);
      kt.gemv_panel(k, x.data(), w.data(), bias.data(), want.data());
      both_sides([&](Flush f) {
        Guarded gx(x, f), gw(w, f), gb(bias, f), gy(std::vector<float>(NR), f);
        kt.gemv_panel(k, gx.data(), gw.data(), gb.data(), gy.data());
        CHECK(gy.values() == want);
      });
    }
  });
}

TEST_CASE("microkernels: depthwise, Winograd transforms, pooling and add stay inside their rows") {
  std::mt19937 rng(42);
  test::for_each_isa([&](kernels::Isa isa) {
    const kernels::KernelTable& kt = kernels::active();
    CAPTURE(kernels::isa_name(isa));
    const kernels::MinMax mm{-0.5f, 0.75f};
    for (int it = 0; it < 24; ++it) {
      // Channel counts around every vector width (4, 8, 16) and odd ones.
      const size_t C = pick(rng, 1, 37), in_w = pick(rng, 1, 11);
      CAPTURE(C);
      CAPTURE(in_w);
      // One input row is in_w * C floats; nullptr rows are padding.
      std::vector<std::vector<float>> rows(8);
      for (auto& r : rows) r = ref::random_vec(in_w * C, rng);
      const bool clamp = rng() % 2;

      {  // 3x3 depthwise, stride 1 or 2, left pad 0 or 1
        const size_t stride = pick(rng, 1, 2), pad = pick(rng, 0, 1);
        if (in_w + 2 * pad >= 3) {
          const size_t out_w = (in_w + 2 * pad - 3) / stride + 1;
          const auto w9 = ref::random_vec(9 * C, rng), bias = ref::random_vec(C, rng);
          const bool pad_row = rng() % 2;
          std::vector<float> want(out_w * C);
          const float* rp[3] = {pad_row ? nullptr : rows[0].data(), rows[1].data(), rows[2].data()};
          kt.dwconv3x3(rp, in_w, C, stride, pad, w9.data(), bias.data(), want.data(), out_w,
                       clamp ? &mm : nullptr);
          both_sides([&](Flush f) {
            Guarded r0(rows[0], f), r1(rows[1], f), r2(rows[2], f), gw(w9, f), gb(bias, f),
                go(std::vector<float>(out_w * C), f);
            const float* gp[3] = {pad_row ? nullptr : r0.data(), r1.data(), r2.data()};
            kt.dwconv3x3(gp, in_w, C, stride, pad, gw.data(), gb.data(), go.data(), out_w,
                         clamp ? &mm : nullptr);
            CHECK(go.values() == want);
          });
        }
      }
      for (int tile : {6, 4, 2}) {  // Winograd input transform: a (tile+2)^2 tile from 2 left of the row
        CAPTURE(tile);
        const int a = tile + 2;
        const kernels::WinoInputFn fn = kernels::wino_input_fn(kt, tile);
        const long x0 = long(pick(rng, 0, in_w + 1)) - 2;
        const size_t v_stride = C + pick(rng, 0, 5);
        std::vector<float> want(size_t(a * a - 1) * v_stride + C);
        const float* rp[8] = {};
        for (int i = 0; i < a; ++i)
          rp[i] = (i == a - 1 && rng() % 2) ? nullptr : rows[size_t(i)].data();
        fn(rp, x0, in_w, C, want.data(), v_stride);
        both_sides([&](Flush f) {
          std::vector<std::unique_ptr<Guarded>> g;
          const float* gp[8];
          for (int i = 0; i < a; ++i) {
            g.push_back(std::make_unique<Guarded>(rows[size_t(i)], f));
            gp[i] = rp[i] ? g.back()->data() : nullptr;
          }
          Guarded gv(std::vector<float>(want.size()), f);
          fn(gp, x0, in_w, C, gv.data(), v_stride);
          CHECK(gv.values() == want);
        });
      }
      for (int tile : {6, 4, 2}) {  // Winograd output transform: up to `tile` columns into rows that end at the last column
        CAPTURE(tile);
        const int a = tile + 2;
        const kernels::WinoOutputFn fn = kernels::wino_output_fn(kt, tile);
        const size_t m_stride = C + pick(rng, 0, 5), x0 = pick(rng, 0, 3), ncols = pick(rng, 1, size_t(tile));
        const auto m = ref::random_vec(size_t(a * a - 1) * m_stride + C, rng), bias = ref::random_vec(C, rng);
        const size_t row_len = (x0 + ncols) * C;
        std::vector<std::vector<float>> want(static_cast<size_t>(tile), std::vector<float>(row_len));
        const bool skip = rng() % 2;
        float* op[6] = {};
        for (int p = 0; p < tile; ++p) op[p] = (skip && p == tile - 1) ? nullptr : want[size_t(p)].data();
        fn(m.data(), m_stride, C, bias.data(), clamp ? &mm : nullptr, op, x0, ncols);
        both_sides([&](Flush f) {
          Guarded gm(m, f), gb(bias, f);
          std::vector<std::unique_ptr<Guarded>> g;
          float* gp[6] = {};
          for (int p = 0; p < tile; ++p) {
            g.push_back(std::make_unique<Guarded>(std::vector<float>(row_len), f));
            gp[p] = op[p] ? g.back()->data() : nullptr;
          }
          fn(gm.data(), m_stride, C, gb.data(), clamp ? &mm : nullptr, gp, x0, ncols);
          for (int p = 0; p < tile; ++p) CHECK(g[size_t(p)]->values() == want[size_t(p)]);
        });
      }
      {  // max and average pooling: kw 1..3, stride 1..3, pad < kw
        const size_t kw = pick(rng, 1, 3), stride = pick(rng, 1, 3), pad = pick(rng, 0, kw - 1);
        const size_t nrows = pick(rng, 1, 3);
        if (in_w + 2 * pad >= kw) {
          const size_t out_w = (in_w + 2 * pad - kw) / stride + 1;
          for (bool max : {true, false}) {
            CAPTURE(max);
            const kernels::PoolRowFn fn = max ? kt.maxpool_row : kt.avgpool_row;
            std::vector<float> want(out_w * C);
            const float* rp[3] = {rows[0].data(), rows[1].data(), rows[2].data()};
            fn(rp, nrows, in_w, C, kw, stride, pad, want.data(), out_w);
            both_sides([&](Flush f) {
              Guarded r0(rows[0], f), r1(rows[1], f), r2(rows[2], f),
                  go(std::vector<float>(out_w * C), f);
              const float* gp[3] = {r0.data(), r1.data(), r2.data()};
              fn(gp, nrows, in_w, C, kw, stride, pad, go.data(), out_w);
              CHECK(go.values() == want);
            });
          }
        }
      }
      {  // elementwise add of n = in_w * C floats
        const size_t n = in_w * C;
        std::vector<float> want(n);
        kt.add(rows[0].data(), rows[1].data(), want.data(), n, clamp ? &mm : nullptr);
        both_sides([&](Flush f) {
          Guarded ga(rows[0], f), gb(rows[1], f), go(std::vector<float>(n), f);
          kt.add(ga.data(), gb.data(), go.data(), n, clamp ? &mm : nullptr);
          CHECK(go.values() == want);
        });
      }
    }
  });
}

TEST_CASE("microkernels: fp16 conversions equal the scalar twin on every ISA, at every length") {
  // Every half value, and floats around every rounding boundary: hardware (F16C, FCVT) and the
  // scalar twin must agree bit for bit, or the fp16 wire would differ between x86-64 and
  // aarch64 devices. NaNs only need to stay NaNs (payloads may be quieted).
  std::vector<uint16_t> halves(65536);
  for (size_t h = 0; h < halves.size(); ++h) halves[h] = uint16_t(h);
  std::vector<float> floats;
  std::mt19937 rng(41);
  for (uint16_t h : halves) {
    uint32_t bits;
    const float f = half_to_float(h);
    std::memcpy(&bits, &f, 4);
    for (int32_t d : {-1, 0, 1, 0xFFF, 0x1000, 0x1001}) {  // the half's neighbours and midpoints
      const uint32_t b = bits + uint32_t(d);
      float x;
      std::memcpy(&x, &b, 4);
      floats.push_back(x);
    }
  }
  for (int i = 0; i < 100000; ++i) {
    const uint32_t b = uint32_t(rng());
    float x;
    std::memcpy(&x, &b, 4);
    floats.push_back(x);
  }
  test::for_each_isa([&](kernels::Isa isa) {
    CAPTURE(kernels::isa_name(isa));
    const kernels::KernelTable& t = kernels::active();
    for (size_t n : {size_t(0), size_t(1), size_t(7), size_t(9), size_t(33), floats.size()}) {
      CAPTURE(n);
      std::vector<uint16_t> got(n + 1, 0xBEEF);
      t.f32_to_f16(floats.data(), got.data(), n);
      CHECK(got[n] == 0xBEEF);  // nothing written past n
      size_t bad = 0;
      for (size_t i = 0; i < n; ++i) {
        const uint16_t want = float_to_half(floats[i]);
        const bool nan = std::isnan(floats[i]);
        bad += nan ? !std::isnan(half_to_float(got[i])) : got[i] != want;
      }
      CHECK(bad == 0);
    }
    std::vector<float> wide(halves.size());
    t.f16_to_f32(halves.data(), wide.data(), halves.size());
    size_t bad = 0;
    for (size_t h = 0; h < halves.size(); ++h) {
      const float want = half_to_float(halves[h]);
      bad += std::isnan(want) ? !std::isnan(wide[h]) : std::memcmp(&want, &wide[h], 4) != 0;
    }
    CHECK(bad == 0);
  });
}

namespace {
// The plain twin of zero elision (KernelTable::elide_zeros): masks, then the sent values.
void elide_twin(const std::vector<float>& x, std::vector<uint64_t>& masks, std::vector<uint32_t>& vals) {
  masks.assign((x.size() + 63) / 64, 0);
  vals.clear();
  for (size_t i = 0; i < x.size(); ++i) {
    uint32_t b;
    std::memcpy(&b, &x[i], 4);
    if (b == 0) continue;
    masks[i / 64] |= uint64_t(1) << (i % 64);
    vals.push_back(b);
  }
}

// Values with bits 0 (elided) at `zeros` of the positions; the rest random bit patterns, among
// them -0.0, NaNs and denormals (sent as they are).
std::vector<float> elision_input(size_t n, double zeros, std::mt19937& rng) {
  std::vector<float> x(n);
  std::uniform_real_distribution<double> u(0, 1);
  for (float& v : x) {
    uint32_t b = uint32_t(rng());
    if (u(rng) < zeros) b = 0;
    else if (u(rng) < 0.05) b = 0x80000000u;  // -0.0
    else if (u(rng) < 0.05) b = 0x7FC00001u;  // a NaN
    else if (u(rng) < 0.05) b = 1;            // the least denormal
    std::memcpy(&v, &b, 4);
  }
  return x;
}
}  // namespace

TEST_CASE("microkernels: zero elision equals its plain twin on every ISA, inside its buffers") {
  // The exact fp32 wire (dist/runtime/sparse_wire.h). Guard pages: elide_zeros writes at most
  // kElideSlack floats past its count; expand_zeros reads nothing past vals[sent) and writes
  // exactly n values; none reads x before its start or past n.
  std::mt19937 rng(43);
  std::vector<size_t> lengths = {0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 63, 64, 65, 127, 128, 129, 1000, 4097};
  for (int k = 0; k < 20; ++k) lengths.push_back(pick(rng, 1, 300));
  test::for_each_isa([&](kernels::Isa isa) {
    const kernels::KernelTable& t = kernels::active();
    CAPTURE(kernels::isa_name(isa));
    for (size_t n : lengths)
      for (double zeros : {0.0, 0.1, 0.5, 0.9, 1.0}) {
        CAPTURE(n);
        CAPTURE(zeros);
        const std::vector<float> x = elision_input(n, zeros, rng);
        std::vector<uint64_t> want_masks;
        std::vector<uint32_t> want_vals;
        elide_twin(x, want_masks, want_vals);
        const size_t sent = want_vals.size();
        both_sides([&](Flush f) {
          Guarded in(x, f);
          CHECK(t.count_sent(in.data(), n) == sent);
          Guarded out(std::vector<float>(sent + kernels::kElideSlack), Flush::end);
          std::vector<uint64_t> masks(want_masks.size() + 1, 0xABCDu);
          REQUIRE(t.elide_zeros(in.data(), n, masks.data(), out.data()) == sent);
          CHECK(masks.back() == 0xABCDu);  // no mask word past ceil(n / 64)
          masks.pop_back();
          CHECK(masks == want_masks);
          // (memcmp and memcpy only where there are bytes: an empty vector's data() may be null)
          if (sent) CHECK(std::memcmp(out.data(), want_vals.data(), sent * 4) == 0);
          // Expand from values that end at a guard page, into n floats that end at one.
          std::vector<float> packed(sent);
          if (sent) std::memcpy(packed.data(), want_vals.data(), sent * 4);
          Guarded vals(packed, f);
          Guarded y(std::vector<float>(n, 7.0f), f);
          t.expand_zeros(want_masks.data(), vals.data(), sent, y.data(), n);
          const std::vector<float> back = y.values();
          if (n) CHECK(std::memcmp(back.data(), x.data(), n * 4) == 0);  // every bit, -0.0 and NaNs too
        });
      }
  });
}

TEST_CASE("microkernels: the vector tables elide zeros 8 (x86-64) or 4 (NEON) values per step") {
  // The one-value-at-a-time loop cost 1.1-1.6 ns per wire byte (AVX2: 0.10-0.15, `edgeband
  // profile`'s data_path) and passes every equality test: a table whose vector path compiled
  // out (an arch other than the one the kernels test for, a lost -m flag) would not be noticed.
  const std::pair<kernels::Isa, size_t> want[] = {
      {kernels::Isa::scalar, 1}, {kernels::Isa::avx2, 8}, {kernels::Isa::avx512, 8}, {kernels::Isa::neon, 4}};
  int tables = 0;
  for (const auto& [isa, lanes] : want) {
    const kernels::KernelTable* t = kernels::table_for(isa);  // those this CPU runs
    if (!t) continue;
    CAPTURE(kernels::isa_name(isa));
    CHECK(t->elide_lanes == lanes);
    ++tables;
  }
  CHECK(tables >= 2);  // the scalar table and this machine's vector one
}
