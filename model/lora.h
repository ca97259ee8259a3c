// A linear layer with HF parameter names (`weight`, `bias`) and optional LoRA adapters
// (`lora_A.weight`, `lora_B.weight`, as PEFT names them) that can be merged into the weight.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace lethe {

struct LoraOptions {
  int64_t rank = 0;  // 0: no adapters
  double alpha = 16.0;
  double dropout = 0.1;
  uint64_t seed = 0;  // initialisation of lora_A: the same on every rank for the same seed
  // HF module names, matched against the last component of the module path (q_proj,
  // down_proj, Phi-3's qkv_proj ...). Empty: every linear projection of the decoder layers
  // (peft's "all-linear"; lm_head excluded).
  std::vector<std::string> target_modules;
};

class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias);
  torch::Tensor forward(const torch::Tensor& x);

  void add_lora(const LoraOptions& opt, at::Generator& gen);
  void merge_lora();  // weight += (alpha / rank) * B @ A, then the adapters are removed
  // What merge_lora() would leave in `weight`, bit for bit, without changing the layer.
  torch::Tensor merged_weight() const;
  bool has_lora() const { return !lora_A.is_empty(); }

  int64_t in_features, out_features;
  torch::Tensor weight, bias;
  torch::nn::Linear lora_A{nullptr}, lora_B{nullptr};
  double lora_scale = 0.0;
  double lora_dropout = 0.0;
};
TORCH_MODULE(Linear);

// An adapter's own parameter (`...lora_A.weight`, `...lora_B.weight`), not a model weight.
bool is_lora_parameter(const std::string& name);

}  // namespace lethe
