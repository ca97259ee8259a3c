// Gradient difference: ascend on the forget set while descending on the retain set,
// loss = -w_f NLL(x_f) + w_r NLL(x_r).
#include "unlearn/objective.h"

namespace lethe {

namespace {
class GradientDifference : public Objective {
 public:
  GradientDifference(double wf, double wr) : forget_weight_(wf), retain_weight_(wr) {}
  bool uses_retain() const override { return true; }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) override {
    auto f = mean_item_nll(model, forget);
    auto r = mean_item_nll(model, *retain);
    return {-forget_weight_ * f + retain_weight_ * r, {{"forget_nll", f.item<double>()}, {"retain_nll", r.item<double>()}}};
  }

 private:
  double forget_weight_, retain_weight_;
};
}  // namespace

ObjectiveSpec gd_objective_spec() {
  return {"gd", "gradient difference: loss = -w_f NLL(x_f) + w_r NLL(x_r)",
          [](po::options_description& d) {
            d.add_options()("gd.forget-weight", po::value<double>()->default_value(1.0), "w_f, weight of the forget term")(
                "gd.retain-weight", po::value<double>()->default_value(1.0), "w_r, weight of the retain term");
          },
          [](const po::variables_map& vm) {
            return std::make_unique<GradientDifference>(vm["gd.forget-weight"].as<double>(),
                                                        vm["gd.retain-weight"].as<double>());
          }};
}

}  // namespace lethe
