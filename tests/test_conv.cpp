#include <doctest/doctest.h>

#include <random>
#include <stdexcept>

#include "core/layers/conv2d.h"
#include "core/layers/pool2d.h"
#include "kernels/cache.h"
#include "tests/helpers.h"

using namespace eb;

namespace {

struct Case {
  Conv2DParams p;
  int h, w;
};

// Winograd's transforms scale values up and back down (by up to 21/4 and 32 at F(6x6)): 20x
// direct convolution's rounding error, which F(6x6) meets too on these shapes.
float winograd_error(Conv2D::Algo algo) {
  using A = Conv2D::Algo;
  return algo == A::winograd_f63 || algo == A::winograd_f43 || algo == A::winograd_f23 ? 20 : 1;
}

void run_conv_case(const Case& c, Conv2D::Algo algo, std::mt19937& rng) {
  Conv2D conv(c.p);
  const long cpg = c.p.depthwise ? 1 : c.p.cin;
  const float scale = 1.0f / std::sqrt(float(c.p.kh * c.p.kw * cpg));
  conv.weight() = ref::random_vec(conv.weight().size(), rng, -scale, scale);
  conv.bias() = ref::random_vec(conv.bias().size(), rng, -0.1f, 0.1f);
  conv.configure({{c.h, c.w, int(c.p.cin)}});
  conv.force_algo(algo);
  conv.prepare();
  // A profile times a layer as a board runs it, its weights read from memory: every byte of
  // them is dropped from the caches (kernels/cache.h counts what is asked).
  const size_t evicted = kernels::evicted_bytes();
  conv.evict_weights();
  CHECK(kernels::evicted_bytes() - evicted == conv.weight_bytes());
  const Tensor in = ref::random_tensor({c.h, c.w, int(c.p.cin)}, rng);
  const ref::ConvSpec s{c.p.kh, c.p.kw, c.p.sh, c.p.sw, c.p.pad_t, c.p.pad_l, c.p.pad_b, c.p.pad_r,
                        c.p.depthwise, c.p.act};
  const Tensor want = ref::conv2d(in, conv.weight(), conv.bias(), c.p.cout, s);
  Band bi{in, 0};
  Band full{Tensor(conv.output_shape()), 0};
  conv.forward({&bi}, full);
  INFO("algo " << int(algo) << " in " << c.h << "x" << c.w << "x" << c.p.cin << " cout " << c.p.cout
               << " k " << c.p.kh << "x" << c.p.kw << " s " << c.p.sh << " pad " << c.p.pad_t << ","
               << c.p.pad_l << "," << c.p.pad_b << "," << c.p.pad_r);
  REQUIRE(ref::max_abs_diff(full.t, want) <= 2e-5f * (1 + ref::max_abs(want)) * winograd_error(algo));
  test::check_bands(conv, in, full.t, rng);
  conv.pack_and_release();  // as a device holds it: only what the kernel reads
  const size_t before = kernels::evicted_bytes();
  conv.evict_weights();
  CHECK(kernels::evicted_bytes() - before == conv.weight_bytes());
}

Case random_case(std::mt19937& rng, bool depthwise, long k, long stride) {
  auto u = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  Case c;
  c.p.kh = c.p.kw = k;
  c.p.sh = c.p.sw = stride;
  c.p.cin = u(1, 37);
  c.p.cout = depthwise ? c.p.cin : u(1, 45);
  c.p.depthwise = depthwise;
  const int mode = u(0, 2);  // no padding, symmetric, TF SAME-style asymmetric
  const long pad = mode == 0 ? 0 : k / 2;
  c.p.pad_t = c.p.pad_l = (mode == 2 ? std::max(0L, pad - 1) : pad);
  c.p.pad_b = c.p.pad_r = pad;
  c.p.act = Activation(u(0, 2));
  c.h = u(int(k), 19);
  c.w = u(int(k), 23);
  return c;
}

}  // namespace

TEST_CASE("conv2d: every algorithm and ISA matches the reference; every band split is exact") {
  std::mt19937 rng(3);
  test::for_each_isa([&](kernels::Isa isa) {
    CAPTURE(kernels::isa_name(isa));
    for (int t = 0; t < 6; ++t) {
      run_conv_case(random_case(rng, false, 3, 1), Conv2D::Algo::winograd_f63, rng);
      run_conv_case(random_case(rng, false, 3, 1), Conv2D::Algo::winograd_f43, rng);
      run_conv_case(random_case(rng, false, 3, 1), Conv2D::Algo::winograd_f23, rng);
      run_conv_case(random_case(rng, false, 3, 1 + t % 2), Conv2D::Algo::im2col, rng);
      run_conv_case(random_case(rng, false, 1 + 2 * (t % 3), 1 + t % 2), Conv2D::Algo::im2col, rng);
      Case one = random_case(rng, false, 1, 1);
      one.p.pad_t = one.p.pad_l = one.p.pad_b = one.p.pad_r = 0;
      run_conv_case(one, Conv2D::Algo::gemm1x1, rng);
      run_conv_case(random_case(rng, true, 3, 1 + t % 2), Conv2D::Algo::depthwise3x3, rng);
      run_conv_case(random_case(rng, true, 3 + 2 * (t % 2), 1 + t % 2), Conv2D::Algo::depthwise_generic, rng);
    }
    // The Winograd transforms take chunks of the table's full width, then of its SmallArch's,
    // then one channel: 27 input and 29 output channels reach all three on AVX-512 (16, 8, 1)
    // and both on the one-width tables.
    Case mixed = random_case(rng, false, 3, 1);
    mixed.p.cin = 27, mixed.p.cout = 29;
    for (Conv2D::Algo a : {Conv2D::Algo::winograd_f63, Conv2D::Algo::winograd_f43, Conv2D::Algo::winograd_f23})
      run_conv_case(mixed, a, rng);
  });
}

TEST_CASE("conv2d: wide channel counts exercise full vector widths and Winograd blocking") {
  std::mt19937 rng(4);
  Case c;
  c.p.cin = 64;
  c.p.cout = 96;
  c.p.pad_t = c.p.pad_l = c.p.pad_b = c.p.pad_r = 1;
  c.p.act = Activation::relu;
  c.h = 29;
  c.w = 31;
  run_conv_case(c, Conv2D::Algo::winograd_f63, rng);
  run_conv_case(c, Conv2D::Algo::winograd_f43, rng);
  run_conv_case(c, Conv2D::Algo::winograd_f23, rng);
  run_conv_case(c, Conv2D::Algo::im2col, rng);
  Case d = c;
  d.p.depthwise = true;
  d.p.cout = d.p.cin = 72;
  d.p.sh = d.p.sw = 2;
  d.p.pad_t = d.p.pad_l = 0;
  run_conv_case(d, Conv2D::Algo::depthwise3x3, rng);
}

TEST_CASE("conv2d: a grouped convolution evicts exactly the weights it holds") {
  Conv2DParams p;
  p.cin = 8, p.cout = 12, p.groups = 4;
  p.pad_t = p.pad_l = p.pad_b = p.pad_r = 1;
  Conv2D conv(p);
  conv.configure({{9, 9, 8}});
  conv.prepare();
  REQUIRE(conv.algo() == Conv2D::Algo::grouped);
  for (bool released : {false, true}) {
    if (released) conv.pack_and_release();
    const size_t before = kernels::evicted_bytes();
    conv.evict_weights();
    CHECK(conv.weight_bytes() > 0);
    CHECK(kernels::evicted_bytes() - before == conv.weight_bytes());
  }
}

TEST_CASE("conv2d: prepare() picks the expected algorithm") {
  auto algo_of = [](Conv2DParams p, int hw = 16, int w = 0) {
    Conv2D c(p);
    c.configure({{hw, w ? w : hw, int(p.cin)}});
    c.prepare();
    return c.algo();
  };
  Conv2DParams p;
  p.cin = p.cout = 32;
  p.pad_t = p.pad_l = p.pad_b = p.pad_r = 1;
  CHECK(algo_of(p) == Conv2D::Algo::winograd_f43);
  // A small map (VGG-16's conv5 is 14x14) takes F(2x2): 2-row tiles, 16/36 of the weights.
  CHECK(algo_of(p, 14) == Conv2D::Algo::winograd_f23);
  CHECK(algo_of(p, 9) == Conv2D::Algo::winograd_f23);
  CHECK(algo_of(p, 8) == Conv2D::Algo::winograd_f43);
  CHECK(algo_of(p, 28, 7) == Conv2D::Algo::winograd_f23);  // 196 pixels, 28 rows
  CHECK(algo_of(p, 28, 8) == Conv2D::Algo::winograd_f43);  // 224 pixels
  CHECK(algo_of(p, 15) == Conv2D::Algo::winograd_f43);
  // Large maps take F(6x6) where its padded transform positions are at most 85% of F(4x4)'s.
  CHECK(algo_of(p, 224) == Conv2D::Algo::winograd_f63);  // 82%
  CHECK(algo_of(p, 112) == Conv2D::Algo::winograd_f63);
  CHECK(algo_of(p, 96) == Conv2D::Algo::winograd_f63);   // 79%: both tile 96 exactly
  CHECK(algo_of(p, 48) == Conv2D::Algo::winograd_f43);   // 79%, but 8 tile rows
  CHECK(algo_of(p, 56) == Conv2D::Algo::winograd_f43);   // 91%
  CHECK(algo_of(p, 28) == Conv2D::Algo::winograd_f43);
  CHECK(algo_of(p, 224, 28) == Conv2D::Algo::winograd_f43);
  p.cin = 3;
  CHECK(algo_of(p) == Conv2D::Algo::im2col);
  p.cin = 32;
  p.sh = p.sw = 2;
  CHECK(algo_of(p) == Conv2D::Algo::im2col);
  p.depthwise = true;
  CHECK(algo_of(p) == Conv2D::Algo::depthwise3x3);
  Conv2DParams q;
  q.cin = 8;
  q.cout = 16;
  q.kh = q.kw = 1;
  CHECK(algo_of(q) == Conv2D::Algo::gemm1x1);
  CHECK_THROWS_AS(Conv2D(Conv2DParams{0, 1}), std::invalid_argument);
}

TEST_CASE("pooling: max and average, padding and stride, every band split") {
  std::mt19937 rng(5);
  test::for_each_isa([&](kernels::Isa isa) {
    CAPTURE(kernels::isa_name(isa));
    for (int t = 0; t < 12; ++t) {
      auto u = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
      const long k = u(1, 4), s = u(1, 3), pt = u(0, int(k) - 1), pl = u(0, int(k) - 1);
      const long pb = u(0, int(k) - 1), pr = u(0, int(k) - 1);
      const bool is_max = t % 2;
      // 75 channels take pool_row's four-chunk, one-chunk and scalar parts at 8 lanes (x86);
      // 75 and 37 both do at 4 (NEON).
      const int h = u(int(k), 17), w = u(int(k), 17), c = t < 4 ? (t < 2 ? 75 : 37) : u(1, 40);
      Pool2D pool(is_max ? kernels::PoolKind::max : kernels::PoolKind::average, k, s, pt, pl, pb, pr);
      pool.configure({{h, w, c}});
      const Tensor in = ref::random_tensor({h, w, c}, rng);
      const Tensor want = ref::pool2d(in, is_max, k, s, pt, pl, pb, pr);
      Band bi{in, 0}, full{Tensor(pool.output_shape()), 0};
      pool.forward({&bi}, full);
      REQUIRE(ref::max_abs_diff(full.t, want) <= 1e-5f);
      test::check_bands(pool, in, full.t, rng);
    }
  });
}
