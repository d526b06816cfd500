// A small SVG line-plot writer (no plotting dependency): axes with ticks, one polyline with
// markers per series, told apart by colour, dash pattern and marker shape (readable in grey
// and where series coincide), a legend. Enough for reliability-vs-deadline and speedup plots.
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
  std::string subtitle;  // a second, smaller line under the title (the channel, the profile)
  double y_min = 0, y_max = -1;  // y_max < y_min: from the data, plus 8% headroom
  bool x_integer = false;        // the x axis counts things: ticks on whole numbers only
  int width = 720, height = 440;
};

std::string svg_line_plot(const PlotSpec& spec, const std::vector<PlotSeries>& series);

}  // namespace eb
