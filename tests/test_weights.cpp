#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buffer_cache.h"
#include "core/weights_io.h"
#include "kernels/cache.h"
#include "models/zoo.h"
#include "tests/helpers.h"

using namespace eb;

namespace {
std::string tmp_path(const std::string& name) { return "/tmp/edgeband_test_" + std::to_string(::getpid()) + "_" + name; }
std::vector<char> read_all(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void write_all(const std::string& p, const std::vector<char>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(b.data(), std::streamsize(b.size()));
}
// A file with a valid frame and checksum around an arbitrary header: exercises the semantic
// checks behind the checksum.
void write_with_header(const std::string& p, const std::string& header, size_t data_bytes) {
  std::vector<char> b(32);
  std::memcpy(b.data(), "EBWEIGHT", 8);
  uint32_t v = 1, fl = 0;
  uint64_t h = header.size(), d = data_bytes;
  std::memcpy(b.data() + 8, &v, 4);
  std::memcpy(b.data() + 12, &fl, 4);
  std::memcpy(b.data() + 16, &h, 8);
  std::memcpy(b.data() + 24, &d, 8);
  b.resize(32 + header.size());
  std::memcpy(b.data() + 32, header.data(), header.size());
  b.resize((b.size() + 63) / 64 * 64 + data_bytes, 0);
  const uint64_t sum = hash64(b.data(), b.size());
  b.resize(b.size() + 8);
  std::memcpy(b.data() + b.size() - 8, &sum, 8);
  write_all(p, b);
}
}  // namespace

TEST_CASE("weights: save/load round trip is bit exact and the checksum identifies the model") {
  Graph g = models::build_synthetic("mobilenet_v1:0.25:128");
  const std::string p = tmp_path("rt.ebw");
  const uint64_t h = save_weights(g, p);
  uint64_t h2 = 0;
  Graph back = load_weights(p, &h2);
  CHECK(h == h2);
  CHECK(back.model == g.model);
  std::mt19937 rng(1);
  const Tensor in = ref::random_tensor(g.input, rng);
  CHECK(ref::bit_equal(back.forward(in), g.forward(in)));
  CHECK_NOTHROW(models::load_model("mobilenet_v1:0.25:128", p));
  CHECK_THROWS_WITH_AS(models::load_model("mobilenet_v1:0.5:128", p),
                       doctest::Contains("holds model 'mobilenet_v1:0.25:128'"), WeightsError);
  CHECK_THROWS_WITH_AS(load_weights(tmp_path("does_not_exist.ebw")), doctest::Contains("cannot open"), WeightsError);

  const std::vector<char> good = read_all(p);
  const std::string q = tmp_path("bad.ebw");
  std::mt19937 r2(2);
  for (int i = 0; i < 40; ++i) {  // truncations anywhere
    std::vector<char> b(good.begin(), good.begin() + long(r2() % good.size()));
    write_all(q, b);
    CHECK_THROWS_AS(load_weights(q), WeightsError);
  }
  for (int i = 0; i < 40; ++i) {  // any flipped byte
    std::vector<char> b = good;
    b[r2() % b.size()] ^= char(1 + r2() % 255);
    write_all(q, b);
    CHECK_THROWS_AS(load_weights(q), WeightsError);
  }
  std::vector<char> magic = good;
  magic[0] = 'X';
  write_all(q, magic);
  CHECK_THROWS_WITH_AS(load_weights(q), doctest::Contains("bad magic"), WeightsError);
  std::remove(p.c_str());
  std::remove(q.c_str());
}

TEST_CASE("weights: a well-framed file with a hostile header is a clear error") {
  const std::string q = tmp_path("hostile.ebw");
  const std::string base =
      R"({"model":"x","input":[8,8,3],"normalize":{"mean":[0,0,0],"std":[1,1,1]},"label_offset":0,"labels":[],"nodes":)";
  const std::vector<std::string> bad_nodes = {
      "[]",                                                    // no layers
      "[{}]",                                                  // missing keys
      R"([{"name":"a","type":"warp","inputs":[-1],"attrs":{},"params":[]}])",  // unknown type
      R"([{"name":"c","type":"conv2d","inputs":[-1],"attrs":{"cin":3,"cout":4,"kernel":[3,3],"stride":[1,1],"pad":[1,1,1,1],"depthwise":false,"activation":"relu"},"params":[{"name":"weight","dims":[4,3,3,3],"offset":0},{"name":"bias","dims":[4],"offset":999999}]}])",
      R"([{"name":"c","type":"conv2d","inputs":[-1],"attrs":{"cin":3,"cout":4,"kernel":[3,3],"stride":[1,1],"pad":[1,1,1,1],"depthwise":false,"activation":"relu"},"params":[{"name":"weight","dims":[4,3,3,9],"offset":0},{"name":"bias","dims":[4],"offset":512}]}])",
      R"([{"name":"c","type":"conv2d","inputs":[-1],"attrs":{"cin":-3,"cout":4000000000,"kernel":[3,3],"stride":[1,1],"pad":[1,1,1,1],"depthwise":false,"activation":"relu"},"params":[]}])",
      R"([{"name":"s","type":"softmax","inputs":[5],"attrs":{},"params":[]}])",  // forward reference
      R"([{"name":"f","type":"fully_connected","inputs":[-1],"attrs":{"in":100000000,"out":1000000,"activation":"none"},"params":[]}])",
  };
  for (const std::string& nodes : bad_nodes) {
    write_with_header(q, base + nodes + "}", 1024);
    CAPTURE(nodes);
    CHECK_THROWS_AS(load_weights(q), WeightsError);
  }
  write_with_header(q, "{not json", 0);
  CHECK_THROWS_WITH_AS(load_weights(q), doctest::Contains("JSON"), WeightsError);
  std::remove(q.c_str());
}

// --- weight memory (issue 27) ----------------------------------------------------------------
namespace {
bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
}  // namespace

TEST_CASE("memory: a lean graph holds each weight once and computes what a full one does") {
  for (const char* name : {"vgg16:32", "mobilenet_v1:0.25:64"}) {
    CAPTURE(name);
    Graph full = models::build_synthetic(name);
    Graph lean = models::build_synthetic(name, 2022, models::Hold::lean);
    std::mt19937 rng(5);
    const Tensor in = ref::random_tensor(full.input, rng);
    CHECK(same_bits(full.forward(in), lean.forward(in)));
    CHECK(lean.weight_bytes() < full.weight_bytes());
    CHECK_THROWS_AS(lean.node(0).layer->params(), std::logic_error);  // released, not zeros
  }
}

namespace {
// A lazy graph against the same model held whole: it starts with next to no weights, a slice of
// its first FC layer loads alone and computes that slice bit for bit, an unloaded slice refuses
// to run, and once every node is loaded the whole network is bit-identical.
void check_lazy_matches(Graph& lazy, const Graph& whole, unsigned seed) {
  CHECK(lazy.weight_bytes() < whole.weight_bytes() / 50);  // biases and small layers only
  const int fc = lazy.spatial_end() + (lazy.node(lazy.spatial_end()).layer->splits_channels() ? 0 : 1);
  REQUIRE(lazy.node(fc).layer->splits_channels());
  lazy.load(fc, {100, 200});  // a slice: only its panels are filled
  CHECK(lazy.node(fc).layer->ready({100, 200}));
  CHECK_FALSE(lazy.node(fc).layer->ready({0, 200}));
  CHECK(lazy.node(fc).layer->weight_bytes() < whole.node(fc).layer->weight_bytes() / 4);
  std::mt19937 rng(seed);
  const Band x{ref::random_tensor(whole.shape_of(fc - 1), rng), 0};
  std::vector<float> a(100), b(100);
  whole.node(fc).layer->forward_channels(x, 100, 200, a.data());
  lazy.node(fc).layer->forward_channels(x, 100, 200, b.data());
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  CHECK_THROWS_AS(lazy.node(fc).layer->forward_channels(x, 0, 100, b.data()), std::logic_error);
  for (int i = 0; i < lazy.size(); ++i) lazy.load(i);
  const Tensor in = ref::random_tensor(whole.input, rng);
  CHECK(same_bits(whole.forward(in), lazy.forward(in)));
}
}  // namespace

TEST_CASE("memory: a lazy graph loads only what is asked, and then equals the full graph") {
  for (const char* name : {"vgg16:32", "mobilenet_v1:0.25:64"}) {  // MobileNet: pending BN folds
    CAPTURE(name);
    const Graph full = models::build_synthetic(name);
    Graph lazy = models::build_synthetic(name, 2022, models::Hold::lazy);
    check_lazy_matches(lazy, full, 6);
  }
}

TEST_CASE("memory: a lazy graph streams the layers it does not hold, keeps what it held, and equals the whole graph") {
  for (const char* name : {"vgg16:32", "mobilenet_v1:0.25:64"}) {  // MobileNet: folds applied again
    CAPTURE(name);
    const Graph full = models::build_synthetic(name);
    Graph lazy = models::build_synthetic(name, 2022, models::Hold::lazy);
    std::mt19937 rng(8);
    const Tensor in = ref::random_tensor(full.input, rng);
    const Tensor want = full.forward(in);
    const size_t none = lazy.weight_bytes(), sweeps = kernels::sweep_count();
    CHECK(same_bits(lazy.forward(in), want));  // every layer streamed, FC layers in slices
    CHECK(kernels::sweep_count() == sweeps);      // untimed: nothing swept
    CHECK(lazy.weight_bytes() == none);
    // A host's share: the first conv, and a slice of the first FC layer.
    const int fc = lazy.spatial_end() + (lazy.node(lazy.spatial_end()).layer->splits_channels() ? 0 : 1);
    lazy.load(0);
    lazy.load(fc, {32, 96});
    const size_t share = lazy.weight_bytes();
    size_t streamed = 0;  // every layer with weights but the first conv
    for (int n = 1; n < lazy.size(); ++n) streamed += lazy.node(n).layer->loads_lazily();
    CHECK(streamed > 2);
    for (int run = 0; run < 2; ++run) {  // streamed twice: a conv's BN folds apply to fresh weights
      Tensor got;
      const size_t before = kernels::sweep_count();
      CHECK(timed_forward_ms(lazy, in, &got) > 0);
      // Timed: each streamed piece meets its weights as a board holding it does, after a sweep.
      CHECK(kernels::sweep_count() - before >= streamed);
      CHECK(same_bits(got, want));
      CHECK(lazy.weight_bytes() == share);
      CHECK(lazy.node(0).layer->ready());
      CHECK(lazy.node(fc).layer->ready({32, 96}));
      CHECK_FALSE(lazy.node(fc).layer->ready({0, 200}));
    }
    // A slice of whole panels is transposed where it was read: nothing beside it but a panel.
    const Layer& l = *lazy.node(fc).layer;
    CHECK(l.source_bytes({0, 512}) * 8 < l.packed_bytes({0, 512}));
    CHECK(l.weight_bytes() <= l.packed_bytes({32, 96}));
  }
}

TEST_CASE("memory: the buffer cache hands freed buffers out again, zeroed when asked, and maps no more than the largest working set") {
  release_cached_buffers();
  auto bounded = [] {
    const BufferCacheStats st = buffer_cache_stats();
    return st.live_bytes + st.cached_bytes <= kCachedWorkingSets * st.live_peak;
  };
  const BufferCacheStats s0 = buffer_cache_stats();
  MappedBuffer a = take_buffer(1 << 20, true);
  REQUIRE(a.data != nullptr);
  CHECK(a.size == size_t(1) << 20);
  std::memset(a.data, 0xff, a.size);
  give_buffer(a);
  CHECK(buffer_cache_stats().cached_bytes == s0.cached_bytes + a.size);
  MappedBuffer b = take_buffer((1 << 20) - 100, true);  // the same buffer, zeroed
  CHECK(b.data == a.data);
  CHECK(buffer_cache_stats().reused == s0.reused + 1);
  const auto* bytes = static_cast<const unsigned char*>(b.data);
  CHECK(std::all_of(bytes, bytes + (1 << 20) - 100, [](unsigned char v) { return v == 0; }));
  give_buffer(b);
  // A larger request maps anew, and to stay within twice the largest working set (1 MB) the
  // cached buffer goes first.
  MappedBuffer c = take_buffer(3 << 19, false);
  CHECK(buffer_cache_stats().mapped == s0.mapped + 2);
  if (s0.live_bytes == 0)  // no other large tensor alive now, whose size would widen the bound
    CHECK(buffer_cache_stats().cached_bytes == 0);
  CHECK(bounded());
  // A small request does not take a buffer over twice its size.
  give_buffer(c);
  MappedBuffer small = take_buffer(300 << 10, false);
  CHECK(small.data != c.data);
  give_buffer(small);
  MappedBuffer d = take_buffer(2 << 20, false), e = take_buffer(256 << 10, false);
  give_buffer(d), give_buffer(e);
  CHECK(bounded());
  MappedBuffer f = take_buffer(2 << 20, false);  // d again
  CHECK(f.data == d.data);
  give_buffer(f);
  release_cached_buffers();
  CHECK(buffer_cache_stats().cached_bytes == 0);
  // Tensors use it above kCachedBufferMin, except under AddressSanitizer (its heap redzones).
  if (buffer_cached(kCachedBufferMin)) {
    const float* first = nullptr;
    {
      Tensor t(Shape{512, 512, 1});
      first = t.data();
      std::fill(t.data(), t.data() + t.size(), 3.0f);
    }
    Tensor again(Shape{512, 512, 1});
    CHECK(again.data() == first);
    CHECK(std::all_of(again.data(), again.data() + again.size(), [](float v) { return v == 0.0f; }));
  }
  CHECK_FALSE(buffer_cached(kCachedBufferMin - 1));
  // A sparse tensor maps afresh (only rows written become resident), outside the cache.
  const BufferCacheStats s1 = buffer_cache_stats();
  {
    Tensor sparse = Tensor::sparse(Shape{1024, 1024, 1});
    sparse.row(5)[7] = 1.0f;
    CHECK(sparse.row(5)[7] == 1.0f);
  }
  CHECK(buffer_cache_stats().mapped == s1.mapped);
  CHECK(buffer_cache_stats().cached_bytes == s1.cached_bytes);
}

TEST_CASE("memory: a lazy weights file reads only the sections asked for, and then equals the whole load") {
  const std::string path = "/tmp/eb_lazy_" + std::to_string(::getpid()) + ".ebw";
  for (const char* name : {"vgg16:32", "mobilenet_v1:0.25:64"}) {  // MobileNet: BN folded on save
    CAPTURE(name);
    Graph src = models::build_synthetic(name);
    uint64_t saved = save_weights(src, path), got = 0;
    const Graph whole = load_weights(path);
    Graph lazy = load_weights_lazy(path, &got);
    CHECK(got == saved);  // the streamed checksum is the file's
    check_lazy_matches(lazy, whole, 7);  // an FC slice reads only its rows of the file
  }
  // The checksum is streamed in whole words plus a tail: bodies of every length mod 8 (and below
  // 8 bytes of data) hash as the one-shot hash64 did when the file was written, so the loader
  // gets past the checksum to the header, which is not JSON.
  for (size_t data = 0; data <= 20; ++data) {
    CAPTURE(data);
    write_with_header(path, "{not json", data);
    CHECK_THROWS_WITH_AS(load_weights_lazy(path), doctest::Contains("JSON"), WeightsError);
    CHECK_THROWS_WITH_AS(load_weights(path), doctest::Contains("JSON"), WeightsError);
  }
  // A corrupt byte anywhere is found at open, before any section is read.
  Graph src = models::build_synthetic("mobilenet_v1:0.25:32");
  save_weights(src, path);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-100, std::ios::end);
    f.put('\x55');
  }
  CHECK_THROWS_WITH_AS(load_weights_lazy(path), doctest::Contains("checksum mismatch"), WeightsError);
  CHECK_THROWS_WITH_AS(load_weights_lazy("/tmp"), doctest::Contains("not a regular file"), WeightsError);
  // Rewritten in place after the check (cp over it): the next section read refuses it rather
  // than mixing two models under one checksum.
  Graph other = models::build_synthetic("mobilenet_v1:0.25:32", 7);
  save_weights(src, path);
  Graph lazy = load_weights_lazy(path);
  const std::string copy = path + ".other";
  save_weights(other, copy);
  {
    std::ifstream in(copy, std::ios::binary);
    std::ofstream out(path, std::ios::binary | std::ios::in | std::ios::out);
    out << in.rdbuf();
  }
  struct timespec later[2] = {{0, UTIME_OMIT}, {2000000000, 0}};  // mtime moves even within a tick
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), later, 0) == 0);
  CHECK_THROWS_WITH_AS(lazy.load(0), doctest::Contains("changed on disk"), WeightsError);
  std::remove(copy.c_str());
  std::remove(path.c_str());
}
