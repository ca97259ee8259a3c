// Gradient difference: ascend on the forget set while descending on the retain set,
// loss = -w_f NLL(x_f) + w_r NLL(x_r).
#include "unlearn/objective.h"

namespace lethe {

namespace {
class GradientDifference : public Objective {
 public:
  WeightUse weight_use_outside_training() const override { return WeightUse::kNone; }
  explicit GradientDifference(const MethodOptions& o)
      : forget_weight_(o.number("gd.forget-weight")), retain_weight_(o.number("gd.retain-weight")) {}
  bool uses_retain() const override { return true; }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) override {
    auto f = mean_item_nll(model, forget);
    auto r = mean_item_nll(model, *retain);
    return {-forget_weight_ * f + retain_weight_ * r,
            {{"forget_nll", f.item<double>()}, {"retain_nll", r.item<double>()}}};
  }

 private:
  double forget_weight_, retain_weight_;
};
}  // namespace

ObjectiveSpec gd_objective_spec() { return declared_objective("gd", build<GradientDifference>); }

}  // namespace lethe
