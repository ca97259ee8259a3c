#include "merge/merge_rules.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <cstring>
#include <mutex>
#include <sstream>

#include "common/error.h"
#include "common/hash.h"
#include "common/rng.h"

namespace lethe {

namespace {

torch::Tensor weighted_sum(const std::vector<torch::Tensor>& ds, const std::vector<double>& w) {
  torch::Tensor acc = torch::zeros_like(ds[0]);
  for (size_t g = 0; g < ds.size(); ++g) acc.add_(ds[g], w[g]);
  return acc;
}

// --merge.normalize: "auto" is the rule's own default (divide or not), "true"/"false" force it.
bool normalize_of(const MergeOptions& o, bool rule_default) {
  return o.normalize == "auto" ? rule_default : o.normalize == "true";
}

torch::Tensor normalized(torch::Tensor merged, const MergeOptions& o, const std::vector<double>& w, bool rule_default) {
  if (!normalize_of(o, rule_default)) return merged;
  double total = 0;
  for (double v : w) total += v;
  return merged.div_(total);
}

// The DARE drop of every model's delta of one tensor.
std::vector<torch::Tensor> dropped(const std::string& name, const std::vector<torch::Tensor>& deltas,
                                   const MergeOptions& o) {
  std::vector<torch::Tensor> parts;
  for (size_t g = 0; g < deltas.size(); ++g)
    parts.push_back(dare_drop(deltas[g], o.density, o.seed, g, name, o.rescale));
  return parts;
}

// A rule holds the merge options and the per-model weights w_g.
class WeightedRule : public MergeMethod {
 public:
  WeightedRule(MergeOptions o, std::vector<double> w) : o_(std::move(o)), w_(std::move(w)) {}

 protected:
  MergeOptions o_;
  std::vector<double> w_;
};

// One class per rule (docs/METHODS.md, "Merge rules"); "auto" normalization is each rule's own.
class TaskArithmetic : public WeightedRule {
 public:
  using WeightedRule::WeightedRule;
  torch::Tensor merge(const std::string&, const std::vector<torch::Tensor>& deltas) const override {
    return normalized(weighted_sum(deltas, w_).mul_(o_.lambda), o_, w_, false);
  }
};

class Linear : public WeightedRule {
 public:
  using WeightedRule::WeightedRule;
  torch::Tensor merge(const std::string&, const std::vector<torch::Tensor>& deltas) const override {
    return normalized(weighted_sum(deltas, w_), o_, w_, true);
  }
};

class Ties : public WeightedRule {
 public:
  using WeightedRule::WeightedRule;
  torch::Tensor merge(const std::string&, const std::vector<torch::Tensor>& deltas) const override {
    std::vector<torch::Tensor> parts;
    for (auto& d : deltas) parts.push_back(ties_trim(d, o_.density, o_.trim));
    return disjoint_mean(parts, w_, normalize_of(o_, true)).mul_(o_.lambda);
  }
};

class DareLinear : public WeightedRule {
 public:
  using WeightedRule::WeightedRule;
  torch::Tensor merge(const std::string& name, const std::vector<torch::Tensor>& deltas) const override {
    return normalized(weighted_sum(dropped(name, deltas, o_), w_).mul_(o_.lambda), o_, w_, false);
  }
};

class DareTies : public WeightedRule {
 public:
  using WeightedRule::WeightedRule;
  torch::Tensor merge(const std::string& name, const std::vector<torch::Tensor>& deltas) const override {
    return disjoint_mean(dropped(name, deltas, o_), w_, normalize_of(o_, true)).mul_(o_.lambda);
  }
};

template <typename R>
MergeRuleSpec::Make maker() {
  return [](const MergeOptions& o, std::vector<double> w) { return std::make_unique<R>(o, std::move(w)); };
}

}  // namespace

const std::vector<MergeRuleSpec>& merge_rule_registry() {
  static const std::vector<MergeRuleSpec> rules = {
      {"task_arithmetic", "theta_0 + lambda sum_g w_g delta_g", false, false, maker<TaskArithmetic>()},
      {"linear", "theta_0 + sum_g w_g delta_g / sum_g w_g", false, false, maker<Linear>()},
      {"ties", "trim each delta to its top density, elect signs, disjoint weighted mean, x lambda", true, false,
       maker<Ties>()},
      {"dare_linear", "drop with probability 1 - density, rescale, lambda sum_g w_g delta_g", true, true,
       maker<DareLinear>()},
      {"dare_ties", "DARE drops, then TIES sign election and disjoint mean, x lambda", true, true, maker<DareTies>()},
  };
  return rules;
}

const MergeRuleSpec& find_merge_rule(const std::string& name) {
  for (auto& r : merge_rule_registry())
    if (r.name == name) return r;
  throw InputError("--merge: unknown merge method '" + name + "' (" + merge_rule_list() + ")");
}

std::string merge_rule_list() {
  std::string list;
  for (auto& r : merge_rule_registry()) list += (list.empty() ? "" : ", ") + r.name;
  return list;
}

float kth_largest_magnitude(const torch::Tensor& x, int64_t k) {
  const int64_t n = x.numel();
  LETHE_CHECK(k >= 1 && k <= n, "kth_largest_magnitude: k out of range");
  if (!(x.is_cpu() && x.is_contiguous() && x.scalar_type() == torch::kFloat))
    return std::get<0>(x.abs().reshape({-1}).to(torch::kFloat).kthvalue(n - k + 1)).item<float>();
  // Finite float32 magnitudes order as their bits with the sign cleared: a radix selection, the
  // high 16 bits then the low 16 bits of the one bucket that holds the k-th, each pass a
  // histogram (per thread, then summed).
  const auto* bits = static_cast<const uint32_t*>(x.data_ptr());
  constexpr int64_t kBins = 65536;
  auto histogram = [&](auto&& bin_of) {
    std::vector<int64_t> total(kBins, 0);
    std::mutex m;
    at::parallel_for(0, n, 1 << 20, [&](int64_t b, int64_t e) {
      std::vector<int64_t> h(kBins, 0);
      for (int64_t i = b; i < e; ++i) {
        const int64_t bin = bin_of(bits[i] & 0x7fffffffu);
        if (bin >= 0) ++h[size_t(bin)];
      }
      std::lock_guard<std::mutex> lock(m);
      for (int64_t j = 0; j < kBins; ++j) total[size_t(j)] += h[size_t(j)];
    });
    return total;
  };
  // From the top bin down: the bin holding the r-th largest, and r within it.
  auto find = [&](const std::vector<int64_t>& h, int64_t& r) {
    for (int64_t bin = kBins - 1; bin >= 0; --bin) {
      if (r <= h[size_t(bin)]) return uint32_t(bin);
      r -= h[size_t(bin)];
    }
    throw InternalError("kth_largest_magnitude: counts do not add up");
  };
  int64_t r = k;
  const uint32_t high = find(histogram([](uint32_t v) { return int64_t(v >> 16); }), r);
  const uint32_t low =
      find(histogram([high](uint32_t v) { return (v >> 16) == high ? int64_t(v & 0xffffu) : int64_t(-1); }), r);
  const uint32_t v = (high << 16) | low;
  float out;
  std::memcpy(&out, &v, sizeof out);
  return out;
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
  const double threshold = kth_largest_magnitude(delta.contiguous(), k);
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

std::string validate(const MergeOptions& o) {
  try {
    find_merge_rule(o.method);
  } catch (const InputError& e) {
    return e.what();
  }
  for (double v : o.weights)
    if (!(v >= 0) || !std::isfinite(v)) return "--merge.weights: every weight must be finite and >= 0";
  if (!(o.density > 0 && o.density <= 1)) return "--merge.density must be in (0, 1]";
  if (!std::isfinite(o.lambda)) return "--merge.lambda must be finite";
  if (o.rescale != "inverse" && o.rescale != "l1" && o.rescale != "none")
    return "--merge.rescale: 'inverse', 'l1' or 'none'";
  if (o.trim != "threshold" && o.trim != "topk") return "--merge.trim: 'threshold' or 'topk'";
  if (o.normalize != "auto" && o.normalize != "true" && o.normalize != "false")
    return "--merge.normalize: 'auto', 'true' or 'false'";
  return "";
}

std::unique_ptr<MergeMethod> make_merge_method(const MergeOptions& o, size_t k) {
  std::string bad = validate(o);
  if (!bad.empty()) throw InputError(bad);
  if (k == 0) throw InputError("merge: no models to merge");
  std::vector<double> w = o.weights.empty() ? std::vector<double>(k, 1.0) : o.weights;
  if (w.size() != k)
    throw InputError("--merge.weights: " + std::to_string(w.size()) + " weights for " + std::to_string(k) + " models");
  double total = 0;
  for (double v : w) total += v;
  if (total <= 0) throw InputError("--merge.weights: the weights sum to 0");
  return find_merge_rule(o.method).make(o, std::move(w));
}

std::string describe(const MergeOptions& o) {
  const MergeRuleSpec& rule = find_merge_rule(o.method);
  std::ostringstream s;
  s << o.method;
  if (o.method != "linear") s << " lambda " << o.lambda;
  if (rule.uses_density) s << " density " << o.density;
  if (rule.uses_seed) s << " seed " << o.seed << " rescale " << o.rescale;
  if (o.method == "ties" && o.trim != "threshold") s << " trim " << o.trim;
  if (o.normalize != "auto") s << " normalize " << o.normalize;
  return s.str();
}

}  // namespace lethe
