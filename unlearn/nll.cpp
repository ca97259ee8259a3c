// Plain answer-token NLL: what `lethe finetune` minimises to make a model learn a data set.
#include "unlearn/objective.h"

namespace lethe {

namespace {
class Nll : public Objective {
 public:
  ObjectiveResult compute(CausalLM& model, const Batch& data, const Batch*) override {
    auto loss = mean_item_nll(model, data);
    return {loss, {{"nll", loss.item<double>()}}};
  }
};
}  // namespace

ObjectiveSpec nll_objective_spec() {
  return {"nll", "answer-token negative log-likelihood (finetuning)", [](po::options_description&) {},
          [](const po::variables_map&) { return std::make_unique<Nll>(); }};
}

}  // namespace lethe
