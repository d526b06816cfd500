// Link model between the host and each secondary: rate + one-way latency, parsed from
// "1gbit,0.2ms", "100mbit,2ms", "500kbit,10ms", "1.5gbit,50us".
#pragma once
#include <string>
#include <vector>

namespace eb::dist {

struct LinkModel {
  double bits_per_s = 1e9;
  double latency_s = 0.2e-3;
  double transfer_s(double bytes) const { return bytes * 8.0 / bits_per_s; }
  std::string str() const;
};

LinkModel parse_link(const std::string& spec);  // throws std::invalid_argument
// "RATE,DELAY", or one per worker separated by '/' ("1gbit,0.2ms/50mbit,2ms"); throws
// std::invalid_argument.
std::vector<LinkModel> parse_link_list(const std::string& spec);
// The list's own spelling (parse_link_list reads it back).
std::string link_list_str(const std::vector<LinkModel>& links);

}  // namespace eb::dist
