#include "apps/cli.h"

#include <cstdlib>
#include <stdexcept>

namespace eb::cli {

Args::Args(int argc, char** argv, int first, const std::set<std::string>& known,
           const std::set<std::string>& flags) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) {
      pos_.push_back(a);
      continue;
    }
    std::string key = a.substr(2), val;
    if (auto eq = key.find('='); eq != std::string::npos) {
      val = key.substr(eq + 1);
      key = key.substr(0, eq);
    } else if (!flags.count(key)) {
      if (i + 1 >= argc) throw std::invalid_argument("option --" + key + " needs a value");
      val = argv[++i];
    }
    if (!known.count(key) && !flags.count(key)) throw std::invalid_argument("unknown option --" + key);
    values_[key] = val;
  }
}

std::string Args::str(const std::string& k, const std::string& def) const {
  auto it = values_.find(k);
  return it == values_.end() ? def : it->second;
}

int Args::integer(const std::string& k, int def, int lo, int hi) const {
  if (!has(k)) return def;
  const std::string s = str(k);
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end || v < lo || v > hi)
    throw std::invalid_argument("--" + k + " must be an integer in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "], got '" + s + "'");
  return int(v);
}

double Args::number(const std::string& k, double def, double lo, double hi) const {
  if (!has(k)) return def;
  const std::string s = str(k);
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end || !(v >= lo && v <= hi))
    throw std::invalid_argument("--" + k + " must be a number in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "], got '" + s + "'");
  return v;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t c = s.find(',', start);
    out.push_back(s.substr(start, c == std::string::npos ? std::string::npos : c - start));
    if (c == std::string::npos) break;
    start = c + 1;
  }
  return out;
}

}  // namespace eb::cli
