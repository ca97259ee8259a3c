// CE-U (cross-entropy unlearning): on each answer position, cross-entropy against the model's
// own distribution with the true token removed (q = softmax(z with z_y = -inf), no gradient
// through q), so the true token's probability goes to the other tokens in proportion to theirs.
// Each item's first answer token is skipped, as published; no retain term.
#include "unlearn/losses.h"
#include "unlearn/method_support.h"

namespace lethe {

namespace {
class CeU : public Objective {
 public:
  WeightUse weight_use_outside_training() const override { return WeightUse::kNone; }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch*) override {
    auto logits = model->forward(forget.input_ids, forget.attention_mask);
    auto mask = answer_prediction_mask(forget.labels);
    auto first = mask.cumsum(1).eq(1).logical_and(mask.gt(0));  // each item's first answer token
    auto f = ce_u_loss(logits, next_token_targets(forget.labels), mask.masked_fill(first, 0));
    return {f, {{"ce_u", f.item<double>()}}};
  }
};
}  // namespace

ObjectiveSpec ce_u_objective_spec() { return declared_objective("ce_u", build<CeU>); }

}  // namespace lethe
