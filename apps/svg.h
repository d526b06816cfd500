// A small SVG line-plot writer (no plotting dependency): axes with ticks, one polyline with
// markers per series, a legend. Enough for reliability-vs-deadline and speedup plots.
#pragma once
#include <string>
#include <vector>

namespace eb {

struct PlotSeries {
  std::string name;
  std::vector<double> x, y;
};

struct PlotSpec {
  std::string title, x_label, y_label;
  double y_min = 0, y_max = -1;  // y_max < y_min: from the data
  int width = 720, height = 440;
};

std::string svg_line_plot(const PlotSpec& spec, const std::vector<PlotSeries>& series);

}  // namespace eb
