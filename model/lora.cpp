#include "model/lora.h"

#include <cmath>

namespace lethe {

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias) : in_features(in), out_features(out) {
  weight = register_parameter("weight", torch::empty({out, in}));
  if (with_bias) bias = register_parameter("bias", torch::zeros({out}));
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = torch::nn::functional::linear(x, weight, bias);
  if (has_lora()) {
    torch::Tensor h = x;
    if (lora_dropout > 0 && is_training()) h = torch::dropout(h, lora_dropout, true);
    y = y + lora_B(lora_A(h)) * lora_scale;
  }
  return y;
}

void LinearImpl::add_lora(const LoraOptions& opt, at::Generator& gen) {
  TORCH_CHECK(!has_lora(), "LoRA adapters are already attached");
  auto dtype = weight.scalar_type();
  lora_A = register_module("lora_A", torch::nn::Linear(torch::nn::LinearOptions(in_features, opt.rank).bias(false)));
  lora_B = register_module("lora_B", torch::nn::Linear(torch::nn::LinearOptions(opt.rank, out_features).bias(false)));
  {
    torch::NoGradGuard ng;
    // PEFT's initialisation: A kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in),
    // 1/sqrt(fan_in)), drawn from the seeded generator; B zero, so the adapted layer starts
    // equal to the base layer.
    double bound = 1.0 / std::sqrt(double(in_features));
    lora_A->weight.uniform_(-bound, bound, gen);
    lora_B->weight.zero_();
  }
  lora_A->to(dtype);
  lora_B->to(dtype);
  lora_scale = opt.alpha / double(opt.rank);
  lora_dropout = opt.dropout;
}

namespace {
torch::Tensor lora_delta(const LinearImpl& lin) {  // (alpha / rank) B @ A in the weight's dtype
  torch::NoGradGuard ng;
  auto delta =
      torch::matmul(lin.lora_B->weight.to(torch::kFloat), lin.lora_A->weight.to(torch::kFloat)) * lin.lora_scale;
  return delta.to(lin.weight.scalar_type());
}
}  // namespace

bool is_lora_parameter(const std::string& name) {
  return name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos;
}

torch::Tensor LinearImpl::merged_weight() const {
  if (!has_lora()) return weight;
  torch::NoGradGuard ng;
  return weight + lora_delta(*this);
}

void LinearImpl::merge_lora() {
  if (!has_lora()) return;
  {
    torch::NoGradGuard ng;
    weight.add_(lora_delta(*this));
  }
  unregister_module("lora_A");
  unregister_module("lora_B");
  lora_A = nullptr;
  lora_B = nullptr;
}

}  // namespace lethe
