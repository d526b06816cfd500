#include "core/weights_io.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <vector>

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
template <class T>
T get(const std::vector<char>& b, size_t at) {
  T v;
  std::memcpy(&v, b.data() + at, sizeof(T));
  return v;
}
}  // namespace

uint64_t hash64(const void* data, size_t n, uint64_t seed) {
  // Word-at-a-time multiply-xorshift: fast enough for 500 MB of VGG weights, and any changed
  // byte changes the result.
  const unsigned char* p = static_cast<const unsigned char*>(data);
  uint64_t h = seed ^ (0x9E3779B97F4A7C15ull * (n + 1));
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ (w * 0xBF58476D1CE4E5B9ull)) * 0x94D049BB133111EBull;
    h ^= h >> 29;
  }
  uint64_t tail = 0;
  for (size_t k = 0; i + k < n; ++k) tail |= uint64_t(p[i + k]) << (8 * k);
  h = (h ^ (tail * 0xBF58476D1CE4E5B9ull)) * 0x94D049BB133111EBull;
  return h ^ (h >> 32);
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

Graph load_weights(const std::string& path, uint64_t* checksum, bool keep_sources) {
  auto fail = [&](const std::string& why) -> WeightsError {
    return WeightsError("weights file '" + path + "': " + why);
  };
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw fail("cannot open (missing or unreadable)");
  // A directory opens as a stream of size 2^63 - 1 on Linux: check the kind first.
  if (!S_ISREG(st.st_mode)) throw fail("not a regular file");
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw fail("cannot open (missing or unreadable)");
  const std::streamoff size = f.tellg();
  if (size < std::streamoff(kFixed + 8)) throw fail("too short to be an edgeband weights file");
  std::vector<char> buf(static_cast<size_t>(size));
  f.seekg(0);
  if (!f.read(buf.data(), size)) throw fail("read error");
  if (std::memcmp(buf.data(), kMagic, 8) != 0) throw fail("bad magic (not an edgeband .ebw file)");
  const uint32_t version = get<uint32_t>(buf, 8);
  if (version != kVersion)
    throw fail("format version " + std::to_string(version) + " is not supported (expected " +
               std::to_string(kVersion) + ")");
  const uint64_t hlen = get<uint64_t>(buf, 16), dlen = get<uint64_t>(buf, 24);
  if (hlen > kMaxHeader || dlen > kMaxData) throw fail("header or data length out of range");
  const size_t data_at = align64(kFixed + hlen);
  if (uint64_t(buf.size()) != data_at + dlen + 8)
    throw fail("size " + std::to_string(buf.size()) + " does not match its header (expected " +
               std::to_string(data_at + dlen + 8) + "): truncated or corrupt");
  const uint64_t sum = hash64(buf.data(), buf.size() - 8);
  if (sum != get<uint64_t>(buf, buf.size() - 8)) throw fail("checksum mismatch: file is corrupt");
  if (checksum) *checksum = sum;

  Graph g;
  try {
    const Json h = Json::parse(std::string(buf.data() + kFixed, hlen));
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
      std::vector<Param> ps = layer->params();
      const Json::Array& jps = jn.at("params").items("params");
      if (jps.size() != ps.size()) throw std::runtime_error("node '" + name + "': wrong parameter count");
      for (size_t k = 0; k < ps.size(); ++k) {
        const Json& jp = jps[k];
        if (jp.at("name").string("param name") != ps[k].name)
          throw std::runtime_error("node '" + name + "': expected parameter '" + ps[k].name + "'");
        const Json::Array& dims = jp.at("dims").items("dims");
        if (dims.size() != ps[k].dims.size())
          throw std::runtime_error("node '" + name + "." + ps[k].name + "': rank mismatch");
        for (size_t d = 0; d < dims.size(); ++d)
          if (dims[d].integer("dim") != ps[k].dims[d])
            throw std::runtime_error("node '" + name + "." + ps[k].name + "': shape mismatch");
        const long off = jp.at("offset").integer("offset");
        const size_t bytes = ps[k].data->size() * sizeof(float);
        if (off < 0 || off % 4 != 0 || uint64_t(off) > dlen || dlen - uint64_t(off) < bytes)
          throw std::runtime_error("node '" + name + "." + ps[k].name + "': offset out of range");
        std::memcpy(ps[k].data->data(), buf.data() + data_at + size_t(off), bytes);
      }
      g.add(name, std::move(layer), ins);
    }
    std::vector<char>().swap(buf);  // the file's bytes are in the layers now
    g.keep_sources = keep_sources;
    g.finalize();
  } catch (const WeightsError&) {
    throw;
  } catch (const std::exception& e) {
    throw fail(e.what());
  }
  return g;
}

}  // namespace eb
