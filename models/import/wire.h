// Bounds-checked readers for the two wire formats the converters meet: protobuf (TensorFlow
// GraphDef, ONNX) and flatbuffers (TFLite). Our own ~200 lines rather than libprotobuf /
// libflatbuffers: we read three fixed schemas, the readers must survive hostile files (every
// offset and length is checked against the buffer), and the binary stays static and small.
#pragma once
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace eb::import {

struct ImportError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// --- protobuf ---------------------------------------------------------------------------
// One field of a message. For wire type 2 `bytes` is the payload; for varint/fixed types
// `value` holds the raw bits.
struct ProtoField {
  uint32_t number = 0;
  int wire = 0;  // 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32
  uint64_t value = 0;
  std::string_view bytes;

  int64_t as_int() const { return int64_t(value); }
  float as_float() const;    // fixed32
  double as_double() const;  // fixed64
  std::string str() const { return std::string(bytes); }
};

class ProtoReader {
 public:
  explicit ProtoReader(std::string_view data) : p_(data) {}
  // Next field, or false at the end. Throws ImportError on malformed input.
  bool next(ProtoField& f);

 private:
  uint64_t varint();
  std::string_view p_;
};

// Repeated scalars may come packed (one length-delimited field) or one per field.
void append_varints(const ProtoField& f, std::vector<int64_t>& out);
void append_floats(const ProtoField& f, std::vector<float>& out);

// --- flatbuffers ------------------------------------------------------------------------
// A table inside a flatbuffer; field ids are the schema's declaration order.
class FlatTable {
 public:
  FlatTable() = default;
  FlatTable(std::string_view buf, size_t pos);  // validates the vtable
  static FlatTable root(std::string_view buf);

  bool has(int field) const { return field_pos(field) != 0; }
  template <typename T>
  T scalar(int field, T dflt) const {
    const size_t p = field_pos(field);
    if (!p) return dflt;
    check(p, sizeof(T));
    T v;
    std::memcpy(&v, buf_.data() + p, sizeof(T));
    return v;
  }
  FlatTable table(int field) const;  // throws if absent
  std::string string(int field) const;
  // A vector of scalars of type T.
  template <typename T>
  std::vector<T> vec(int field) const {
    size_t n = 0;
    const size_t p = vec_at(field, sizeof(T), n);
    std::vector<T> out(n);
    if (n) std::memcpy(out.data(), buf_.data() + p, n * sizeof(T));
    return out;
  }
  // Raw bytes of a [ubyte] vector (no copy).
  std::string_view bytes(int field) const;
  size_t vec_size(int field) const;
  FlatTable vec_table(int field, size_t i) const;

 private:
  size_t field_pos(int field) const;
  size_t deref(size_t p) const;  // follows a uoffset stored at p
  size_t vec_at(int field, size_t elem, size_t& n) const;
  void check(size_t p, size_t n) const;
  std::string_view buf_;
  size_t pos_ = 0, vt_ = 0, vt_size_ = 0;
};

}  // namespace eb::import
