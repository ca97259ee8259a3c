// Task vector negation: finetune on the forget set (theta_ft), then
// theta = theta_0 - lambda (theta_ft - theta_0). With LoRA the task vector is taken on the
// merged weights, so the negation is exact.
#include <set>

#include "unlearn/method_support.h"

namespace lethe {

namespace {
class TaskVectorNegation : public Objective {
 public:
  explicit TaskVectorNegation(const MethodOptions& o) : lambda_(o.number("tvn.lambda")) {}
  void prepare(CausalLM& model, ObjectiveContext&) override {
    // The weights the task vector is measured on: trainable ones, or the base weight under a
    // trainable LoRA adapter (x.lora_A.weight -> x.weight).
    std::set<std::string> names;
    for (auto& [name, p] : model->named_parameters(true).pairs()) {
      if (!p.requires_grad()) continue;
      auto pos = name.find(".lora_");
      names.insert(pos == std::string::npos ? name : name.substr(0, pos) + ".weight");
    }
    torch::NoGradGuard ng;
    for (auto& [name, p] : model->named_parameters(true).pairs())
      if (names.count(name)) theta0_.emplace_back(name, p.detach().to(torch::kCPU).clone());
  }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch*) override {
    auto nll = mean_item_nll(model, forget);
    return {nll, {{"forget_nll", nll.item<double>()}}};
  }
  void finish(CausalLM& model) override {
    torch::NoGradGuard ng;
    auto params = model->named_parameters(true);
    for (auto& [name, w0] : theta0_) {
      auto& p = params[name];
      auto base = w0.to(p.device(), p.scalar_type());
      p.copy_(base - lambda_ * (p - base));
    }
  }

 private:
  double lambda_;
  std::vector<std::pair<std::string, torch::Tensor>> theta0_;
};
}  // namespace

ObjectiveSpec tvn_objective_spec() { return declared_objective("tvn", build<TaskVectorNegation>); }

}  // namespace lethe
