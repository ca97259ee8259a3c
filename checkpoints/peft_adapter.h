// LoRA adapters in peft's on-disk layout, both ways: adapter_config.json + adapter_model.safetensors
// with keys "base_model.model.<module>.lora_{A,B}.weight" (A [r, in], B [out, r]). What peft's
// LoraConfig can say that lethe's adapters do not do (DoRA, rank or alpha patterns, trained
// biases, modules_to_save, fan_in_fan_out) is refused with the field named, never ignored.
#pragma once
#include <map>
#include <string>

#include "model/llama.h"

namespace lethe {

struct PeftAdapterInfo {
  int64_t rank = 0;
  double alpha = 0;
  double dropout = 0;
  bool rslora = false;                      // scale alpha / sqrt(r) instead of alpha / r
  std::vector<std::string> target_modules;  // leaf names
  int64_t adapted_modules = 0;
};

// Attaches the adapter in `dir` to `model` (base weights frozen, adapters trainable), in the
// model's dtype. Throws InputError naming the file, key or field that does not fit.
PeftAdapterInfo load_peft_adapter(CausalLM& model, const std::string& dir);
// Writes the model's attached adapters for peft (refuses an existing `dir`). base_model names the
// base model directory in adapter_config.json (informational, as peft records it). `values`, when
// given, holds the adapters' tensors by parameter name (`<module>.lora_A.weight`): those of a
// ZeRO 3 run whose layers, adapters included, exist only as shards.
void save_peft_adapter(const CausalLM& model, const std::string& dir, const std::string& base_model,
                       const std::map<std::string, torch::Tensor>* values = nullptr);

}  // namespace lethe
