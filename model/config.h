// Model configuration read from a Hugging Face config.json. The decoder families differ only in
// the traits of one table (model/config.cpp, kFamilies): Llama-2/3, Mistral, Qwen2, Qwen3, Gemma,
// Gemma-2 and Phi-3. The model code reads the traits, never the family's name.
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

// What distinguishes one decoder family from another, as data.
struct FamilyTraits {
  std::string model_type;          // config.json's model_type
  std::string architecture;        // the transformers class written to config.json
  std::string default_act;         // silu (SwiGLU) | gelu_pytorch_tanh (GeGLU)
  bool always_qkv_bias = false;    // Qwen2: q/k/v biases whatever attention_bias says
  bool bias_from_config = false;   // Llama/Qwen3: attention_bias adds q/k/v/o biases
  bool qk_norm = false;            // Qwen3: RMSNorm over head_dim on queries and keys
  bool gemma_norm = false;         // Gemma: RMSNorm scales by (1 + w), embeddings by sqrt(C)
  bool sandwich_norm = false;      // Gemma-2: extra norms after attention and around the MLP
  bool fused_projections = false;  // Phi-3: qkv_proj and gate_up_proj
  bool default_tied = false;       // Gemma ties embeddings unless config.json says otherwise
  std::string sliding;             // how sliding_window applies: none | all | use_flag | alternate
  // transformers' defaults for fields a config.json may leave out (0: derived as for Llama).
  int64_t default_head_dim = 0;  // 0: hidden_size / num_attention_heads
  int64_t default_kv_heads = 0;  // 0: num_attention_heads
  int64_t default_window = 0;    // sliding_window when absent
  int64_t default_max_positions = 2048;
  double default_eps = 1e-6;
};

struct ModelConfig {
  std::string model_type = "llama";
  FamilyTraits family;
  std::string hidden_act = "silu";  // silu | gelu_pytorch_tanh
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t rotary_dim = 0;  // head_dim * partial_rotary_factor (Phi-3); the rest passes unrotated
  int64_t max_position_embeddings = 2048;
  int64_t sliding_window = 0;         // 0: full attention
  std::vector<int64_t> layer_window;  // per decoder layer: its sliding window, 0 for full attention
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  double initializer_range = 0.02;
  double attn_scale = 0.0;             // query scale: 1/sqrt(head_dim), Gemma-2 1/sqrt(query_pre_attn_scalar)
  double attn_logit_softcapping = 0;   // Gemma-2: scores = c tanh(scores / c); 0: off
  double final_logit_softcapping = 0;  // Gemma-2: logits = c tanh(logits / c); 0: off
  RopeScaling rope_scaling;
  bool qkv_bias = false;
  bool o_bias = false;
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
  // Names of the linear projections of one decoder layer (HF module names), the LoRA targets.
  std::vector<std::string> linear_modules() const;
};

// The supported families, for help text and errors ("llama, mistral, ...").
std::string supported_model_types();

}  // namespace lethe
