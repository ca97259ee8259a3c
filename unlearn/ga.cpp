// Gradient ascent: maximise the forget items' NLL, i.e. minimise -NLL(x_f).
#include "unlearn/objective.h"

namespace lethe {

namespace {
class GradientAscent : public Objective {
 public:
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch*) override {
    auto nll = mean_item_nll(model, forget);
    return {-nll, {{"forget_nll", nll.item<double>()}}};
  }
};
}  // namespace

ObjectiveSpec ga_objective_spec() {
  return {"ga", "gradient ascent on the forget set: loss = -NLL(x_f)", [](po::options_description&) {},
          [](const po::variables_map&) { return std::make_unique<GradientAscent>(); }};
}

}  // namespace lethe
