#include "models/import/wire.h"

namespace eb::import {

float ProtoField::as_float() const {
  const uint32_t b = uint32_t(value);
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

double ProtoField::as_double() const {
  double d;
  std::memcpy(&d, &value, 8);
  return d;
}

uint64_t ProtoReader::varint() {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (p_.empty()) throw ImportError("protobuf: truncated varint");
    const uint8_t b = uint8_t(p_[0]);
    p_.remove_prefix(1);
    v |= uint64_t(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  throw ImportError("protobuf: varint longer than 10 bytes");
}

bool ProtoReader::next(ProtoField& f) {
  if (p_.empty()) return false;
  const uint64_t key = varint();
  f.number = uint32_t(key >> 3);
  f.wire = int(key & 7);
  if (f.number == 0 || key >> 32) throw ImportError("protobuf: invalid field number");
  f.bytes = {};
  f.value = 0;
  switch (f.wire) {
    case 0:
      f.value = varint();
      break;
    case 1:
    case 5: {
      const size_t n = f.wire == 1 ? 8 : 4;
      if (p_.size() < n) throw ImportError("protobuf: truncated fixed-width field");
      std::memcpy(&f.value, p_.data(), n);  // little-endian host (checked at build time)
      p_.remove_prefix(n);
      break;
    }
    case 2: {
      const uint64_t n = varint();
      if (n > p_.size())
        throw ImportError("protobuf: field " + std::to_string(f.number) + " length " +
                          std::to_string(n) + " exceeds the " + std::to_string(p_.size()) +
                          " bytes left");
      f.bytes = p_.substr(0, size_t(n));
      p_.remove_prefix(size_t(n));
      break;
    }
    default:
      throw ImportError("protobuf: unsupported wire type " + std::to_string(f.wire));
  }
  return true;
}

void append_varints(const ProtoField& f, std::vector<int64_t>& out) {
  if (f.wire == 0) {
    out.push_back(f.as_int());
  } else if (f.wire == 2) {
    // Packed: a run of varints. Reuse the reader by framing each as field 1.
    std::string_view p = f.bytes;
    while (!p.empty()) {
      uint64_t v = 0;
      int shift = 0;
      for (;; shift += 7) {
        if (p.empty() || shift >= 64) throw ImportError("protobuf: bad packed varint");
        const uint8_t b = uint8_t(p[0]);
        p.remove_prefix(1);
        v |= uint64_t(b & 0x7f) << shift;
        if (!(b & 0x80)) break;
      }
      out.push_back(int64_t(v));
    }
  } else {
    throw ImportError("protobuf: expected an integer field");
  }
}

void append_floats(const ProtoField& f, std::vector<float>& out) {
  if (f.wire == 5) {
    out.push_back(f.as_float());
  } else if (f.wire == 2) {
    if (f.bytes.size() % 4) throw ImportError("protobuf: packed floats not a multiple of 4 bytes");
    const size_t n = f.bytes.size() / 4, old = out.size();
    out.resize(old + n);
    if (n) std::memcpy(out.data() + old, f.bytes.data(), n * 4);  // memcpy needs non-null even for 0
  } else {
    throw ImportError("protobuf: expected a float field");
  }
}

// --- flatbuffers ------------------------------------------------------------------------

void FlatTable::check(size_t p, size_t n) const {
  if (p > buf_.size() || n > buf_.size() - p)
    throw ImportError("flatbuffer: offset " + std::to_string(p) + " (+" + std::to_string(n) +
                      ") outside the " + std::to_string(buf_.size()) + "-byte file");
}

FlatTable::FlatTable(std::string_view buf, size_t pos) : buf_(buf), pos_(pos) {
  check(pos, 4);
  int32_t soff;
  std::memcpy(&soff, buf.data() + pos, 4);
  const int64_t vt = int64_t(pos) - soff;
  if (vt < 0) throw ImportError("flatbuffer: vtable offset out of range");
  vt_ = size_t(vt);
  check(vt_, 4);
  uint16_t vsize, tsize;
  std::memcpy(&vsize, buf.data() + vt_, 2);
  std::memcpy(&tsize, buf.data() + vt_ + 2, 2);
  if (vsize < 4 || vsize % 2) throw ImportError("flatbuffer: bad vtable size");
  check(vt_, vsize);
  check(pos, tsize);
  vt_size_ = vsize;
}

FlatTable FlatTable::root(std::string_view buf) {
  if (buf.size() < 8) throw ImportError("flatbuffer: file too short");
  uint32_t off;
  std::memcpy(&off, buf.data(), 4);
  return FlatTable(buf, off);
}

size_t FlatTable::field_pos(int field) const {
  const size_t slot = 4 + 2 * size_t(field);
  if (slot + 2 > vt_size_) return 0;
  uint16_t off;
  std::memcpy(&off, buf_.data() + vt_ + slot, 2);
  return off ? pos_ + off : 0;
}

size_t FlatTable::deref(size_t p) const {
  check(p, 4);
  uint32_t off;
  std::memcpy(&off, buf_.data() + p, 4);
  check(p + off, 0);
  return p + off;
}

FlatTable FlatTable::table(int field) const {
  const size_t p = field_pos(field);
  if (!p)
    throw ImportError("flatbuffer: required table field " + std::to_string(field) + " missing");
  return FlatTable(buf_, deref(p));
}

size_t FlatTable::vec_at(int field, size_t elem, size_t& n) const {
  n = 0;
  const size_t p = field_pos(field);
  if (!p) return 0;
  const size_t v = deref(p);
  check(v, 4);
  uint32_t len;
  std::memcpy(&len, buf_.data() + v, 4);
  if (len > (buf_.size() - v - 4) / elem)
    throw ImportError("flatbuffer: vector length out of range");
  n = len;
  return v + 4;
}

std::string FlatTable::string(int field) const {
  const std::string_view b = bytes(field);
  return std::string(b);
}

std::string_view FlatTable::bytes(int field) const {
  size_t n = 0;
  const size_t p = vec_at(field, 1, n);
  return n ? buf_.substr(p, n) : std::string_view();
}

size_t FlatTable::vec_size(int field) const {
  size_t n = 0;
  vec_at(field, 4, n);
  return n;
}

FlatTable FlatTable::vec_table(int field, size_t i) const {
  size_t n = 0;
  const size_t p = vec_at(field, 4, n);
  if (i >= n) throw ImportError("flatbuffer: vector index out of range");
  return FlatTable(buf_, deref(p + 4 * i));
}

}  // namespace eb::import
