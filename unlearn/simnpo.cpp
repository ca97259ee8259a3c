// SimNPO: reference-free NPO on the length-normalised NLL:
// loss = w_f * -(2/beta) E log sigmoid(beta (NLL_sum(y)/|y| - delta)) + w_r NLL(x_r).
#include "unlearn/losses.h"
#include "unlearn/method_support.h"

namespace lethe {

namespace {
class SimNpo : public Objective {
 public:
  explicit SimNpo(const MethodOptions& o)
      : SimNpo(o.number("simnpo.beta"), o.number("simnpo.delta"), o.number("simnpo.forget-weight"),
               o.number("simnpo.retain-weight")) {}
  SimNpo(double beta, double delta, double wf, double wr) : beta_(beta), delta_(delta), wf_(wf), wr_(wr) {}
  bool uses_retain() const override { return wr_ != 0; }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) override {
    auto nll = item_mean_nll(token_loss(model->forward(forget.input_ids, forget.attention_mask), forget.labels));
    auto f = simnpo_loss(nll, beta_, delta_);
    ObjectiveResult out{wf_ * f, {{"simnpo", f.item<double>()}, {"forget_nll", nll.mean().item<double>()}}};
    add_retain_term(out, model, retain, wr_);
    return out;
  }

 private:
  double beta_, delta_, wf_, wr_;
};
}  // namespace

ObjectiveSpec simnpo_objective_spec() {
  return {"simnpo",
          "SimNPO: reference-free, length-normalised NPO, + w_r NLL(x_r)",
          {{"simnpo.beta", 4.5, "beta"},
           {"simnpo.delta", 0.0, "delta (margin)"},
           {"simnpo.forget-weight", 0.125, "weight of the forget term"},
           {"simnpo.retain-weight", 1.0, "w_r (0: no retain term)"}},
          build<SimNpo>};
}

}  // namespace lethe
