#include "apps/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace eb {

namespace {
std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<')
      o += "&lt;";
    else if (c == '>')
      o += "&gt;";
    else if (c == '&')
      o += "&amp;";
    else if (c == '"')
      o += "&quot;";
    else
      o += c;
  }
  return o;
}
std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}
// "Nice" tick step for a range: 1, 2 or 5 times a power of ten, about 6 ticks.
double tick_step(double range) {
  const double raw = range / 6, p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * p) return m * p;
  return 10 * p;
}
}  // namespace

std::string svg_line_plot(const PlotSpec& spec, const std::vector<PlotSeries>& series) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const PlotSeries& s : series) {
    if (s.x.size() != s.y.size())
      throw std::invalid_argument("plot series '" + s.name + "': x and y differ in length");
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
    }
  }
  if (!(x0 <= x1)) throw std::invalid_argument("plot '" + spec.title + "' has no data");
  if (spec.y_max > spec.y_min) y0 = spec.y_min, y1 = spec.y_max;
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  const double L = 70, R = 180, T = 40, B = 55, W = spec.width - L - R, H = spec.height - T - B;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * W; };
  auto py = [&](double y) { return T + H - (y - y0) / (y1 - y0) * H; };
  static const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                 "#9467bd", "#8c564b", "#e377c2", "#17becf"};
  std::string o = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
                  std::to_string(spec.width) + "\" height=\"" + std::to_string(spec.height) +
                  "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  o += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o += "<text x=\"" + num(L + W / 2) + "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" +
       esc(spec.title) + "</text>\n";
  for (double t = std::ceil(x0 / tick_step(x1 - x0)) * tick_step(x1 - x0); t <= x1 + 1e-9;
       t += tick_step(x1 - x0))
    o += "<line x1=\"" + num(px(t)) + "\" y1=\"" + num(T) + "\" x2=\"" + num(px(t)) + "\" y2=\"" +
         num(T + H) + "\" stroke=\"#eee\"/><text x=\"" + num(px(t)) + "\" y=\"" + num(T + H + 16) +
         "\" text-anchor=\"middle\">" + num(t) + "</text>\n";
  for (double t = std::ceil(y0 / tick_step(y1 - y0)) * tick_step(y1 - y0); t <= y1 + 1e-9;
       t += tick_step(y1 - y0))
    o += "<line x1=\"" + num(L) + "\" y1=\"" + num(py(t)) + "\" x2=\"" + num(L + W) + "\" y2=\"" +
         num(py(t)) + "\" stroke=\"#eee\"/><text x=\"" + num(L - 6) + "\" y=\"" + num(py(t) + 4) +
         "\" text-anchor=\"end\">" + num(t) + "</text>\n";
  o += "<rect x=\"" + num(L) + "\" y=\"" + num(T) + "\" width=\"" + num(W) + "\" height=\"" +
       num(H) + "\" fill=\"none\" stroke=\"black\"/>\n";
  o += "<text x=\"" + num(L + W / 2) + "\" y=\"" + num(spec.height - 12) +
       "\" text-anchor=\"middle\">" + esc(spec.x_label) + "</text>\n";
  o += "<text transform=\"translate(18," + num(T + H / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">" + esc(spec.y_label) + "</text>\n";
  for (size_t k = 0; k < series.size(); ++k) {
    const PlotSeries& s = series[k];
    const std::string c = colors[k % 8];
    std::string pts;
    for (size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i]))
        pts += num(px(s.x[i])) + "," + num(py(s.y[i])) + " ";
    o += "<polyline fill=\"none\" stroke=\"" + c + "\" stroke-width=\"2\" points=\"" + pts +
         "\"/>\n";
    for (size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i]))
        o += "<circle cx=\"" + num(px(s.x[i])) + "\" cy=\"" + num(py(s.y[i])) +
             "\" r=\"3\" fill=\"" + c + "\"/>\n";
    const double ly = T + 10 + 20 * double(k);
    o += "<line x1=\"" + num(L + W + 12) + "\" y1=\"" + num(ly) + "\" x2=\"" + num(L + W + 36) +
         "\" y2=\"" + num(ly) + "\" stroke=\"" + c + "\" stroke-width=\"2\"/><text x=\"" +
         num(L + W + 42) + "\" y=\"" + num(ly + 4) + "\">" + esc(s.name) + "</text>\n";
  }
  return o + "</svg>\n";
}

}  // namespace eb
