// Model configuration read from a Hugging Face config.json (Llama-2/3, Mistral, Qwen2).
// No LibTorch here, so data and launcher code can include it cheaply.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/json_io.h"

namespace lethe {

struct RopeScaling {
  std::string type = "none";  // none | linear | llama3
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string model_type = "llama";  // llama | mistral | qwen2
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 2048;
  int64_t sliding_window = 0;  // 0: full attention
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  double initializer_range = 0.02;
  RopeScaling rope_scaling;
  bool qkv_bias = false;  // Qwen2 always; Llama with attention_bias
  bool o_bias = false;    // Llama attention_bias only
  bool mlp_bias = false;
  bool tie_word_embeddings = false;
  std::string torch_dtype = "float32";
  std::vector<int64_t> eos_token_ids;
  int64_t bos_token_id = -1;
  json raw;  // the original document; written back with our fields updated

  // `source` names the file in error messages.
  static ModelConfig from_json(const json& j, const std::string& source);
  json to_json() const;
  int64_t num_parameters() const;
};

}  // namespace lethe
