#include "eval/plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace lethe {

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '&')
      out += "&amp;";
    else if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '"')
      out += "&quot;";
    else
      out += c;
  }
  return out;
}

std::string line_plot_svg(const std::string& title, const std::string& x_label, const std::string& y_label,
                          const std::vector<PlotSeries>& series) {
  const double W = 640, H = 400, left = 70, right = 160, top = 40, bottom = 55;
  const double pw = W - left - right, ph = H - top - bottom;
  size_t n = 0;
  double ymax = 0;
  for (auto& s : series) {
    n = std::max(n, s.y.size());
    for (double v : s.y)
      if (std::isfinite(v)) ymax = std::max(ymax, v);
  }
  ymax = ymax > 0 ? ymax * 1.05 : 1.0;
  auto X = [&](size_t i) { return left + (n > 1 ? pw * double(i) / double(n - 1) : pw / 2); };
  auto Y = [&](double v) { return top + ph * (1.0 - std::clamp(v, 0.0, ymax) / ymax); };
  static const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"22\" font-size=\"14\">{3}</text>\n",
      W, H, left, xml_escape(title));
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n", left, top,
                     pw, ph);
  for (int k = 0; k <= 4; ++k) {  // y ticks and grid
    double v = ymax * k / 4, y = Y(v);
    svg += fmt::format(
        "<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>"
        "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5:.3g}</text>\n",
        left, y, left + pw, left - 6, y + 4, v);
  }
  const size_t step = std::max<size_t>(1, (n + 15) / 16);
  for (size_t i = 0; i < n; i += step)  // x ticks
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", X(i), top + ph + 16, i);
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + pw / 2, H - 12,
                     xml_escape(x_label));
  svg += fmt::format("<text transform=\"translate(18,{}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                     top + ph / 2, xml_escape(y_label));
  for (size_t s = 0; s < series.size(); ++s) {
    const char* color = colors[s % 6];
    std::string points;
    for (size_t i = 0; i < series[s].y.size(); ++i) points += fmt::format("{:.1f},{:.1f} ", X(i), Y(series[s].y[i]));
    svg += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n", color, points);
    for (size_t i = 0; i < series[s].y.size(); ++i)
      svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", X(i), Y(series[s].y[i]), color);
    double ly = top + 10 + 20 * double(s);
    svg += fmt::format(
        "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{3}\" stroke-width=\"2\"/>"
        "<text x=\"{4}\" y=\"{5}\">{6}</text>\n",
        left + pw + 12, ly, left + pw + 36, color, left + pw + 42, ly + 4, xml_escape(series[s].name));
  }
  return svg + "</svg>\n";
}

namespace {

struct Frame {
  double W = 640, H = 440, left = 70, right = 30, top = 40, bottom = 55;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  double pw() const { return W - left - right; }
  double ph() const { return H - top - bottom; }
  double X(double v) const { return left + pw() * (v - x0) / (x1 - x0); }
  double Y(double v) const { return top + ph() * (1.0 - (v - y0) / (y1 - y0)); }
};

// [lo, hi] widened by 5% (or to a unit interval around a single value).
std::pair<double, double> padded_range(double lo, double hi) {
  if (!(hi > lo)) return {lo - 0.5, hi + 0.5};
  const double pad = 0.05 * (hi - lo);
  return {lo - pad, hi + pad};
}

}  // namespace

std::string scatter_plot_svg(const std::string& title, const std::string& x_label, const std::string& y_label,
                             const std::vector<ScatterPoint>& points) {
  Frame f;
  double xl = INFINITY, xh = -INFINITY, yl = INFINITY, yh = -INFINITY;
  for (auto& p : points) {
    if (!std::isfinite(p.x) || !std::isfinite(p.y)) continue;
    xl = std::min(xl, p.x), xh = std::max(xh, p.x), yl = std::min(yl, p.y), yh = std::max(yh, p.y);
  }
  if (!std::isfinite(xl)) xl = 0, xh = 1, yl = 0, yh = 1;
  std::tie(f.x0, f.x1) = padded_range(xl, xh);
  std::tie(f.y0, f.y1) = padded_range(yl, yh);
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"22\" font-size=\"14\">{3}</text>\n",
      f.W, f.H, f.left, xml_escape(title));
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n", f.left,
                     f.top, f.pw(), f.ph());
  for (int k = 0; k <= 4; ++k) {  // ticks and grid on both axes
    const double vy = f.y0 + (f.y1 - f.y0) * k / 4, vx = f.x0 + (f.x1 - f.x0) * k / 4;
    svg += fmt::format(
        "<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>"
        "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5:.3g}</text>\n",
        f.left, f.Y(vy), f.left + f.pw(), f.left - 6, f.Y(vy) + 4, vy);
    svg += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#ddd\"/>"
        "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4:.3g}</text>\n",
        f.X(vx), f.top, f.top + f.ph(), f.top + f.ph() + 16, vx);
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", f.left + f.pw() / 2, f.H - 12,
                     xml_escape(x_label));
  svg += fmt::format("<text transform=\"translate(18,{}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                     f.top + f.ph() / 2, xml_escape(y_label));
  std::vector<const ScatterPoint*> front;
  for (auto& p : points)
    if (p.front) front.push_back(&p);
  std::sort(front.begin(), front.end(), [](auto* a, auto* b) { return a->x < b->x; });
  if (front.size() > 1) {
    std::string pts;
    for (auto* p : front) pts += fmt::format("{:.1f},{:.1f} ", f.X(p->x), f.Y(p->y));
    svg += fmt::format(
        "<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\" "
        "points=\"{}\"/>\n",
        pts);
  }
  for (auto& p : points) {
    if (!std::isfinite(p.x) || !std::isfinite(p.y)) continue;
    svg += fmt::format(
        "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{}\" fill=\"{}\" stroke=\"#1f77b4\"><title>{}</title></circle>\n",
        f.X(p.x), f.Y(p.y), p.front ? 5 : 3.5, p.front ? "#d62728" : "white", xml_escape(p.label));
    if (p.front)
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"10\">{}</text>\n", f.X(p.x) + 7, f.Y(p.y) - 6,
                         xml_escape(p.label));
  }
  svg += fmt::format(
      "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" fill=\"#d62728\">"
      "filled, joined: Pareto front</text>\n",
      f.left + f.pw() - 4, f.top + 14);
  return svg + "</svg>\n";
}

std::vector<size_t> pareto_front(const std::vector<std::pair<double, double>>& points) {
  std::vector<size_t> out;
  for (size_t i = 0; i < points.size(); ++i) {
    bool dominated = false;
    for (size_t j = 0; j < points.size() && !dominated; ++j) {
      const auto& a = points[j];
      const auto& b = points[i];
      dominated = j != i && a.first >= b.first && a.second >= b.second && (a.first > b.first || a.second > b.second);
    }
    if (!dominated) out.push_back(i);
  }
  return out;
}

}  // namespace lethe
