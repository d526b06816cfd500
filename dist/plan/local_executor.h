// Runs a plan with every device simulated in this process: each device holds only the rows it
// computed or received, transfers copy exactly the planned rows, and a device computing a zone
// throws if any row it needs is missing. Proves a plan's transfers are sufficient and its
// result equals the single-device answer; also the reference for the network runtime.
#pragma once
#include "dist/plan/planner.h"

namespace eb::dist {

Tensor execute_locally(const Graph& g, const Plan& p, const Tensor& input);

}  // namespace eb::dist
