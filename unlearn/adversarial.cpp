// Adversarial labels: train the forget items towards the reference model's most likely wrong
// token at every answer position (its top-1 other than the true one), computed once at theta_0.
#include <limits>

#include "unlearn/method_support.h"

namespace lethe {

// Labels [B, T] where every answer label is replaced by the argmax of the logits predicting it,
// the true token excluded.
torch::Tensor adversarial_labels(const torch::Tensor& logits, const torch::Tensor& labels) {
  const int64_t T = labels.size(1);
  auto out = labels.clone();
  if (T < 2) return out;
  auto lg = logits.narrow(1, 0, T - 1).to(torch::kFloat).clone();
  auto tgt = labels.narrow(1, 1, T - 1);
  lg.scatter_(-1, tgt.clamp_min(0).unsqueeze(-1), -std::numeric_limits<float>::infinity());
  out.narrow(1, 1, T - 1).copy_(torch::where(tgt.ne(-100), lg.argmax(-1), tgt));
  return out;
}

namespace {
class Adversarial : public Objective {
 public:
  WeightUse weight_use_outside_training() const override { return WeightUse::kSameForwardOnEveryRank; }
  void prepare(CausalLM& model, ObjectiveContext& ctx) override {
    labels_ = cache_per_item(
        model, *ctx.forget, ctx.forget_used, ctx.pad_id, 0,
        [&](const Batch& one) {
          return adversarial_labels(model->forward(one.input_ids, one.attention_mask), one.labels);
        },
        "adversarial", ctx.comm);
  }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch*) override {
    auto cached = gather_cached(labels_, forget.index, forget.labels.size(1), forget.labels.device());
    auto labels = torch::where(forget.labels.ne(-100), cached, forget.labels);
    auto nll = mean_item_nll(model, with_labels(forget, labels));
    return {nll, {{"adversarial_nll", nll.item<double>()}}};
  }

 private:
  std::vector<torch::Tensor> labels_;
};
}  // namespace

ObjectiveSpec adversarial_objective_spec() { return declared_objective("adversarial", build<Adversarial>); }

}  // namespace lethe
