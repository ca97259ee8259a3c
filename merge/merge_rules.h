// Merge rules for SPUNGE and `lethe merge` (docs/METHODS.md, "Merge rules"). A rule sees one tensor's
// K deltas (delta_g = theta_g - theta_0, float32, the same shape) and returns the merged delta;
// the result is theta_0 + merged. Every caller (the sharded in-memory merge of `lethe spunge`,
// the out-of-core `lethe merge`, the tests) calls the same code with the deltas in subset order,
// so the same inputs give bit-identical outputs however the work is spread over ranks.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace lethe {

struct MergeOptions {
  std::string method = "ties";      // task_arithmetic | linear | ties | dare_linear | dare_ties
  std::vector<double> weights;      // w_g per model (empty: all 1)
  double density = 0.2;             // ties: share of entries kept per tensor; dare: keep probability
  double lambda = 1.0;              // scale of the merged delta (not used by linear)
  uint64_t seed = 0;                // dare's drop masks: from (seed, model index, tensor name)
  std::string rescale = "inverse";  // dare: "inverse" (kept / density), "l1" (match the delta's L1 norm), "none"
  // ties: "threshold" keeps every entry at least as large as the k-th magnitude (ties at the
  // threshold all stay), "topk" exactly k = max(1, floor(density n)) entries, lower index first
  // among equals (mergekit's magnitude sparsification).
  std::string trim = "threshold";
  // Division of the merged delta by the weights: "auto" is lethe's rule per method (linear and
  // the disjoint mean of ties/dare_ties divide, task_arithmetic/dare_linear do not); "true" and
  // "false" force it as mergekit's `normalize` does (mergekit's defaults: ties true, dare_ties,
  // dare_linear and task_arithmetic false, linear true).
  std::string normalize = "auto";
};

// theta - theta_0 in float32 on theta's device; theta_0 + merged delta in theta_0's dtype.
torch::Tensor delta_of(const torch::Tensor& theta, const torch::Tensor& theta0);
torch::Tensor apply_delta(const torch::Tensor& base, const torch::Tensor& merged_delta);

class MergeMethod {
 public:
  virtual ~MergeMethod() = default;
  // deltas[g]: model g's delta of tensor `name` (float32). Returns the merged delta (float32).
  virtual torch::Tensor merge(const std::string& name, const std::vector<torch::Tensor>& deltas) const = 0;
  // The merged weights of tensor `name` from the base's and the models' own:
  // apply_delta(base, merge(name, [delta_of(model_g, base)])). The linear rules (task_arithmetic,
  // linear) compute it in one pass over the inputs, element by element with the same float32
  // operations in the same order, without the float32 deltas: the same bits, a fraction of the
  // memory traffic (bench merge at 1.1B parameters: docs/PERFORMANCE.md).
  virtual torch::Tensor merge_weights(const std::string& name, const torch::Tensor& base,
                                      const std::vector<torch::Tensor>& models) const;
};

// The rules, one class each (merge_rules.cpp): `--help`, the error lists and describe() come
// from this table. Adding a rule is one class and one line.
struct MergeRuleSpec {
  using Make = std::function<std::unique_ptr<MergeMethod>(const MergeOptions&, std::vector<double> weights)>;
  std::string name, summary;
  bool uses_density = false;  // ties and dare: --merge.density
  bool uses_seed = false;     // dare: --merge.seed, --merge.rescale
  Make make;
};
const std::vector<MergeRuleSpec>& merge_rule_registry();
const MergeRuleSpec& find_merge_rule(const std::string& name);  // InputError listing the rules
std::string merge_rule_list();                                  // "task_arithmetic, linear, ..."
// "" when the options are consistent, else what is wrong, naming the option.
std::string validate(const MergeOptions& opt);
// Validates the options for k models (InputError naming the option) and builds the rule.
std::unique_ptr<MergeMethod> make_merge_method(const MergeOptions& opt, size_t k);
std::string describe(const MergeOptions& opt);

// The building blocks, exposed for the tests.
torch::Tensor ties_trim(const torch::Tensor& delta, double density, const std::string& trim = "threshold");
// The k-th largest |x| (1 <= k <= numel) exactly: a radix selection over the bits of a
// contiguous float32 CPU tensor (two histogram passes), kthvalue otherwise.
float kth_largest_magnitude(const torch::Tensor& x, int64_t k);
torch::Tensor dare_drop(const torch::Tensor& delta, double density, uint64_t seed, size_t model,
                        const std::string& name, const std::string& rescale);
// TIES sign election and disjoint weighted mean over the given (trimmed or dropped) deltas.
// normalize false: the agreeing weighted entries are summed, not averaged.
torch::Tensor disjoint_mean(const std::vector<torch::Tensor>& deltas, const std::vector<double>& weights,
                            bool normalize = true);

}  // namespace lethe
