// Random label: train the forget items towards answers whose every token is replaced by a
// uniform random id (fixed per item by the seed, so any rank count draws the same labels).
#include "common/rng.h"
#include "unlearn/method_support.h"

namespace lethe {

namespace {
class RandomLabel : public Objective {
 public:
  WeightUse weight_use_outside_training() const override { return WeightUse::kNone; }
  void prepare(CausalLM& model, ObjectiveContext& ctx) override {
    seed_ = ctx.seed;
    vocab_ = std::min<int64_t>(ctx.tok->vocab_size(), model->config.vocab_size);
  }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch*) override {
    auto labels = forget.labels.to(torch::kCPU).clone();
    auto acc = labels.accessor<int64_t, 2>();
    for (int64_t k = 0; k < labels.size(0); ++k) {
      SplitMix64 r(item_seed(seed_, kRandomLabels, forget.index[size_t(k)]));
      for (int64_t t = 0; t < labels.size(1); ++t)
        if (acc[k][t] != -100) acc[k][t] = int64_t(r.below(uint64_t(vocab_)));
    }
    auto nll = mean_item_nll(model, with_labels(forget, labels.to(forget.labels.device())));
    return {nll, {{"random_label_nll", nll.item<double>()}}};
  }

 private:
  uint64_t seed_ = 0;
  int64_t vocab_ = 1;
};
}  // namespace

ObjectiveSpec random_label_objective_spec() { return declared_objective("random_label", build<RandomLabel>); }

}  // namespace lethe
