// What a frame costs a device's CPU outside the layers, per byte on the wire (the planner's
// DataPathCost, dist/plan/profile.h): measured here, with the runtime's own code, because the
// planner may not depend on the runtime.
#pragma once
#include "dist/plan/profile.h"

namespace eb::dist {

// This machine's costs, undilated: the fastest of several passes over a 1 MiB band of fp32
// activations about half zeros (ReLU's), zero-elided as the wire sends it. Times a slow
// device's factor (DataPathCost::scaled) for an emulated board. About 0.1 s.
DataPathCost measure_data_path();

}  // namespace eb::dist
