// Weighted gradient ascent (WGA): ascent on the forget answers where each token's cross-entropy
// is weighted by its probability under the current model, w_t = p(y_t)^beta (no gradient through
// w), so tokens already forgotten stop pulling: loss = w_f wga(x_f) + w_r NLL(x_r).
#include "unlearn/losses.h"
#include "unlearn/method_support.h"

namespace lethe {

namespace {
class Wga : public WithRetainTerm {
 public:
  WeightUse weight_use_outside_training() const override { return WeightUse::kNone; }
  explicit Wga(const MethodOptions& o)
      : WithRetainTerm(o.number("wga.retain-weight")), beta_(o.number("wga.beta")), wf_(o.number("wga.forget-weight")) {
  }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) override {
    TokenLoss tl = model->answer_loss(forget.input_ids, forget.attention_mask, forget.labels);
    auto f = wga_loss(tl.nll, tl.mask, beta_);
    ObjectiveResult out{wf_ * f, {{"wga", f.item<double>()}, {"forget_nll", item_mean_nll(tl).mean().item<double>()}}};
    add_retain(out, model, retain);
    return out;
  }

 private:
  double beta_, wf_;
};
}  // namespace

ObjectiveSpec wga_objective_spec() { return declared_objective("wga", build<Wga>); }

}  // namespace lethe
