#include "core/weights_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <vector>

#include "core/layers/fully_connected.h"

namespace eb {

namespace {
constexpr char kMagic[8] = {'E', 'B', 'W', 'E', 'I', 'G', 'H', 'T'};
constexpr uint32_t kVersion = 1;
constexpr size_t kFixed = 32;
constexpr uint64_t kMaxHeader = 64ull << 20, kMaxData = 8ull << 30;

size_t align64(size_t n) { return (n + 63) / 64 * 64; }

template <class T>
void put(std::vector<char>& b, size_t at, T v) {
  std::memcpy(b.data() + at, &v, sizeof(T));
}

// Word-at-a-time multiply-xorshift: fast enough for 500 MB of VGG weights, and any changed byte
// changes the result. Streamed (a loader hashes a file it never holds whole): feed words, then
// the tail; the value equals hash64's.
class Hash64 {
 public:
  Hash64(size_t total, uint64_t seed) : h_(seed ^ (0x9E3779B97F4A7C15ull * (total + 1))) {}
  void words(const unsigned char* p, size_t n) {  // n a multiple of 8
    assert(n % 8 == 0);
    for (size_t i = 0; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      mix(w);
    }
  }
  uint64_t finish(const unsigned char* tail, size_t n) {  // the last n < 8 bytes
    uint64_t t = 0;
    for (size_t k = 0; k < n; ++k) t |= uint64_t(tail[k]) << (8 * k);
    h_ = (h_ ^ (t * 0xBF58476D1CE4E5B9ull)) * 0x94D049BB133111EBull;
    return h_ ^ (h_ >> 32);
  }

 private:
  void mix(uint64_t w) {
    h_ = (h_ ^ (w * 0xBF58476D1CE4E5B9ull)) * 0x94D049BB133111EBull;
    h_ ^= h_ >> 29;
  }
  uint64_t h_;
};
}  // namespace

uint64_t hash64(const void* data, size_t n, uint64_t seed) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  Hash64 h(n, seed);
  h.words(p, n / 8 * 8);
  return h.finish(p + n / 8 * 8, n % 8);
}

uint64_t save_weights(Graph& g, const std::string& path) {
  Json header = Json::object();
  header["model"] = g.model;
  header["input"] = Json(Json::Array{g.input.h, g.input.w, g.input.c});
  Json norm = Json::object();
  norm["mean"] = Json(Json::Array{double(g.norm.mean[0]), double(g.norm.mean[1]), double(g.norm.mean[2])});
  norm["std"] = Json(Json::Array{double(g.norm.std[0]), double(g.norm.std[1]), double(g.norm.std[2])});
  header["normalize"] = norm;
  header["label_offset"] = g.label_offset;
  Json labels = Json::array();
  for (const std::string& l : g.labels) labels.push_back(l);
  header["labels"] = labels;
  Json nodes = Json::array();
  size_t offset = 0;
  std::vector<std::pair<size_t, const std::vector<float>*>> blobs;
  for (int i = 0; i < g.size(); ++i) {
    Node& n = g.node(i);
    Json jn = Json::object();
    jn["name"] = n.name;
    jn["type"] = n.layer->type();
    Json ins = Json::array();
    for (int k : n.inputs) ins.push_back(k);
    jn["inputs"] = ins;
    jn["attrs"] = n.layer->attrs();
    Json ps = Json::array();
    for (const Param& p : n.layer->params()) {
      Json jp = Json::object();
      jp["name"] = p.name;
      Json dims = Json::array();
      for (long d : p.dims) dims.push_back(d);
      jp["dims"] = dims;
      jp["offset"] = static_cast<unsigned long>(offset);
      ps.push_back(jp);
      blobs.push_back({offset, p.data});
      offset = align64(offset + p.data->size() * sizeof(float));
    }
    jn["params"] = ps;
    nodes.push_back(jn);
  }
  header["nodes"] = nodes;
  const std::string text = header.dump();
  const size_t data_at = align64(kFixed + text.size());
  std::vector<char> buf(data_at + offset + 8, 0);
  std::memcpy(buf.data(), kMagic, 8);
  put<uint32_t>(buf, 8, kVersion);
  put<uint32_t>(buf, 12, 0);
  put<uint64_t>(buf, 16, text.size());
  put<uint64_t>(buf, 24, offset);
  std::memcpy(buf.data() + kFixed, text.data(), text.size());
  for (auto& [off, v] : blobs) std::memcpy(buf.data() + data_at + off, v->data(), v->size() * 4);
  const uint64_t sum = hash64(buf.data(), buf.size() - 8);
  put<uint64_t>(buf, buf.size() - 8, sum);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw WeightsError("cannot write weights file '" + tmp + "'");
    f.write(buf.data(), std::streamsize(buf.size()));
    if (!f) throw WeightsError("write failed for '" + tmp + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw WeightsError("cannot rename '" + tmp + "' to '" + path + "'");
  }
  return sum;
}

namespace {
// An open .ebw, read by offset (pread): the loader checks it, then copies each tensor straight
// into its layer, so the file's bytes never sit in memory whole; a lazy graph keeps it open and
// reads a section when Graph::load asks. Replacing the file (save_weights renames) is safe: the
// descriptor keeps the old one. Rewriting it in place (cp over it) would mix two models under
// one checksum, so every section read first checks that its size and mtime are as checked.
// (The eager load reads the file twice, to hash and to copy: from the page cache, or twice from
// the card on a board whose memory cannot cache it.)
class WeightsFile {
 public:
  explicit WeightsFile(const std::string& path) : path_(path) {
    struct stat st {};
    // Only a regular file: a directory would read as garbage, and opening a FIFO blocks.
    if (::stat(path.c_str(), &st) != 0) throw fail("cannot open (missing or unreadable)");
    if (!S_ISREG(st.st_mode)) throw fail("not a regular file");
    fd_.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd_.fd < 0 || ::fstat(fd_.fd, &st) != 0) throw fail("cannot open (missing or unreadable)");
    if (!S_ISREG(st.st_mode)) throw fail("not a regular file");
    size_ = uint64_t(st.st_size);
    mtime_ = st.st_mtim;
  }
  WeightsFile(const WeightsFile&) = delete;
  WeightsFile& operator=(const WeightsFile&) = delete;
  WeightsError fail(const std::string& why) const { return WeightsError("weights file '" + path_ + "': " + why); }
  uint64_t size() const { return size_; }
  void check_unchanged() const {
    struct stat st {};
    if (::fstat(fd_.fd, &st) != 0 || uint64_t(st.st_size) != size_ || st.st_mtim.tv_sec != mtime_.tv_sec ||
        st.st_mtim.tv_nsec != mtime_.tv_nsec)
      throw fail("changed on disk since it was checked; restart with the new file");
  }
  void read(uint64_t at, void* dst, size_t n) const {
    char* p = static_cast<char*>(dst);
    while (n > 0) {
      const ssize_t r = ::pread(fd_.fd, p, n, off_t(at));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) throw fail("read error at byte " + std::to_string(at) + " (truncated or changed on disk?)");
      p += r, at += uint64_t(r), n -= size_t(r);
    }
  }
  template <class T>
  T get(uint64_t at) const {
    T v;
    read(at, &v, sizeof(T));
    return v;
  }

 private:
  struct Fd {
    int fd = -1;
    Fd() = default;
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() {
      if (fd >= 0) ::close(fd);
    }
  } fd_;
  std::string path_;
  uint64_t size_ = 0;
  struct timespec mtime_ {};
};

// Checks magic, version, lengths, size and the checksum (streamed in 4 MB pieces); returns the
// JSON header and where the tensor data starts.
std::string check_file(const WeightsFile& f, uint64_t* data_at, uint64_t* data_len, uint64_t* checksum) {
  if (f.size() < kFixed + 8) throw f.fail("too short to be an edgeband weights file");
  char magic[8];
  f.read(0, magic, 8);
  if (std::memcmp(magic, kMagic, 8) != 0) throw f.fail("bad magic (not an edgeband .ebw file)");
  const uint32_t version = f.get<uint32_t>(8);
  if (version != kVersion)
    throw f.fail("format version " + std::to_string(version) + " is not supported (expected " +
                 std::to_string(kVersion) + ")");
  const uint64_t hlen = f.get<uint64_t>(16), dlen = f.get<uint64_t>(24);
  if (hlen > kMaxHeader || dlen > kMaxData) throw f.fail("header or data length out of range");
  *data_at = align64(kFixed + hlen);
  *data_len = dlen;
  if (f.size() != *data_at + dlen + 8)
    throw f.fail("size " + std::to_string(f.size()) + " does not match its header (expected " +
                 std::to_string(*data_at + dlen + 8) + "): truncated or corrupt");
  const uint64_t body = f.size() - 8, words = body / 8 * 8;
  Hash64 h(body, 0);
  std::vector<unsigned char> piece(size_t(std::min<uint64_t>(words, 4u << 20)) + 8);
  for (uint64_t at = 0; at < words;) {
    const size_t n = size_t(std::min<uint64_t>(piece.size() - 8, words - at));
    f.read(at, piece.data(), n);
    h.words(piece.data(), n);
    at += n;
  }
  f.read(words, piece.data(), size_t(body - words));
  const uint64_t sum = h.finish(piece.data(), size_t(body - words));
  if (sum != f.get<uint64_t>(body)) throw f.fail("checksum mismatch: file is corrupt");
  if (checksum) *checksum = sum;
  std::string header(size_t(hlen), '\0');
  f.read(kFixed, header.data(), header.size());
  return header;
}

// Where each lazily loaded layer's params lie in the data section, in params() order.
using Sections = std::map<const Layer*, std::vector<uint64_t>>;

// Reads a layer's sections: the whole layer, or for a slice of an FC layer's outputs only those
// rows of its [out][in] weights (FullyConnected::source_rows) and its bias.
void read_sections(const WeightsFile& f, uint64_t data_at, const std::vector<uint64_t>& at, Layer& l,
                   RowRange channels) {
  f.check_unchanged();
  auto* fc = dynamic_cast<FullyConnected*>(&l);
  if (fc && !channels.empty()) {
    std::vector<float>& bias = *fc->params_without_weight().at(0).data;
    f.read(data_at + at.at(1), bias.data(), bias.size() * sizeof(float));
    const RowRange r = channels.clip(int(bias.size()));
    const uint64_t row = uint64_t(fc->inputs()) * sizeof(float);
    f.read(data_at + at.at(0) + uint64_t(r.begin) * row, fc->source_rows(r), size_t(uint64_t(r.size()) * row));
    return;
  }
  const std::vector<Param> ps = l.params();
  for (size_t k = 0; k < ps.size(); ++k)
    f.read(data_at + at.at(k), ps[k].data->data(), ps[k].data->size() * sizeof(float));
}

enum class Load { full, lean, lazy };

Graph load(const std::string& path, uint64_t* checksum, Load how) {
  auto f = std::make_shared<const WeightsFile>(path);
  uint64_t data_at = 0, dlen = 0;
  const std::string header = check_file(*f, &data_at, &dlen, checksum);
  auto sections = std::make_shared<Sections>();
  Graph g;
  try {
    const Json h = Json::parse(header);
    g.model = h.at("model").string("model");
    const Json& in = h.at("input");
    if (in.size() != 3) throw std::runtime_error("input needs 3 dims");
    const long ih = in[0].integer("input"), iw = in[1].integer("input"), ic = in[2].integer("input");
    if (ih <= 0 || iw <= 0 || ic <= 0 || ih > 8192 || iw > 8192 || ic > 64)
      throw std::runtime_error("input shape out of range");
    g.input = {int(ih), int(iw), int(ic)};
    const Json& norm = h.at("normalize");
    for (int c = 0; c < 3; ++c) {
      g.norm.mean[size_t(c)] = float(norm.at("mean")[size_t(c)].number("mean"));
      g.norm.std[size_t(c)] = float(norm.at("std")[size_t(c)].number("std"));
      if (!(g.norm.std[size_t(c)] > 0)) throw std::runtime_error("normalisation std must be > 0");
    }
    g.label_offset = int(h.at("label_offset").integer("label_offset"));
    for (const Json& l : h.at("labels").items("labels")) g.labels.push_back(l.string("label"));
    for (const Json& jn : h.at("nodes").items("nodes")) {
      const std::string name = jn.at("name").string("name");
      std::unique_ptr<Layer> layer;
      try {
        layer = make_layer(jn.at("type").string("type"), jn.at("attrs"));
      } catch (const std::exception& e) {
        throw std::runtime_error("node '" + name + "': " + e.what());
      }
      std::vector<int> ins;
      for (const Json& i : jn.at("inputs").items("inputs")) ins.push_back(int(i.integer("input")));
      const std::vector<Param> ps = layer->param_shapes();
      const Json::Array& jps = jn.at("params").items("params");
      if (jps.size() != ps.size()) throw std::runtime_error("node '" + name + "': wrong parameter count");
      std::vector<uint64_t>& at = (*sections)[layer.get()];
      for (size_t k = 0; k < ps.size(); ++k) {
        const Json& jp = jps[k];
        if (jp.at("name").string("param name") != ps[k].name)
          throw std::runtime_error("node '" + name + "': expected parameter '" + ps[k].name + "'");
        const Json::Array& dims = jp.at("dims").items("dims");
        if (dims.size() != ps[k].dims.size())
          throw std::runtime_error("node '" + name + "." + ps[k].name + "': rank mismatch");
        uint64_t bytes = sizeof(float);
        for (size_t d = 0; d < dims.size(); ++d) {
          if (dims[d].integer("dim") != ps[k].dims[d])
            throw std::runtime_error("node '" + name + "." + ps[k].name + "': shape mismatch");
          bytes *= uint64_t(ps[k].dims[d]);  // the layer's own dims, each checked by make_layer
        }
        const long off = jp.at("offset").integer("offset");
        if (off < 0 || off % 4 != 0 || uint64_t(off) > dlen || dlen - uint64_t(off) < bytes)
          throw std::runtime_error("node '" + name + "." + ps[k].name + "': offset out of range");
        at.push_back(uint64_t(off));
      }
      if (how != Load::lazy || !layer->loads_lazily()) {
        read_sections(*f, data_at, at, *layer, {});
        sections->erase(layer.get());  // read: finalize may destroy it (folded), its key with it
      }
      g.add(name, std::move(layer), ins);
    }
    g.keep_sources = how == Load::full;
    g.finalize(how != Load::lazy);
  } catch (const WeightsError&) {
    throw;
  } catch (const std::exception& e) {
    throw f->fail(e.what());
  }
  if (how == Load::lazy)
    g.set_weight_fill([f, data_at, sections](Node& n, RowRange channels) {
      const auto it = sections->find(n.layer.get());
      if (it == sections->end()) throw std::logic_error("node '" + n.name + "' has no weights in the file");
      read_sections(*f, data_at, it->second, *n.layer, channels);
    });
  return g;
}
}  // namespace

Graph load_weights(const std::string& path, uint64_t* checksum, bool keep_sources) {
  return load(path, checksum, keep_sources ? Load::full : Load::lean);
}

Graph load_weights_lazy(const std::string& path, uint64_t* checksum) { return load(path, checksum, Load::lazy); }

}  // namespace eb
