// KL: ascend on the forget set while keeping the retain items' next-token distributions close
// to the reference model's: loss = -w_f NLL(x_f) + w_r KL(p_ref(.|x_r) || p_theta(.|x_r)).
// The reference log-probabilities are cached per retain item at theta_0 (no second model).
// Positions: answer (default: those predicting answer tokens), item (every token of the item,
// prompt included) or all (padding too, as KnowUnDo's and open-unlearning's code average).
#include "common/error.h"
#include "unlearn/losses.h"
#include "unlearn/method_support.h"

namespace lethe {

namespace {
class KlObjective : public Objective {
 public:
  WeightUse weight_use_outside_training() const override { return WeightUse::kSameForwardOnEveryRank; }
  explicit KlObjective(const MethodOptions& o)
      : wf_(o.number("kl.forget-weight")), wr_(o.number("kl.retain-weight")), mask_(o.text("kl.mask")) {
    if (mask_ != "answer" && mask_ != "item" && mask_ != "all")
      throw InputError("--kl.mask: unknown value '" + mask_ + "' (answer, item, all)");
  }
  bool uses_retain() const override { return true; }
  void prepare(CausalLM& model, ObjectiveContext& ctx) override {
    // Padding positions depend on the batch, so "all" caches every item padded to --max-len.
    ref_ = cache_per_item(
        model, *ctx.retain, ctx.retain_used, ctx.pad_id, mask_ == "all" ? ctx.max_len : 0,
        [&](const Batch& one) {
          return torch::log_softmax(model->forward(one.input_ids, one.attention_mask).to(torch::kFloat), -1);
        },
        "kl", ctx.comm);
  }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) override {
    auto f = mean_item_nll(model, forget);
    auto logits = model->forward(retain->input_ids, retain->attention_mask);
    const int64_t T = logits.size(1);
    torch::Tensor mask;
    if (mask_ == "answer")
      mask = answer_prediction_mask(retain->labels);
    else if (mask_ == "item")
      mask = retain->attention_mask;
    else
      mask = torch::ones_like(retain->attention_mask);
    auto kl = kl_loss(logits, gather_cached(ref_, retain->index, T, logits.device()), mask);
    return {-wf_ * f + wr_ * kl, {{"forget_nll", f.item<double>()}, {"retain_kl", kl.item<double>()}}};
  }

 private:
  double wf_, wr_;
  std::string mask_;
  std::vector<torch::Tensor> ref_;
};
}  // namespace

ObjectiveSpec kl_objective_spec() { return declared_objective("kl", build<KlObjective>); }

}  // namespace lethe
