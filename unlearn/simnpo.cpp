// SimNPO: reference-free NPO on the length-normalised NLL:
// loss = w_f * -(2/beta) E log sigmoid(beta (NLL_sum(y)/|y| - delta)) + w_r NLL(x_r).
#include "unlearn/losses.h"
#include "unlearn/method_support.h"

namespace lethe {

namespace {
class SimNpo : public WithRetainTerm {
 public:
  WeightUse weight_use_outside_training() const override { return WeightUse::kNone; }
  explicit SimNpo(const MethodOptions& o)
      : WithRetainTerm(o.number("simnpo.retain-weight")), beta_(o.number("simnpo.beta")),
        delta_(o.number("simnpo.delta")), wf_(o.number("simnpo.forget-weight")) {}
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) override {
    auto nll = item_mean_nll(model->answer_loss(forget.input_ids, forget.attention_mask, forget.labels));
    auto f = simnpo_loss(nll, beta_, delta_);
    ObjectiveResult out{wf_ * f, {{"simnpo", f.item<double>()}, {"forget_nll", nll.mean().item<double>()}}};
    add_retain(out, model, retain);
    return out;
  }

 private:
  double beta_, delta_, wf_;
};
}  // namespace

ObjectiveSpec simnpo_objective_spec() { return declared_objective("simnpo", build<SimNpo>); }

}  // namespace lethe
