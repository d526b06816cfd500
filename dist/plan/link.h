// Link model between the host and each secondary: rate + one-way latency, parsed from
// "1gbit,0.2ms", "100mbit,2ms", "500kbit,10ms", "1.5gbit,50us".
#pragma once
#include <string>

namespace eb::dist {

struct LinkModel {
  double bits_per_s = 1e9;
  double latency_s = 0.2e-3;
  double transfer_s(double bytes) const { return bytes * 8.0 / bits_per_s; }
  std::string str() const;
};

LinkModel parse_link(const std::string& spec);  // throws std::invalid_argument

}  // namespace eb::dist
