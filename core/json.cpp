#include "core/json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace eb {

namespace {
const char* kind_name(Json::Kind k) {
  switch (k) {
    case Json::Kind::null: return "null";
    case Json::Kind::boolean: return "boolean";
    case Json::Kind::number: return "number";
    case Json::Kind::string: return "string";
    case Json::Kind::array: return "array";
    case Json::Kind::object: return "object";
  }
  return "?";
}
[[noreturn]] void type_error(const char* what, const char* want, Json::Kind got) {
  throw std::runtime_error(std::string(what) + ": expected " + want + ", got " + kind_name(got));
}

class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}
  Json parse_document() {
    Json v = value(0);
    ws();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& msg) {
    throw std::runtime_error("JSON parse error at offset " + std::to_string(i_) + ": " + msg);
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t'))
      ++i_;
  }
  bool lit(const char* w) {
    size_t n = std::char_traits<char>::length(w);
    if (s_.compare(i_, n, w) == 0) {
      i_ += n;
      return true;
    }
    return false;
  }
  Json value(int depth) {
    if (depth > 64) fail("nesting too deep");
    ws();
    if (i_ >= s_.size()) fail("unexpected end");
    char c = s_[i_];
    if (c == '{') return object(depth);
    if (c == '[') return array(depth);
    if (c == '"') return Json(str());
    if (lit("true")) return Json(true);
    if (lit("false")) return Json(false);
    if (lit("null")) return Json();
    return number();
  }
  Json number() {
    const char* b = s_.c_str() + i_;
    char* e = nullptr;
    double v = std::strtod(b, &e);
    if (e == b || !std::isfinite(v)) fail("bad number");
    i_ += size_t(e - b);
    return Json(v);
  }
  std::string str() {
    ++i_;
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      char c = s_[i_++];
      if (c == '"') break;
      if (c == '\\') {
        if (i_ >= s_.size()) fail("bad escape");
        char e = s_[i_++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            if (i_ + 4 > s_.size()) fail("bad \\u escape");
            unsigned cp = unsigned(std::strtoul(s_.substr(i_, 4).c_str(), nullptr, 16));
            i_ += 4;
            if (cp < 0x80) {
              out += char(cp);
            } else if (cp < 0x800) {
              out += char(0xC0 | (cp >> 6));
              out += char(0x80 | (cp & 0x3F));
            } else {
              out += char(0xE0 | (cp >> 12));
              out += char(0x80 | ((cp >> 6) & 0x3F));
              out += char(0x80 | (cp & 0x3F));
            }
            break;
          }
          default: fail("bad escape");
        }
      } else {
        out += c;
      }
    }
    return out;
  }
  Json array(int depth) {
    ++i_;
    Json::Array a;
    ws();
    if (i_ < s_.size() && s_[i_] == ']') {
      ++i_;
      return Json(std::move(a));
    }
    while (true) {
      a.push_back(value(depth + 1));
      ws();
      if (i_ >= s_.size()) fail("unterminated array");
      if (s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (s_[i_] == ']') {
        ++i_;
        return Json(std::move(a));
      }
      fail("expected , or ]");
    }
  }
  Json object(int depth) {
    ++i_;
    Json::Object o;
    ws();
    if (i_ < s_.size() && s_[i_] == '}') {
      ++i_;
      return Json(std::move(o));
    }
    while (true) {
      ws();
      if (i_ >= s_.size() || s_[i_] != '"') fail("expected key");
      std::string k = str();
      ws();
      if (i_ >= s_.size() || s_[i_] != ':') fail("expected :");
      ++i_;
      o[k] = value(depth + 1);
      ws();
      if (i_ >= s_.size()) fail("unterminated object");
      if (s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (s_[i_] == '}') {
        ++i_;
        return Json(std::move(o));
      }
      fail("expected , or }");
    }
  }
  const std::string& s_;
  size_t i_ = 0;
};

void escape(std::string& out, const std::string& s) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}
}  // namespace

double Json::number(const char* what) const {
  if (kind_ != Kind::number) type_error(what, "number", kind_);
  return num_;
}
long Json::integer(const char* what) const {
  double v = number(what);
  if (v != std::floor(v) || std::fabs(v) > 9e15)
    throw std::runtime_error(std::string(what) + ": expected an integer");
  return long(v);
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
bool Json::has(const std::string& key) const { return is_object() && obj_->count(key); }
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

std::string Json::dump(int indent) const {
  std::string out;
  dump_to(out, indent, 0);
  return out;
}

void Json::dump_to(std::string& out, int indent, int level) const {
  auto nl = [&](int l) {
    if (indent < 0) return;
    out += '\n';
    out.append(size_t(indent * l), ' ');
  };
  switch (kind_) {
    case Kind::null: out += "null"; break;
    case Kind::boolean: out += num_ != 0 ? "true" : "false"; break;
    case Kind::number: {
      char buf[32];
      if (num_ == std::floor(num_) && std::fabs(num_) < 1e15)
        std::snprintf(buf, sizeof buf, "%.0f", num_);
      else
        std::snprintf(buf, sizeof buf, "%.9g", num_);
      out += buf;
      break;
    }
    case Kind::string: escape(out, str_); break;
    case Kind::array: {
      out += '[';
      bool first = true;
      for (const Json& v : *arr_) {
        if (!first) out += ',';
        first = false;
        nl(level + 1);
        v.dump_to(out, indent, level + 1);
      }
      if (!arr_->empty()) nl(level);
      out += ']';
      break;
    }
    case Kind::object: {
      out += '{';
      bool first = true;
      for (const auto& [k, v] : *obj_) {
        if (!first) out += ',';
        first = false;
        nl(level + 1);
        escape(out, k);
        out += indent < 0 ? ":" : ": ";
        v.dump_to(out, indent, level + 1);
      }
      if (!obj_->empty()) nl(level);
      out += '}';
      break;
    }
  }
}

Json Json::parse(const std::string& text) {
  if (text.size() > (size_t(64) << 20)) throw std::runtime_error("JSON document too large");
  return Parser(text).parse_document();
}

}  // namespace eb
