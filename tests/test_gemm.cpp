#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "kernels/cache.h"
#include "kernels/gemm.h"
#include "tests/helpers.h"

using namespace eb;

namespace {
double ref_dot(const float* a, size_t as, const float* b, size_t bs, size_t k) {
  double s = 0;
  for (size_t i = 0; i < k; ++i) s += double(a[i * as]) * b[i * bs];
  return s;
}
}  // namespace

TEST_CASE("gemm microkernel matches reference: every mr, nc, and random kc/strides/epilogues") {
  std::mt19937 rng(1);
  test::for_each_isa([&](kernels::Isa isa) {
    const kernels::KernelTable& kt = kernels::active();
    CAPTURE(kernels::isa_name(isa));
    const size_t MR = kt.gemm_mr, NR = kt.gemm_nr;
    for (size_t mr = 1; mr <= MR; ++mr)
      for (size_t nc = 1; nc <= NR; ++nc) {
        const size_t kc = std::uniform_int_distribution<size_t>(0, 40)(rng);
        const size_t as = kc + std::uniform_int_distribution<size_t>(0, 5)(rng);
        const size_t cs = nc + std::uniform_int_distribution<size_t>(0, 5)(rng);
        auto a = ref::random_vec(MR * as + 1, rng), w = ref::random_vec(kc * NR + 1, rng);
        auto bias = ref::random_vec(NR, rng), c = ref::random_vec(MR * cs, rng);
        const auto c0 = c;
        const bool use_bias = rng() % 2, clamp = rng() % 2;
        const kernels::MinMax mm{-0.5f, 0.75f};
        kt.gemm(mr, nc, kc, a.data(), as, w.data(), c.data(), cs, use_bias ? bias.data() : nullptr,
                clamp ? &mm : nullptr);
        // The fewer-row variant the driver uses for an mr-row remainder: bit-identical, or a
        // band's remainder rows would differ from the same rows inside a full tile.
        // So is its streaming twin (the same kernel prefetching its weights ahead).
        for (const kernels::GemmUkernelFn fn : {kt.gemm_rows[mr], kt.gemm_rows_stream[mr]}) {
          auto c2 = c0;
          REQUIRE(bool(fn));
          fn(mr, nc, kc, a.data(), as, w.data(), c2.data(), cs, use_bias ? bias.data() : nullptr,
             clamp ? &mm : nullptr);
          REQUIRE(c2 == c);
        }
        {  // and its twin prefetching other weights, a random count of lines (past the end too)
          auto c2 = c0;
          const size_t lines = std::uniform_int_distribution<size_t>(0, 3 * kc + 2)(rng);
          REQUIRE(bool(kt.gemm_rows_prefetching[mr]));
          kt.gemm_rows_prefetching[mr](mr, nc, kc, a.data(), as, w.data(), c2.data(), cs,
                                       use_bias ? bias.data() : nullptr, clamp ? &mm : nullptr,
                                       w.data() + kc * NR, lines);
          REQUIRE(c2 == c);
        }
        for (size_t r = 0; r < MR; ++r)
          for (size_t j = 0; j < cs; ++j) {
            const float got = c[r * cs + j];
            if (r >= mr || j >= nc) {
              REQUIRE(got == c0[r * cs + j]);  // untouched outside the tile
              continue;
            }
            double e =
                (use_bias ? bias[j] : c0[r * cs + j]) + ref_dot(&a[r * as], 1, &w[j], NR, kc);
            if (clamp) e = std::min(std::max(e, double(mm.lo)), double(mm.hi));
            REQUIRE(std::fabs(got - e) <= 1e-5 * (1 + double(kc)));
          }
      }
  });
}

TEST_CASE("gemm driver and gemv match reference over random shapes (K blocking, N splits)") {
  std::mt19937 rng(2);
  test::for_each_isa([&](kernels::Isa isa) {
    CAPTURE(kernels::isa_name(isa));
    for (int trial = 0; trial < 25; ++trial) {
      const size_t m = 1 + rng() % 150, n = 1 + rng() % 130, k = rng() % 700;
      auto a = ref::random_vec(m * k + 1, rng), b = ref::random_vec(k * n + 1, rng),
           bias = ref::random_vec(n, rng);
      kernels::PackedB pb = kernels::pack_b(b.data(), k, n, n, bias.data());
      std::vector<float> c(m * n);
      kernels::StridedA sa(a.data(), k);
      kernels::gemm(m, sa, pb, c.data(), n, nullptr);
      std::vector<float> y(n);
      kernels::gemv(a.data(), pb, y.data(), nullptr);
      for (size_t i = 0; i < m; ++i)
        for (size_t j = 0; j < n; ++j) {
          const double e = bias[j] + ref_dot(&a[i * k], 1, &b[j], n, k);
          REQUIRE(std::fabs(c[i * n + j] - e) <= 1e-5 * (1 + double(k)));
          if (i == 0) REQUIRE(std::fabs(y[j] - e) <= 1e-5 * (1 + double(k)));
        }
    }
  });
}

TEST_CASE("gemm row blocks: balanced, and never more weight passes than a ceiling gave") {
  for (size_t mr : {size_t(1), size_t(4), size_t(6), size_t(8), size_t(14), size_t(16)})
    for (size_t m = 1; m <= 40 * mr; ++m) {
      CAPTURE(mr);
      CAPTURE(m);
      const size_t rows = kernels::row_block(m, mr), blocks = (m + rows - 1) / rows;
      const size_t nominal = 8 * mr, ceiling = (m + nominal - 1) / nominal;
      REQUIRE(rows % mr == 0);                   // whole row tiles: one remainder tile at most
      REQUIRE(blocks <= ceiling);                // each block streams the weights once
      REQUIRE(rows <= nominal + nominal / 2);    // an A block stays near its L2 budget
      const size_t tiles = (m + mr - 1) / mr, per_block = rows / mr;
      if (m > nominal) REQUIRE(tiles - (blocks - 1) * per_block >= per_block / 2);  // no runt
    }
  // Full tiles in every block but the last: 112x112 pixels of a 1x1 conv at mr = 6.
  {
    const size_t m = 112 * 112, rows = kernels::row_block(m, 6);
    REQUIRE(rows % 6 == 0);
    REQUIRE(m % rows < rows);
  }
  // The case that streamed conv4's 38 MB of Winograd weights twice: 49 tiles, one block.
  REQUIRE(kernels::row_block(49, 6) >= 49);
}

TEST_CASE("gemm prefetch address: the next slice starts where this one ends, and is all fetched") {
  std::mt19937 rng(5);
  test::for_each_isa([&](kernels::Isa isa) {
    CAPTURE(kernels::isa_name(isa));
    for (size_t k : {size_t(1), size_t(17), size_t(256), size_t(257), size_t(512), size_t(700)}) {
      const size_t n = 1 + rng() % 70;
      const auto b = ref::random_vec(k * n, rng), bias = ref::random_vec(n, rng);
      const kernels::PackedB pb = kernels::pack_b(b.data(), k, n, n, bias.data());
      CAPTURE(k);
      CAPTURE(n);
      // Walk the slices as the driver does: k blocks found by where the next one starts.
      const float* at = pb.panel(0);
      for (size_t p = 0; p < pb.panels; ++p) {
        REQUIRE(at == pb.panel(p));  // panels are contiguous: a slice's end is the next's start
        for (size_t k0 = 0; k0 < k;) {
          const bool more = p + 1 < pb.panels;
          const size_t lines = kernels::next_slice_lines(k, pb.nr, k0, more);
          const size_t kc = std::min<size_t>(256, k - k0);
          at += kc * pb.nr;
          k0 += kc;
          const size_t next_kc =
              k0 < k ? std::min<size_t>(256, k - k0) : more ? std::min<size_t>(256, k) : 0;
          const size_t floats = next_kc * pb.nr;
          REQUIRE(lines * 64 >= floats * sizeof(float));        // every line of the next slice
          REQUIRE(lines * 64 < floats * sizeof(float) + 64);    // and no more
        }
      }
      REQUIRE(at == pb.panel(0) + pb.weight_floats());
    }
  });
}

TEST_CASE("gemm prefetch plan: the first slice streams, the other tiles share the next slice") {
  for (size_t mr : {size_t(1), size_t(6), size_t(8), size_t(14)})
    for (size_t mc = 1; mc <= 10 * mr; ++mc)
      for (bool in_cache : {false, true})
        for (size_t lines : {size_t(0), size_t(1), size_t(7), size_t(256), size_t(512)}) {
          CAPTURE(mr);
          CAPTURE(mc);
          CAPTURE(in_cache);
          CAPTURE(lines);
          size_t next = 0;  // the next line no tile has claimed yet
          bool shared = false;
          for (size_t i = 0; i < mc; i += mr) {
            const kernels::TilePrefetch t = kernels::tile_prefetch(i, mc, mr, in_cache, lines);
            REQUIRE(t.own == (!in_cache && i == 0));  // only a slice nobody fetched streams
            if (t.own) continue;
            shared = true;
            REQUIRE(t.first == next);  // contiguous, in order, no line twice
            REQUIRE(t.end >= t.first);
            // Shares follow the tiles' rows: no tile takes more than its share plus one line.
            const size_t rows = std::min(mr, mc - i);
            const size_t others = mc - (in_cache ? 0 : std::min(mr, mc));
            REQUIRE((t.end - t.first) * others <= lines * rows + others);
            next = t.end;
          }
          REQUIRE(next == (shared ? lines : 0));  // every line of the next slice, once
        }
}

TEST_CASE("gemv_range: every output slice, with and without clamping, is bit-identical to gemv") {
  std::mt19937 rng(5);
  test::for_each_isa([&](kernels::Isa isa) {
    CAPTURE(kernels::isa_name(isa));
    for (int trial = 0; trial < 12; ++trial) {
      const size_t n = 1 + rng() % 300, k = 1 + rng() % 400;
      auto x = ref::random_vec(k, rng), b = ref::random_vec(k * n, rng),
           bias = ref::random_vec(n, rng);
      const kernels::PackedB pb = kernels::pack_b(b.data(), k, n, n, bias.data());
      const kernels::MinMax mm{-0.5f, 0.75f};
      const kernels::MinMax* clamp = trial % 2 ? &mm : nullptr;
      std::vector<float> full(n);
      kernels::gemv(x.data(), pb, full.data(), clamp);
      for (int s = 0; s < 8; ++s) {
        size_t n0 = rng() % (n + 1), n1 = rng() % (n + 1);
        if (n0 > n1) std::swap(n0, n1);
        std::vector<float> part(n1 - n0 + 1, 42.0f);
        kernels::gemv_range(x.data(), pb, n0, n1, part.data(), clamp);
        for (size_t j = n0; j < n1; ++j) REQUIRE(std::memcmp(&part[j - n0], &full[j], 4) == 0);
        REQUIRE(part[n1 - n0] == 42.0f);  // nothing written past the slice
      }
      CHECK_THROWS(kernels::gemv_range(x.data(), pb, 0, n + 1, full.data(), nullptr));
    }
  });
}

TEST_CASE("kernel dispatch picks the best ISA this CPU runs") {
  const kernels::Isa want = kernels::table_for(kernels::Isa::avx512) ? kernels::Isa::avx512
                            : kernels::table_for(kernels::Isa::avx2) ? kernels::Isa::avx2
                            : kernels::table_for(kernels::Isa::neon) ? kernels::Isa::neon
                                                                     : kernels::Isa::scalar;
  if (!std::getenv("EDGEBAND_ISA")) CHECK(kernels::active().isa == want);
#if defined(__aarch64__)
  CHECK(kernels::table_for(kernels::Isa::neon) != nullptr);
  CHECK(want == kernels::Isa::neon);
#endif
  CHECK_THROWS(kernels::parse_isa("sse9"));
}

TEST_CASE("evict_from_caches leaves every byte as it was, at any alignment and length") {
  std::mt19937 rng(5);
  std::vector<uint8_t> buf(1 << 16);
  for (auto& b : buf) b = uint8_t(rng());
  const std::vector<uint8_t> want = buf;
  const size_t evicted = eb::kernels::evicted_bytes();
  size_t asked = 0;
  for (int t = 0; t < 200; ++t) {
    const size_t at = rng() % buf.size(), n = rng() % (buf.size() - at + 1);
    eb::kernels::evict_from_caches(buf.data() + at, n);
    asked += n;
  }
  eb::kernels::evict_from_caches(nullptr, 100);
  CHECK(buf == want);
  CHECK(eb::kernels::evicted_bytes() - evicted == asked);  // null pointers drop nothing
}

TEST_CASE("sweep_caches reads a buffer sized from this machine's largest cache") {
  const size_t bytes = eb::kernels::cache_sweep_bytes();
  CAPTURE(bytes);
  CHECK(bytes >= (size_t(2) << 20));
  CHECK(bytes <= (size_t(64) << 20));
  CHECK(bytes == eb::kernels::cache_sweep_bytes());  // one size for the process
  const size_t before = eb::kernels::sweep_count();
  eb::kernels::sweep_caches();
  eb::kernels::sweep_caches();
  CHECK(eb::kernels::sweep_count() - before == 2);
  // sysfs's sizes (AArch64 boards have no sysconf figures): every unit, and what is not a size.
  CHECK(eb::kernels::parse_cache_size("48K") == 48u << 10);
  CHECK(eb::kernels::parse_cache_size("1024K") == 1u << 20);
  CHECK(eb::kernels::parse_cache_size("32M") == 32u << 20);
  CHECK(eb::kernels::parse_cache_size("2G") == size_t(2) << 30);
  CHECK(eb::kernels::parse_cache_size("512") == 512u);
  for (const char* bad : {"", "K", "12Q", "-1K", "1 M", "99999999999999999999K"})
    CHECK(eb::kernels::parse_cache_size(bad) == 0);
}
