#include "dist/plan/link.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace eb::dist {

namespace {
double parse_with_unit(const std::string& s, const char* what,
                       std::initializer_list<std::pair<const char*, double>> units) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || !std::isfinite(v))
    throw std::invalid_argument(std::string("bad ") + what + " '" + s + "'");
  const std::string unit(end);
  for (auto& [name, scale] : units)
    if (unit == name) {
      if (v < 0) throw std::invalid_argument(std::string(what) + " must not be negative: '" + s + "'");
      return v * scale;
    }
  std::string list;
  for (auto& u : units) list += std::string(list.empty() ? "" : ", ") + u.first;
  throw std::invalid_argument(std::string("bad ") + what + " unit in '" + s + "' (use " + list + ")");
}
}  // namespace

LinkModel parse_link(const std::string& spec) {
  const size_t comma = spec.find(',');
  LinkModel l;
  l.bits_per_s = parse_with_unit(spec.substr(0, comma), "link rate",
                                 {{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1.0}});
  if (!(l.bits_per_s > 0)) throw std::invalid_argument("link rate must be positive: '" + spec + "'");
  l.latency_s = comma == std::string::npos
                    ? 0.0
                    : parse_with_unit(spec.substr(comma + 1), "link delay",
                                      {{"ms", 1e-3}, {"us", 1e-6}, {"s", 1.0}});
  return l;
}

std::vector<LinkModel> parse_link_list(const std::string& spec) {
  std::vector<LinkModel> out;
  size_t at = 0;
  for (;;) {
    const size_t slash = spec.find('/', at);
    out.push_back(parse_link(spec.substr(at, slash == std::string::npos ? slash : slash - at)));
    if (slash == std::string::npos) return out;
    at = slash + 1;
  }
}

std::string link_list_str(const std::vector<LinkModel>& links) {
  std::string s;
  for (const LinkModel& l : links) s += (s.empty() ? "" : "/") + l.str();
  return s;
}

std::string LinkModel::str() const {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%gmbit,%gms", bits_per_s / 1e6, latency_s * 1e3);
  return buf;
}

}  // namespace eb::dist
