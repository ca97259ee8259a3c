// Task vector negation: finetune on the forget set (theta_ft), then
// theta = theta_0 - lambda (theta_ft - theta_0). With LoRA the task vector of an adapted weight
// is its adapters' delta, scale B A, so the adapters are merged with scale -lambda * scale:
// theta_0 - lambda scale B A, with no cancellation of theta_ft - theta_0, and nothing of theta_0
// kept. At ZeRO 3 without LoRA each rank keeps theta_0 of its shard only and negates its shard:
// the same element-wise arithmetic as on whole tensors.

#include "common/error.h"
#include "dist/data_parallel.h"
#include "unlearn/method_support.h"

namespace lethe {

namespace {
class TaskVectorNegation : public Objective {
 public:
  explicit TaskVectorNegation(const MethodOptions& o) : lambda_(o.number("tvn.lambda")) {}
  WeightUse weight_use_outside_training() const override { return WeightUse::kShardwise; }
  void prepare(CausalLM& model, ObjectiveContext& ctx) override {
    for (auto& [name, p] : model->named_parameters(true).pairs()) lora_ = lora_ || is_lora_parameter(name);
    if (lora_) return;  // the task vector is in the adapters
    if (ctx.engine) {   // theta_0 of this rank's shard of the trained parameters
      shards0_ = ctx.engine->param_shards();
      return;
    }
    torch::NoGradGuard ng;
    for (auto& [name, p] : model->named_parameters(true).pairs())
      if (p.requires_grad()) theta0_.emplace_back(name, p.detach().to(torch::kCPU).clone());
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
      p.copy_(negated(base, p));
    }
  }
  void finish_adapters(CausalLM& model) override {
    for (auto& [name, lin] : model->linear_layers())
      if (lin->has_lora()) lin->lora_scale *= -lambda_;
  }
  void finish_shards(DataParallel& engine) override {
    if (lora_) return;  // finish_adapters() negated the task vector
    LETHE_CHECK(!shards0_.empty(), "tvn: prepare() kept no shards of theta_0");
    engine.set_param_shards(
        [this](size_t k, const torch::Tensor& w) { return negated(shards0_[k].to(w.device(), w.scalar_type()), w); });
  }

 private:
  torch::Tensor negated(const torch::Tensor& base, const torch::Tensor& w) const { return base - lambda_ * (w - base); }
  double lambda_;
  bool lora_ = false;
  std::vector<std::pair<std::string, torch::Tensor>> theta0_;
  std::vector<torch::Tensor> shards0_;  // ZeRO 3 kept sharded: per engine block
};
}  // namespace

ObjectiveSpec tvn_objective_spec() { return declared_objective("tvn", build<TaskVectorNegation>); }

}  // namespace lethe
