// What the host reads from a worker's frames besides the rows themselves: error messages,
// compute spans, peak memory and fresh feature maps. A worker may be buggy or hostile, so each reader takes any
// JSON and only ever returns values in range; none of them fails an inference.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/json.h"
#include "dist/runtime/executor.h"

namespace eb::dist {

// "error: MESSAGE" from an error frame's {"message": ...}; a malformed one says so.
std::string error_text(const Json& j);
// Appends the spans riding on a frame as [[block, image, t0_us, t1_us], ...] for images in
// [first_image, end_image); malformed spans and those of earlier calls are skipped.
void read_spans(const Json& j, int device, uint64_t first_image, uint64_t end_image,
                std::vector<ComputeSpan>* out);
// The frame's "peak_rss_kb" (0 .. 2^40); -1 when absent or out of range.
long read_peak_rss_kb(const Json& j);
// The frame's "maps_mapped": feature maps the worker's session has mapped afresh
// (FeatureStore::maps_mapped); the same range and -1.
long read_maps_mapped(const Json& j);

}  // namespace eb::dist
