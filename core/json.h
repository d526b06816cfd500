// A JSON value for weight-file headers, device profiles, plans, frames from peers and CLI output.
// Parsing and printing are nlohmann-json's (core/json_io.cpp); this class adds the project's
// policy, because it reads files and network peers' data: documents are bounded (64 MiB, depth
// 64), duplicate keys and invalid escapes are refused (syntax errors with their offset), integers
// are exact 64-bit values and other numbers print in the shortest form that reads back the same
// double. Strings read must be UTF-8; invalid bytes in strings printed come out as U+FFFD.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace eb {

class Json {
 public:
  enum class Kind { null, boolean, number, string, array, object };
  using Array = std::vector<Json>;
  using Object = std::map<std::string, Json>;

  Json() = default;
  Json(std::nullptr_t) {}
  Json(bool b) : kind_(Kind::boolean), num_(b ? 1 : 0) {}
  Json(int v) : Json(static_cast<long long>(v)) {}
  Json(long v) : Json(static_cast<long long>(v)) {}
  Json(long long v) : kind_(Kind::number), num_(double(v)), int_(true), ival_(v) {}
  Json(unsigned long v) : Json(static_cast<unsigned long long>(v)) {}
  Json(unsigned long long v);  // exact when it fits in int64, else a double
  Json(double v) : kind_(Kind::number), num_(v) {}
  Json(const char* s) : kind_(Kind::string), str_(s) {}
  Json(std::string s) : kind_(Kind::string), str_(std::move(s)) {}
  Json(Array a) : kind_(Kind::array), arr_(std::make_shared<Array>(std::move(a))) {}
  Json(Object o) : kind_(Kind::object), obj_(std::make_shared<Object>(std::move(o))) {}
  static Json array() { return Json(Array{}); }
  static Json object() { return Json(Object{}); }

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::null; }
  bool is_number() const { return kind_ == Kind::number; }
  bool is_integer() const { return kind_ == Kind::number && int_; }  // an exact int64
  bool is_string() const { return kind_ == Kind::string; }
  bool is_array() const { return kind_ == Kind::array; }
  bool is_object() const { return kind_ == Kind::object; }

  // Typed accessors throw std::runtime_error naming `what` on a type mismatch.
  double number(const char* what = "value") const;
  long integer(const char* what = "value") const;  // must be integral (exact up to 2^63)
  bool boolean(const char* what = "value") const;
  const std::string& string(const char* what = "value") const;
  const Array& items(const char* what = "value") const;
  const Object& members(const char* what = "value") const;

  bool has(const std::string& key) const;
  const Json& at(const std::string& key) const;  // throws if missing
  Json& operator[](const std::string& key);      // object: insert
  void push_back(Json v);
  size_t size() const;
  const Json& operator[](size_t i) const;

  // Numbers that are whole and below 2^53 print as integers.
  std::string dump(int indent = -1) const;
  static Json parse(const std::string& text);  // throws std::runtime_error with the offset

  static constexpr size_t kMaxBytes = size_t(64) << 20;
  static constexpr int kMaxDepth = 64;

 private:
  Kind kind_ = Kind::null;
  double num_ = 0;
  bool int_ = false;  // an exact integer in ival_ (num_ holds it as a double too)
  long long ival_ = 0;
  std::string str_;
  std::shared_ptr<Array> arr_;
  std::shared_ptr<Object> obj_;
};

}  // namespace eb
