// Summary statistics of repeated timings: the planner's profiles, the runtime's data-path
// timing, the testbed's and the CLI's reports take medians (the link probe takes its second
// fastest instead: HostRuntime::measure_links says why).
#pragma once
#include <algorithm>
#include <vector>

namespace eb {

// The median of v (the mean of the two middle values for even sizes); 0 for an empty v.
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace eb
