// eb::Json on nlohmann-json: the accessors, and parsing and printing through nlohmann's parser
// and serializer with the limits and strictness the header promises.
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <vector>

#include "core/json.h"

namespace eb {

namespace {

const char* kind_name(Json::Kind k) {
  switch (k) {
    case Json::Kind::null:
      return "null";
    case Json::Kind::boolean:
      return "boolean";
    case Json::Kind::number:
      return "number";
    case Json::Kind::string:
      return "string";
    case Json::Kind::array:
      return "array";
    case Json::Kind::object:
      return "object";
  }
  return "?";
}

[[noreturn]] void type_error(const char* what, const char* want, Json::Kind got) {
  throw std::runtime_error(std::string(what) + ": expected " + want + ", got " + kind_name(got));
}

[[noreturn]] void parse_fail(size_t offset, const std::string& why) {
  throw std::runtime_error("JSON parse error at offset " + std::to_string(offset) + ": " + why);
}

Json from_nlohmann(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      return Json();
    case nlohmann::json::value_t::boolean:
      return Json(j.get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Json(j.get<long long>());
    case nlohmann::json::value_t::number_unsigned:
      return Json(j.get<unsigned long long>());
    case nlohmann::json::value_t::number_float:
      return Json(j.get<double>());
    case nlohmann::json::value_t::string:
      return Json(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      Json::Array a;
      a.reserve(j.size());
      for (const auto& e : j) a.push_back(from_nlohmann(e));
      return Json(std::move(a));
    }
    case nlohmann::json::value_t::object: {
      Json::Object o;
      for (const auto& [k, v] : j.items()) o.emplace(k, from_nlohmann(v));
      return Json(std::move(o));
    }
    default:
      break;  // binary and discarded values: not produced by the text parser
  }
  throw std::runtime_error("JSON: unsupported value");
}

}  // namespace

Json::Json(unsigned long long v) : kind_(Kind::number), num_(double(v)) {
  if (v <= 0x7fffffffffffffffull) int_ = true, ival_ = static_cast<long long>(v);
}

double Json::number(const char* what) const {
  if (kind_ != Kind::number) type_error(what, "number", kind_);
  return num_;
}
long Json::integer(const char* what) const {
  if (kind_ != Kind::number) type_error(what, "number", kind_);
  if (int_) return long(ival_);
  if (num_ != std::floor(num_) || std::fabs(num_) > 9e15)
    throw std::runtime_error(std::string(what) + ": expected an integer");
  return long(num_);
}
bool Json::boolean(const char* what) const {
  if (kind_ != Kind::boolean) type_error(what, "boolean", kind_);
  return num_ != 0;
}
const std::string& Json::string(const char* what) const {
  if (kind_ != Kind::string) type_error(what, "string", kind_);
  return str_;
}
const Json::Array& Json::items(const char* what) const {
  if (kind_ != Kind::array) type_error(what, "array", kind_);
  return *arr_;
}
const Json::Object& Json::members(const char* what) const {
  if (kind_ != Kind::object) type_error(what, "object", kind_);
  return *obj_;
}
bool Json::has(const std::string& key) const {
  return is_object() && obj_->count(key);
}
const Json& Json::at(const std::string& key) const {
  const Object& o = members(key.c_str());
  auto it = o.find(key);
  if (it == o.end()) throw std::runtime_error("missing key '" + key + "'");
  return it->second;
}
Json& Json::operator[](const std::string& key) {
  if (kind_ == Kind::null) *this = object();
  if (kind_ != Kind::object) type_error(key.c_str(), "object", kind_);
  return (*obj_)[key];
}
void Json::push_back(Json v) {
  if (kind_ == Kind::null) *this = array();
  if (kind_ != Kind::array) type_error("push_back", "array", kind_);
  arr_->push_back(std::move(v));
}
size_t Json::size() const {
  if (kind_ == Kind::array) return arr_->size();
  if (kind_ == Kind::object) return obj_->size();
  return 0;
}
const Json& Json::operator[](size_t i) const {
  const Array& a = items("index");
  if (i >= a.size()) throw std::runtime_error("JSON index out of range");
  return a[i];
}

namespace {
nlohmann::json to_nlohmann(const Json& v) {
  switch (v.kind()) {
    case Json::Kind::null:
      return nullptr;
    case Json::Kind::boolean:
      return v.boolean();
    case Json::Kind::number: {
      if (v.is_integer()) return static_cast<long long>(v.integer());  // every digit kept
      const double d = v.number();
      // Whole doubles print as integers ("3", not "3.0").
      if (d == std::floor(d) && std::fabs(d) < 9007199254740992.0) return static_cast<long long>(d);
      if (!std::isfinite(d)) throw std::runtime_error("JSON cannot hold " + std::to_string(d));
      return d;
    }
    case Json::Kind::string:
      return v.string();
    case Json::Kind::array: {
      nlohmann::json a = nlohmann::json::array();
      for (const Json& e : v.items()) a.push_back(to_nlohmann(e));
      return a;
    }
    case Json::Kind::object: {
      nlohmann::json o = nlohmann::json::object();
      for (const auto& [k, e] : v.members()) o[k] = to_nlohmann(e);
      return o;
    }
  }
  return nullptr;
}
}  // namespace

std::string Json::dump(int indent) const {
  // Parsed strings are valid UTF-8; a label or file name from outside may not be: its invalid
  // bytes print as U+FFFD rather than failing a whole save or report.
  return to_nlohmann(*this).dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

Json Json::parse(const std::string& text) {
  if (text.size() > kMaxBytes) throw std::runtime_error("JSON document too large");
  // The parser callback sees every key as it is read: a second occurrence of a key in the same
  // object is refused (nlohmann would keep the last), as is nesting beyond kMaxDepth.
  std::vector<std::set<std::string>> keys;
  auto check = [&](int depth, nlohmann::json::parse_event_t e, nlohmann::json& v) {
    using E = nlohmann::json::parse_event_t;
    if (depth > kMaxDepth) throw std::runtime_error("JSON parse error: nesting too deep");
    if (e == E::object_start) keys.emplace_back();
    if (e == E::object_end && !keys.empty()) keys.pop_back();
    if (e == E::key && !keys.empty() && !keys.back().insert(v.get<std::string>()).second)
      throw std::runtime_error("JSON parse error: duplicate key '" + v.get<std::string>() + "'");
    return true;
  };
  try {
    return from_nlohmann(nlohmann::json::parse(text, check));
  } catch (const nlohmann::json::parse_error& e) {
    std::string why = e.what();
    if (const size_t at = why.find(": "); at != std::string::npos) why = why.substr(at + 2);
    parse_fail(e.byte > 0 ? e.byte - 1 : 0, why);
  } catch (const nlohmann::json::exception& e) {  // e.g. out_of_range: a number beyond double
    std::string why = e.what();
    if (const size_t at = why.find("] "); at != std::string::npos) why = why.substr(at + 2);
    throw std::runtime_error("JSON parse error: " + why);
  }
}

}  // namespace eb
