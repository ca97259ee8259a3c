// Plots as standalone SVG documents (no plotting library): a line plot (the probe's logit lens)
// and a scatter plot with a marked Pareto front (`lethe sweep`).
#pragma once
#include <string>
#include <vector>

namespace lethe {

// One polyline per series over x = 0, 1, ...
struct PlotSeries {
  std::string name;
  std::vector<double> y;
};
std::string line_plot_svg(const std::string& title, const std::string& x_label, const std::string& y_label,
                          const std::vector<PlotSeries>& series);

struct ScatterPoint {
  std::string label;
  double x = 0, y = 0;
  bool front = false;  // on the Pareto front: drawn filled, labelled, and joined by a line
};
std::string scatter_plot_svg(const std::string& title, const std::string& x_label, const std::string& y_label,
                             const std::vector<ScatterPoint>& points);

// The indices of the points no other point dominates when both coordinates are maximised (a
// point dominates another when it is at least as good in both and better in one).
std::vector<size_t> pareto_front(const std::vector<std::pair<double, double>>& points);

std::string xml_escape(const std::string& s);

}  // namespace lethe
