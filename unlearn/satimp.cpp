// SatImp: ascent on the forget answers with token weights w_t = p^b1 (1 - p)^b2 (no gradient
// through w): tokens already improbable (saturated) and tokens the model is sure of count less.
// loss = w_f satimp(x_f) + w_r NLL(x_r).
#include "unlearn/losses.h"
#include "unlearn/method_support.h"

namespace lethe {

namespace {
class SatImp : public WithRetainTerm {
 public:
  WeightUse weight_use_outside_training() const override { return WeightUse::kNone; }
  explicit SatImp(const MethodOptions& o)
      : WithRetainTerm(o.number("satimp.retain-weight")), beta1_(o.number("satimp.beta1")),
        beta2_(o.number("satimp.beta2")), wf_(o.number("satimp.forget-weight")) {}
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) override {
    TokenLoss tl = model->answer_loss(forget.input_ids, forget.attention_mask, forget.labels);
    auto f = satimp_loss(tl.nll, tl.mask, beta1_, beta2_);
    ObjectiveResult out{wf_ * f,
                        {{"satimp", f.item<double>()}, {"forget_nll", item_mean_nll(tl).mean().item<double>()}}};
    add_retain(out, model, retain);
    return out;
  }

 private:
  double beta1_, beta2_, wf_;
};
}  // namespace

ObjectiveSpec satimp_objective_spec() { return declared_objective("satimp", build<SatImp>); }

}  // namespace lethe
