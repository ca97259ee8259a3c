// UNDIAL: self-distillation towards the starting model's distribution with the true token's
// logit lowered by beta: q = softmax(z_ref - beta onehot(y_t)) on answer positions, q =
// softmax(z_ref) elsewhere; loss = w_f CE(p_theta, q) + w_r NLL(x_r). The reference logits are
// cached per forget item at theta_0. Positions: item (default: every position that predicts a
// token of the item, prompt included, as open-unlearning averages over the sequence; padding is
// left out, so the loss does not depend on how the batch is padded) or answer.
#include "common/error.h"
#include "unlearn/losses.h"
#include "unlearn/method_support.h"

namespace lethe {

namespace {
class Undial : public WithRetainTerm {
 public:
  WeightUse weight_use_outside_training() const override { return WeightUse::kSameForwardOnEveryRank; }
  explicit Undial(const MethodOptions& o)
      : WithRetainTerm(o.number("undial.retain-weight")), beta_(o.number("undial.beta")),
        wf_(o.number("undial.forget-weight")), mask_(o.text("undial.mask")) {
    if (mask_ != "answer" && mask_ != "item")
      throw InputError("--undial.mask: unknown value '" + mask_ + "' (item, answer)");
  }
  void prepare(CausalLM& model, ObjectiveContext& ctx) override {
    ref_ = cache_per_item(
        model, *ctx.forget, ctx.forget_used, ctx.pad_id, 0,
        [&](const Batch& one) { return model->forward(one.input_ids, one.attention_mask).to(torch::kFloat); }, "undial",
        ctx.comm);
  }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) override {
    auto logits = model->forward(forget.input_ids, forget.attention_mask);
    auto ref = gather_cached(ref_, forget.index, logits.size(1), logits.device());
    auto mask = mask_ == "answer" ? answer_prediction_mask(forget.labels) : next_token_mask(forget.attention_mask);
    auto f = undial_loss(logits, ref, next_token_targets(forget.labels), mask, beta_);
    ObjectiveResult out{wf_ * f, {{"undial", f.item<double>()}}};
    add_retain(out, model, retain);
    return out;
  }

 private:
  double beta_, wf_;
  std::string mask_;
  std::vector<torch::Tensor> ref_;
};
}  // namespace

ObjectiveSpec undial_objective_spec() { return declared_objective("undial", build<Undial>); }

}  // namespace lethe
