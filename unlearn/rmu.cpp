// RMU (representation misdirection): push the forget items' hidden states at decoder layer l
// towards a fixed random direction c*u and hold the retain items' at the reference's:
// loss = MSE(h_l(x_f), c u) + alpha MSE(h_l(x_r), h_l_ref(x_r)). Only the parameters whose names
// match --rmu.train train (chosen by name before the model is sharded, so at ZeRO 3 the layers
// with nothing to train stay shards too); the reference hidden states are cached per retain item
// at theta_0.
#include <spdlog/spdlog.h>

#include <regex>

#include "common/error.h"
#include "unlearn/losses.h"
#include "unlearn/method_support.h"

namespace lethe {

namespace {
class Rmu : public Objective {
 public:
  explicit Rmu(const MethodOptions& o)
      : layer_(o.integer("rmu.layer")), train_(o.text("rmu.train")), c_(o.number("rmu.steering")),
        alpha_(o.number("rmu.alpha")), unmasked_(o.flag("rmu.unmasked")) {
    try {  // checked when the options are read, before any model is loaded
      std::regex check(train_);
    } catch (const std::regex_error& e) {
      throw InputError("--rmu.train: invalid regular expression '" + train_ + "': " + e.what());
    }
  }
  bool uses_retain() const override { return true; }
  // The reference hidden states are forward passes over the retain items every rank runs alike.
  WeightUse weight_use_outside_training() const override { return WeightUse::kSameForwardOnEveryRank; }
  void choose_trained(CausalLM& model) override {
    const int64_t L = model->config.num_hidden_layers;
    if (layer_ < 0 || layer_ >= L)
      throw InputError("--rmu.layer " + std::to_string(layer_) + ": the model has decoder layers 0.." +
                       std::to_string(L - 1));
    std::regex re;
    try {
      re = std::regex(train_);
    } catch (const std::regex_error& e) {
      throw InputError("--rmu.train: invalid regular expression '" + train_ + "': " + e.what());
    }
    std::vector<std::string> chosen;
    for (auto& [name, p] : model->named_parameters(true).pairs()) {
      bool on = std::regex_match(name, re);
      p.set_requires_grad(on);
      if (on) chosen.push_back(name);
    }
    if (chosen.empty()) throw InputError("--rmu.train '" + train_ + "' matches no parameter name");
    spdlog::info("rmu: layer {}, training {} parameter tensor(s): {}", layer_, chosen.size(), json(chosen).dump());
  }
  void prepare(CausalLM& model, ObjectiveContext& ctx) override {
    // u ~ U[0,1)^C normalised, fixed for the subset (seeded).
    auto gen = at::detail::createCPUGenerator(item_seed(ctx.seed, kRmuDirection, 0));
    auto u = at::rand({model->config.hidden_size}, gen);
    target_ = (c_ * u / u.norm()).to(model->device()).view({1, 1, -1});
    ref_ = cache_per_item(
        model, *ctx.retain, ctx.retain_used, ctx.pad_id, unmasked_ ? ctx.max_len : 0,
        [&](const Batch& one) { return hidden(model, one); }, "rmu", ctx.comm);
  }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) override {
    auto hf = hidden(model, forget);
    auto f = masked_mse(hf, target_, mask(forget));
    auto hr = hidden(model, *retain);
    auto r = masked_mse(hr, gather_cached(ref_, retain->index, hr.size(1), hr.device()), mask(*retain));
    return {f + alpha_ * r, {{"forget_mse", f.item<double>()}, {"retain_mse", r.item<double>()}}};
  }

 private:
  // Layers 0..l only: nothing after layer l reaches the loss.
  torch::Tensor hidden(CausalLM& model, const Batch& b) const {
    return model->layer_output(b.input_ids, b.attention_mask, layer_);
  }
  torch::Tensor mask(const Batch& b) const { return unmasked_ ? torch::ones_like(b.attention_mask) : b.attention_mask; }
  int64_t layer_;
  std::string train_;
  double c_, alpha_;
  bool unmasked_;
  torch::Tensor target_;
  std::vector<torch::Tensor> ref_;
};
}  // namespace

ObjectiveSpec rmu_objective_spec() { return declared_objective("rmu", build<Rmu>); }

}  // namespace lethe
