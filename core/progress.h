// Progress of long library work (profiling, paired runs, schemes, requests), reported to whoever
// listens: the CLI prints it on stderr; a library user sees nothing unless they set a sink.
#pragma once
#include <functional>
#include <string>

namespace eb {

using ProgressSink = std::function<void(const std::string&)>;
void set_progress_sink(ProgressSink sink);  // empty: silent (the default)
void report_progress(const std::string& what);

}  // namespace eb
