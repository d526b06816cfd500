#include "core/progress.h"

namespace eb {

namespace {
ProgressSink& sink() {
  static ProgressSink s;
  return s;
}
}  // namespace

void set_progress_sink(ProgressSink s) {
  sink() = std::move(s);
}

void report_progress(const std::string& what) {
  if (sink()) sink()(what);
}

}  // namespace eb
