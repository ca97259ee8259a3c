#include "merge/merge_rules.h"

#include <cmath>
#include <sstream>

#include "common/error.h"
#include "common/rng.h"

namespace lethe {

namespace {

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

torch::Tensor weighted_sum(const std::vector<torch::Tensor>& ds, const std::vector<double>& w) {
  torch::Tensor acc = torch::zeros_like(ds[0]);
  for (size_t g = 0; g < ds.size(); ++g) acc.add_(ds[g], w[g]);
  return acc;
}

class Rule : public MergeMethod {
 public:
  Rule(MergeOptions o, std::vector<double> w) : o_(std::move(o)), w_(std::move(w)) {}
  torch::Tensor merge(const std::string& name, const std::vector<torch::Tensor>& deltas) const override {
    LETHE_CHECK(deltas.size() == w_.size(), "merge: " + std::to_string(deltas.size()) + " deltas for " +
                                                std::to_string(w_.size()) + " weights");
    const std::string& m = o_.method;
    const bool disjoint = m == "ties" || m == "dare_ties";
    const bool normalize = o_.normalize == "auto" ? (disjoint || m == "linear") : o_.normalize == "true";
    double total = 0;
    for (double v : w_) total += v;
    if (m == "task_arithmetic") {
      auto merged = weighted_sum(deltas, w_).mul_(o_.lambda);
      return normalize ? merged.div_(total) : merged;
    }
    if (m == "linear") {
      auto merged = weighted_sum(deltas, w_);
      return normalize ? merged.div_(total) : merged;
    }
    std::vector<torch::Tensor> parts;
    for (size_t g = 0; g < deltas.size(); ++g)
      parts.push_back(m == "ties" ? ties_trim(deltas[g], o_.density, o_.trim)
                                  : dare_drop(deltas[g], o_.density, o_.seed, g, name, o_.rescale));
    if (m == "dare_linear") {
      auto merged = weighted_sum(parts, w_).mul_(o_.lambda);
      return normalize ? merged.div_(total) : merged;
    }
    return disjoint_mean(parts, w_, normalize).mul_(o_.lambda);  // ties, dare_ties
  }

 private:
  MergeOptions o_;
  std::vector<double> w_;
};

}  // namespace

const std::vector<std::string>& merge_method_names() {
  static const std::vector<std::string> names = {"task_arithmetic", "linear", "ties", "dare_linear", "dare_ties"};
  return names;
}

torch::Tensor ties_trim(const torch::Tensor& delta, double density, const std::string& trim) {
  const int64_t n = delta.numel();
  if (trim == "topk") {  // mergekit: exactly max(1, int(density n)) entries
    if (density >= 1) return delta.clone();
    if (n == 0) return delta.clone();
    const int64_t k = std::max<int64_t>(1, int64_t(density * double(n)));
    auto order = std::get<1>(delta.abs().reshape({-1}).to(torch::kFloat).sort(/*stable=*/true, 0, /*descending=*/true));
    auto mask = torch::zeros({n}, delta.options());
    mask.index_fill_(0, order.narrow(0, 0, k), 1);
    return delta * mask.view_as(delta);
  }
  const int64_t k = std::min<int64_t>(n, int64_t(std::floor(density * double(n) + 1e-9)));
  if (k >= n) return delta.clone();
  if (k <= 0) return torch::zeros_like(delta);
  auto mag = delta.abs().reshape({-1});
  auto threshold = std::get<0>(mag.topk(k)).min();  // the k-th largest magnitude
  return delta * (delta.abs() >= threshold).to(delta.scalar_type());
}

torch::Tensor dare_drop(const torch::Tensor& delta, double density, uint64_t seed, size_t model,
                        const std::string& name, const std::string& rescale) {
  // The mask depends only on (seed, model, name, element index): any sharding draws the same one.
  SplitMix64 rng(seed ^ (0x9E3779B97F4A7C15ULL * (uint64_t(model) + 1)) ^ fnv1a(name));
  auto src = delta.to(torch::kCPU, torch::kFloat).contiguous();
  auto kept = torch::empty_like(src);
  const float* s = src.data_ptr<float>();
  float* d = kept.data_ptr<float>();
  const int64_t n = src.numel();
  for (int64_t i = 0; i < n; ++i) d[i] = rng.uniform() < density ? s[i] : 0.0f;
  if (density >= 1 || rescale == "none") {
    // nothing dropped, or no rescaling asked for
  } else if (rescale == "inverse") {
    kept.div_(density);
  } else {  // l1: the kept entries scaled so the delta keeps its L1 norm
    double before = src.abs().sum().item<double>(), after = kept.abs().sum().item<double>();
    if (after > 0) kept.mul_(before / after);
  }
  return kept.to(delta.device());
}

torch::Tensor disjoint_mean(const std::vector<torch::Tensor>& deltas, const std::vector<double>& weights,
                            bool normalize) {
  auto total = weighted_sum(deltas, weights);
  auto elected = torch::where(total >= 0, torch::ones_like(total), -torch::ones_like(total));  // 0 counts as +
  auto num = torch::zeros_like(total), den = torch::zeros_like(total);
  for (size_t g = 0; g < deltas.size(); ++g) {
    auto agree = (deltas[g].sign() == elected).to(total.scalar_type());  // zero entries never agree
    num.add_(deltas[g] * agree, weights[g]);
    den.add_(agree, weights[g]);
  }
  if (!normalize) return num;
  return torch::where(den > 0, num / den.clamp_min(1e-30), torch::zeros_like(num));
}

std::unique_ptr<MergeMethod> make_merge_method(const MergeOptions& o, size_t k) {
  const auto& names = merge_method_names();
  if (std::find(names.begin(), names.end(), o.method) == names.end())
    throw InputError("--merge: unknown merge method '" + o.method +
                     "' (task_arithmetic, linear, ties, dare_linear, dare_ties)");
  if (k == 0) throw InputError("merge: no models to merge");
  std::vector<double> w = o.weights.empty() ? std::vector<double>(k, 1.0) : o.weights;
  if (w.size() != k)
    throw InputError("--merge.weights: " + std::to_string(w.size()) + " weights for " + std::to_string(k) + " models");
  double total = 0;
  for (double v : w) {
    if (!(v >= 0) || !std::isfinite(v)) throw InputError("--merge.weights: every weight must be finite and >= 0");
    total += v;
  }
  if (total <= 0) throw InputError("--merge.weights: the weights sum to 0");
  if (!(o.density > 0 && o.density <= 1)) throw InputError("--merge.density must be in (0, 1]");
  if (!std::isfinite(o.lambda)) throw InputError("--merge.lambda must be finite");
  if (o.rescale != "inverse" && o.rescale != "l1" && o.rescale != "none")
    throw InputError("--merge.rescale: 'inverse', 'l1' or 'none'");
  if (o.trim != "threshold" && o.trim != "topk") throw InputError("--merge.trim: 'threshold' or 'topk'");
  if (o.normalize != "auto" && o.normalize != "true" && o.normalize != "false")
    throw InputError("--merge.normalize: 'auto', 'true' or 'false'");
  return std::make_unique<Rule>(o, w);
}

std::string describe(const MergeOptions& o) {
  std::ostringstream s;
  s << o.method;
  if (o.method != "linear") s << " lambda " << o.lambda;
  if (o.method == "ties" || o.method.rfind("dare", 0) == 0) s << " density " << o.density;
  if (o.method.rfind("dare", 0) == 0) s << " seed " << o.seed << " rescale " << o.rescale;
  if (o.method == "ties" && o.trim != "threshold") s << " trim " << o.trim;
  if (o.normalize != "auto") s << " normalize " << o.normalize;
  return s.str();
}

}  // namespace lethe
