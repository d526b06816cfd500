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
  std::snprintf(b, sizeof b, "%.4g", v == 0 ? 0.0 : v);  // never "-0"
  return b;
}
// "Nice" tick step for a range: 1, 2 or 5 times a power of ten, about 6 ticks.
double tick_step(double range, bool integer = false) {
  const double raw = range / 6, p = std::pow(10.0, std::floor(std::log10(raw)));
  double step = 10 * p;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * p) {
      step = m * p;
      break;
    }
  return integer ? std::max(1.0, std::round(step)) : step;
}
// A marker of shape k (circle, square, triangle, diamond, cross) centred at (x, y): coinciding
// series stay distinguishable.
std::string marker(size_t k, double x, double y, const std::string& c) {
  char b[320];
  switch (k % 5) {
    case 0:
      std::snprintf(b, sizeof b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"4\" fill=\"%s\"/>", x, y,
                    c.c_str());
      break;
    case 1:
      std::snprintf(b, sizeof b,
                    "<rect x=\"%.2f\" y=\"%.2f\" width=\"8\" height=\"8\" fill=\"none\" "
                    "stroke=\"%s\" stroke-width=\"1.5\"/>",
                    x - 4, y - 4, c.c_str());
      break;
    case 2:
      std::snprintf(b, sizeof b, "<polygon points=\"%.2f,%.2f %.2f,%.2f %.2f,%.2f\" fill=\"%s\"/>",
                    x, y - 5, x - 5, y + 4, x + 5, y + 4, c.c_str());
      break;
    case 3:
      std::snprintf(b, sizeof b,
                    "<polygon points=\"%.2f,%.2f %.2f,%.2f %.2f,%.2f %.2f,%.2f\" fill=\"none\" "
                    "stroke=\"%s\" stroke-width=\"1.5\"/>",
                    x, y - 6, x + 6, y, x, y + 6, x - 6, y, c.c_str());
      break;
    default:
      std::snprintf(
          b, sizeof b,
          "<path d=\"M%.2f %.2fL%.2f %.2fM%.2f %.2fL%.2f %.2f\" stroke=\"%s\" stroke-width=\"2\"/>",
          x - 4, y - 4, x + 4, y + 4, x - 4, y + 4, x + 4, y - 4, c.c_str());
      break;
  }
  return b;
}
const char* kDashes[] = {"", "8,4", "2,3", "10,3,2,3", "4,4"};
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
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  // Headroom, so that points at the extremes do not sit on the frame.
  if (spec.y_max > spec.y_min) {
    y0 = spec.y_min, y1 = spec.y_max;
    const double pad = 0.04 * (y1 - y0);
    y0 -= pad, y1 += pad;
  } else {
    const double pad = 0.08 * (y1 - y0);
    y0 = y0 >= 0 && y0 - pad < 0 ? 0 : y0 - pad, y1 += pad;
  }
  const double xpad = 0.03 * (x1 - x0);
  x0 -= xpad, x1 += xpad;
  const double L = 70, R = 180, T = spec.subtitle.empty() ? 40 : 56, B = 55;
  const double W = spec.width - L - R, H = spec.height - T - B;
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
  if (!spec.subtitle.empty())
    o += "<text x=\"" + num(L + W / 2) + "\" y=\"40\" text-anchor=\"middle\" fill=\"#444\">" +
         esc(spec.subtitle) + "</text>\n";
  const double xs = tick_step(x1 - x0, spec.x_integer);
  for (double t = std::ceil(x0 / xs) * xs; t <= x1 + 1e-9; t += xs)
    o += "<line x1=\"" + num(px(t)) + "\" y1=\"" + num(T) + "\" x2=\"" + num(px(t)) + "\" y2=\"" +
         num(T + H) + "\" stroke=\"#eee\"/><text x=\"" + num(px(t)) + "\" y=\"" + num(T + H + 16) +
         "\" text-anchor=\"middle\">" + num(t) + "</text>\n";
  const double ys = tick_step(y1 - y0);
  for (double t = std::ceil(y0 / ys) * ys; t <= y1 + 1e-9; t += ys)
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
    const std::string dash =
        kDashes[k % 5][0] ? std::string(" stroke-dasharray=\"") + kDashes[k % 5] + "\"" : "";
    o += "<polyline fill=\"none\" stroke=\"" + c + "\" stroke-width=\"2\"" + dash + " points=\"" +
         pts + "\"/>\n";
    for (size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i]))
        o += marker(k, px(s.x[i]), py(s.y[i]), c) + "\n";
    const double ly = T + 10 + 20 * double(k);
    o += "<line x1=\"" + num(L + W + 10) + "\" y1=\"" + num(ly) + "\" x2=\"" + num(L + W + 44) +
         "\" y2=\"" + num(ly) + "\" stroke=\"" + c + "\" stroke-width=\"2\"" + dash + "/>" +
         marker(k, L + W + 27, ly, c) + "<text x=\"" + num(L + W + 50) + "\" y=\"" + num(ly + 4) +
         "\">" + esc(s.name) + "</text>\n";
  }
  return o + "</svg>\n";
}

}  // namespace eb
