// Gradient difference: ascend on the forget set while descending on the retain set,
// loss = -w_f NLL(x_f) + w_r NLL(x_r).
#include "unlearn/objective.h"

namespace lethe {

namespace {
class GradientDifference : public Objective {
 public:
  explicit GradientDifference(const MethodOptions& o)
      : GradientDifference(o.number("gd.forget-weight"), o.number("gd.retain-weight")) {}
  GradientDifference(double wf, double wr) : forget_weight_(wf), retain_weight_(wr) {}
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

ObjectiveSpec gd_objective_spec() {
  return {"gd",
          "gradient difference: loss = -w_f NLL(x_f) + w_r NLL(x_r)",
          {{"gd.forget-weight", 1.0, "w_f, weight of the forget term"},
           {"gd.retain-weight", 1.0, "w_r, weight of the retain term"}},
          build<GradientDifference>};
}

}  // namespace lethe
