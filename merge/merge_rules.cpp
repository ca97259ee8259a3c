#include "merge/merge_rules.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <sstream>

#include "common/error.h"
#include "common/hash.h"
#include "common/rng.h"

namespace lethe {

torch::Tensor delta_of(const torch::Tensor& theta, const torch::Tensor& theta0) {
  return (theta.to(torch::kFloat) - theta0.to(theta.device(), torch::kFloat)).contiguous();
}

torch::Tensor apply_delta(const torch::Tensor& base, const torch::Tensor& merged_delta) {
  return (base.to(torch::kFloat) + merged_delta.to(base.device(), torch::kFloat)).to(base.scalar_type());
}

torch::Tensor MergeMethod::merge_weights(const std::string& name, const torch::Tensor& base,
                                         const std::vector<torch::Tensor>& models) const {
  const torch::Tensor base_f = base.to(torch::kFloat);  // converted once for the K deltas
  std::vector<torch::Tensor> deltas;
  for (auto& m : models) deltas.push_back(delta_of(m, base_f));
  return apply_delta(base, merge(name, deltas));
}

namespace {

// ---- the fused linear merge: out = theta_0 + post(sum_g w_g (theta_g - theta_0)) ----
// Element by element, the float32 operations of the unfused path in its order: the delta
// (one rounding), the weighted sum from zero as LibTorch's add_(delta, w) does it (a fused
// multiply-add), the scale by lambda, the division by the weights' sum, the add to theta_0 and
// the conversion to its dtype (round to nearest even).
struct LinearMerge {
  std::vector<float> w;  // per model
  float scale = 1.0f;
  bool scaled = false;
  float divisor = 1.0f;
  bool divided = false;
};

template <class T>
__attribute__((always_inline)) inline float to_float(T v) {
  return float(v);
}
template <>
__attribute__((always_inline)) inline float to_float<c10::BFloat16>(c10::BFloat16 v) {  // bf16 is float32's upper half
  const uint32_t bits = uint32_t(v.x) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
template <class T>
__attribute__((always_inline)) inline T from_float(float f) {
  return T(f);
}
template <>
__attribute__((always_inline)) inline c10::BFloat16 from_float<c10::BFloat16>(
    float f) {  // round to nearest even (the inputs are finite)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return c10::BFloat16(uint16_t(u >> 16), c10::BFloat16::from_bits());
}

constexpr int64_t kFusedBlock = 1024;

// always_inline: the body is compiled again inside each caller, so the AVX2 caller below gets
// vector FMA instructions (a called copy would be the baseline x86-64 one).
template <class T>
__attribute__((always_inline)) inline void linear_block(const LinearMerge& lm, const T* base,
                                                        const std::vector<const T*>& ms, T* out, int64_t n) {
  float t0[kFusedBlock], acc[kFusedBlock];
  for (int64_t i = 0; i < n; ++i) {
    t0[i] = to_float(base[i]);
    acc[i] = 0.0f;
  }
  for (size_t g = 0; g < ms.size(); ++g) {
    const T* m = ms[g];
    const float w = lm.w[g];
    for (int64_t i = 0; i < n; ++i) acc[i] = __builtin_fmaf(w, to_float(m[i]) - t0[i], acc[i]);
  }
  if (lm.scaled)
    for (int64_t i = 0; i < n; ++i) acc[i] *= lm.scale;
  if (lm.divided)
    for (int64_t i = 0; i < n; ++i) acc[i] /= lm.divisor;
  for (int64_t i = 0; i < n; ++i) out[i] = from_float<T>(t0[i] + acc[i]);
}

// The same loop compiled for AVX2 + FMA (vectorized fused multiply-adds), chosen at run time.
template <class T>
__attribute__((target("avx2,fma"))) void linear_block_avx2(const LinearMerge& lm, const T* base,
                                                           const std::vector<const T*>& ms, T* out, int64_t n) {
  linear_block<T>(lm, base, ms, out, n);
}

template <class T>
void linear_merge(const LinearMerge& lm, const torch::Tensor& base, const std::vector<torch::Tensor>& models,
                  torch::Tensor& out) {
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const T* b = base.data_ptr<T>();
  std::vector<const T*> ms;
  for (auto& m : models) ms.push_back(m.data_ptr<T>());
  T* o = out.data_ptr<T>();
  at::parallel_for(0, (base.numel() + kFusedBlock - 1) / kFusedBlock, 64, [&](int64_t b0, int64_t b1) {
    std::vector<const T*> mb(ms.size());
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t at = blk * kFusedBlock, n = std::min(kFusedBlock, base.numel() - at);
      for (size_t g = 0; g < ms.size(); ++g) mb[g] = ms[g] + at;
      if (avx2)
        linear_block_avx2<T>(lm, b + at, mb, o + at, n);
      else
        linear_block<T>(lm, b + at, mb, o + at, n);
    }
  });
}

// The fused path's inputs: CPU, contiguous, one dtype it knows; else the unfused path runs.
bool fusable(const torch::Tensor& base, const std::vector<torch::Tensor>& models) {
  const auto dt = base.scalar_type();
  if (!(dt == torch::kFloat || dt == torch::kBFloat16 || dt == torch::kHalf)) return false;
  if (!base.is_cpu() || !base.is_contiguous()) return false;
  for (auto& m : models)
    if (!m.is_cpu() || !m.is_contiguous() || m.scalar_type() != dt || m.sizes() != base.sizes()) return false;
  return true;
}

torch::Tensor fused_linear_merge(const LinearMerge& lm, const torch::Tensor& base,
                                 const std::vector<torch::Tensor>& models) {
  torch::Tensor out = torch::empty_like(base);
  switch (base.scalar_type()) {
    case torch::kFloat:
      linear_merge<float>(lm, base, models, out);
      break;
    case torch::kBFloat16:
      linear_merge<c10::BFloat16>(lm, base, models, out);
      break;
    default:
      linear_merge<c10::Half>(lm, base, models, out);
      break;
  }
  return out;
}

// The k-th largest magnitude (1 <= k <= n) of n finite float32 values given by their bits,
// bits_at(i), by radix selection: finite magnitudes order as their bits with the sign cleared.
template <class BitsAt>
float kth_magnitude_by_radix(int64_t n, int64_t k, const BitsAt& bits_at) {
  // The high 16 bits, then the low 16 bits of the one bucket that holds the k-th, each pass a
  // histogram (per thread, then summed).
  constexpr int64_t kBins = 65536;
  auto histogram = [&](auto&& bin_of) {
    std::vector<int64_t> total(kBins, 0);
    std::mutex m;
    at::parallel_for(0, n, 1 << 20, [&](int64_t b, int64_t e) {
      std::vector<int64_t> h(kBins, 0);
      for (int64_t i = b; i < e; ++i) {
        const int64_t bin = bin_of(bits_at(i) & 0x7fffffffu);
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

// ---- the fused TIES merge (threshold trim) ----
// Per model, the k-th largest |delta| by radix selection over deltas computed on the fly from
// the inputs; then one pass: each entry's deltas, trimmed, the sign election and the disjoint
// mean, in the unfused path's float32 operations and order (ties_trim, disjoint_mean, x lambda,
// apply_delta): a trimmed entry is delta * 0 (a signed zero), the weighted sums fused
// multiply-adds from zero, den > 0 ? num / max(den, 1e-30) : 0.
struct TiesMerge {
  std::vector<float> w;          // per model
  std::vector<float> threshold;  // per model: kept where |delta| >= threshold (+inf: none kept)
  bool normalize = true;
  float lambda = 1.0f;
};

// Written so that GCC vectorizes every loop: comparisons become 0/1 factors and selects of
// computed values, no conditional float operation (-fno-trapping-math for this file).
template <class T>
__attribute__((always_inline)) inline void ties_block(const TiesMerge& tm, const T* __restrict base,
                                                      const std::vector<const T*>& ms, T* __restrict out, int64_t n) {
  float t0[kFusedBlock], total[kFusedBlock], num[kFusedBlock], den[kFusedBlock];
  for (int64_t i = 0; i < n; ++i) {
    t0[i] = to_float(base[i]);
    total[i] = 0.0f;
    num[i] = 0.0f;
    den[i] = 0.0f;
  }
  for (size_t g = 0; g < ms.size(); ++g) {
    const T* __restrict m = ms[g];
    const float w = tm.w[g], thr = tm.threshold[g];
    for (int64_t i = 0; i < n; ++i) {
      const float d = to_float(m[i]) - t0[i];
      const float kept = d * float(std::fabs(d) >= thr);  // ties_trim's delta * mask
      total[i] = __builtin_fmaf(w, kept, total[i]);
    }
  }
  for (size_t g = 0; g < ms.size(); ++g) {
    const T* __restrict m = ms[g];
    const float w = tm.w[g], thr = tm.threshold[g];
    for (int64_t i = 0; i < n; ++i) {
      const float d = to_float(m[i]) - t0[i];
      const float kept = d * float(std::fabs(d) >= thr);
      const float elected = 2.0f * float(total[i] >= 0.0f) - 1.0f;  // 0 counts as +
      const float sign = float(kept > 0.0f) - float(kept < 0.0f);
      const float agree = float(sign == elected);  // zero entries never agree
      num[i] = __builtin_fmaf(w, kept * agree, num[i]);
      den[i] = __builtin_fmaf(w, agree, den[i]);
    }
  }
  if (tm.normalize) {
    for (int64_t i = 0; i < n; ++i) {
      const float mean = num[i] / std::max(den[i], 1e-30f);
      num[i] = den[i] > 0.0f ? mean : 0.0f;
    }
  }
  for (int64_t i = 0; i < n; ++i) out[i] = from_float<T>(t0[i] + num[i] * tm.lambda);
}

template <class T>
__attribute__((target("avx2,fma"))) void ties_block_avx2(const TiesMerge& tm, const T* base,
                                                         const std::vector<const T*>& ms, T* out, int64_t n) {
  ties_block<T>(tm, base, ms, out, n);
}

template <class T>
torch::Tensor ties_merge(TiesMerge tm, double density, const torch::Tensor& base,
                         const std::vector<torch::Tensor>& models) {
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const int64_t n = base.numel();
  const T* b = base.data_ptr<T>();
  std::vector<const T*> ms;
  for (auto& m : models) ms.push_back(m.data_ptr<T>());
  const int64_t k = std::min<int64_t>(n, int64_t(std::floor(density * double(n) + 1e-9)));  // as ties_trim
  for (const T* m : ms) {
    if (k >= n) {
      tm.threshold.push_back(0.0f);  // every entry kept
    } else if (k <= 0) {
      tm.threshold.push_back(std::numeric_limits<float>::infinity());  // none
    } else {
      tm.threshold.push_back(kth_magnitude_by_radix(n, k, [b, m](int64_t i) {
        const float d = to_float(m[i]) - to_float(b[i]);
        uint32_t bits;
        std::memcpy(&bits, &d, 4);
        return bits;
      }));
    }
  }
  torch::Tensor out = torch::empty_like(base);
  T* o = out.data_ptr<T>();
  at::parallel_for(0, (n + kFusedBlock - 1) / kFusedBlock, 64, [&](int64_t b0, int64_t b1) {
    std::vector<const T*> mb(ms.size());
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t at = blk * kFusedBlock, len = std::min(kFusedBlock, n - at);
      for (size_t g = 0; g < ms.size(); ++g) mb[g] = ms[g] + at;
      if (avx2)
        ties_block_avx2<T>(tm, b + at, mb, o + at, len);
      else
        ties_block<T>(tm, b + at, mb, o + at, len);
    }
  });
  return out;
}

torch::Tensor fused_ties_merge(const TiesMerge& tm, double density, const torch::Tensor& base,
                               const std::vector<torch::Tensor>& models) {
  switch (base.scalar_type()) {
    case torch::kFloat:
      return ties_merge<float>(tm, density, base, models);
    case torch::kBFloat16:
      return ties_merge<c10::BFloat16>(tm, density, base, models);
    default:
      return ties_merge<c10::Half>(tm, density, base, models);
  }
}

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
  // The weights as float32, as LibTorch's add_(delta, w) applies them.
  std::vector<float> float_weights() const { return std::vector<float>(w_.begin(), w_.end()); }
  MergeOptions o_;
  std::vector<double> w_;
};

// One class per rule (docs/METHODS.md, "Merge rules"); "auto" normalization is each rule's own.
// task_arithmetic and linear: sum_g w_g delta_g, then x lambda (task_arithmetic), then / sum_g w_g
// where normalized; merge_weights fuses the whole tensor's arithmetic into one pass.
class LinearRule : public WeightedRule {
 public:
  LinearRule(MergeOptions o, std::vector<double> w, bool scaled, bool normalize_default)
      : WeightedRule(std::move(o), std::move(w)), scaled_(scaled), normalize_default_(normalize_default) {}
  torch::Tensor merge(const std::string&, const std::vector<torch::Tensor>& deltas) const override {
    torch::Tensor sum = weighted_sum(deltas, w_);
    if (scaled_) sum.mul_(o_.lambda);
    return normalized(sum, o_, w_, normalize_default_);
  }
  torch::Tensor merge_weights(const std::string& name, const torch::Tensor& base,
                              const std::vector<torch::Tensor>& models) const override {
    if (!fusable(base, models)) return MergeMethod::merge_weights(name, base, models);
    LinearMerge lm;
    lm.w = float_weights();
    lm.scaled = scaled_;
    lm.scale = float(o_.lambda);
    lm.divided = normalize_of(o_, normalize_default_);
    double total = 0;
    for (double v : w_) total += v;
    lm.divisor = float(total);
    return fused_linear_merge(lm, base, models);
  }

 private:
  bool scaled_, normalize_default_;
};

class TaskArithmetic : public LinearRule {
 public:
  TaskArithmetic(MergeOptions o, std::vector<double> w) : LinearRule(std::move(o), std::move(w), true, false) {}
};

class Linear : public LinearRule {
 public:
  Linear(MergeOptions o, std::vector<double> w) : LinearRule(std::move(o), std::move(w), false, true) {}
};

class Ties : public WeightedRule {
 public:
  using WeightedRule::WeightedRule;
  torch::Tensor merge(const std::string&, const std::vector<torch::Tensor>& deltas) const override {
    std::vector<torch::Tensor> parts;
    for (auto& d : deltas) parts.push_back(ties_trim(d, o_.density, o_.trim));
    return disjoint_mean(parts, w_, normalize_of(o_, true)).mul_(o_.lambda);
  }
  torch::Tensor merge_weights(const std::string& name, const torch::Tensor& base,
                              const std::vector<torch::Tensor>& models) const override {
    if (o_.trim != "threshold" || !fusable(base, models)) return MergeMethod::merge_weights(name, base, models);
    TiesMerge tm;
    tm.w = float_weights();
    tm.normalize = normalize_of(o_, true);
    tm.lambda = float(o_.lambda);
    return fused_ties_merge(tm, o_.density, base, models);
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
  return kth_magnitude_by_radix(n, k,
                                [bits = static_cast<const uint32_t*>(x.data_ptr())](int64_t i) { return bits[i]; });
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
