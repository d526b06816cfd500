// A minimal protobuf encoder for tests: they build ONNX models and TensorFlow GraphDefs byte
// by byte, so the converters are checked against files no code of ours parsed before.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace eb::test {

class Proto {
 public:
  Proto& varint(uint32_t field, uint64_t v) {
    key(field, 0);
    put_varint(v);
    return *this;
  }
  Proto& fixed32(uint32_t field, float f) {
    key(field, 5);
    char b[4];
    std::memcpy(b, &f, 4);
    s_.append(b, 4);
    return *this;
  }
  Proto& bytes(uint32_t field, const std::string& b) {
    key(field, 2);
    put_varint(b.size());
    s_ += b;
    return *this;
  }
  Proto& msg(uint32_t field, const Proto& m) { return bytes(field, m.str()); }
  Proto& packed_varints(uint32_t field, const std::vector<int64_t>& v) {
    Proto p;
    for (int64_t x : v) p.put_varint(uint64_t(x));
    return bytes(field, p.str());
  }
  Proto& packed_floats(uint32_t field, const std::vector<float>& v) {
    return bytes(field, std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4));
  }
  const std::string& str() const { return s_; }

 private:
  void key(uint32_t field, int wire) { put_varint((uint64_t(field) << 3) | uint64_t(wire)); }
  void put_varint(uint64_t v) {
    while (v >= 0x80) {
      s_ += char(uint8_t(v | 0x80));
      v >>= 7;
    }
    s_ += char(uint8_t(v));
  }
  std::string s_;
};

}  // namespace eb::test
