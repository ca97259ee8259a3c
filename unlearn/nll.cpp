// Answer-token NLL, both ways: `nll` minimises it (what `lethe finetune` uses to make a model
// learn a data set); `ga` (gradient ascent) maximises the forget items' NLL: loss = -NLL(x_f).
#include "unlearn/objective.h"

namespace lethe {

namespace {
template <int kSign>
class SignedNll : public Objective {
 public:
  WeightUse weight_use_outside_training() const override { return WeightUse::kNone; }
  ObjectiveResult compute(CausalLM& model, const Batch& data, const Batch*) override {
    auto nll = mean_item_nll(model, data);
    return {kSign * nll, {{kSign > 0 ? "nll" : "forget_nll", nll.item<double>()}}};
  }
};
}  // namespace

ObjectiveSpec nll_objective_spec() { return declared_objective("nll", build<SignedNll<1>>); }

ObjectiveSpec ga_objective_spec() { return declared_objective("ga", build<SignedNll<-1>>); }

}  // namespace lethe
