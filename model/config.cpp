#include "model/config.h"

#include "common/error.h"

namespace lethe {

ModelConfig ModelConfig::from_json(const json& j, const std::string& source) {
  if (!j.is_object()) throw InputError(source + ": expected a JSON object");
  ModelConfig c;
  c.raw = j;
  c.model_type = json_get_or<std::string>(j, "model_type", "llama", source);
  if (c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "qwen2")
    throw InputError(source + ": model_type '" + c.model_type + "' is not supported (llama, mistral, qwen2)");
  std::string act = json_get_or<std::string>(j, "hidden_act", "silu", source);
  if (act != "silu") throw InputError(source + ": hidden_act '" + act + "' is not supported (silu)");
  c.vocab_size = json_get<int64_t>(j, "vocab_size", source);
  c.hidden_size = json_get<int64_t>(j, "hidden_size", source);
  c.intermediate_size = json_get<int64_t>(j, "intermediate_size", source);
  c.num_hidden_layers = json_get<int64_t>(j, "num_hidden_layers", source);
  c.num_attention_heads = json_get<int64_t>(j, "num_attention_heads", source);
  c.num_key_value_heads = json_get_or<int64_t>(j, "num_key_value_heads", c.num_attention_heads, source);
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_hidden_layers <= 0 ||
      c.num_attention_heads <= 0 || c.num_key_value_heads <= 0)
    throw InputError(source + ": sizes must be positive");
  c.head_dim = json_get_or<int64_t>(j, "head_dim", c.hidden_size / c.num_attention_heads, source);
  if (c.head_dim % 2 != 0) throw InputError(source + ": head_dim must be even for RoPE");
  if (!j.contains("head_dim") && c.hidden_size % c.num_attention_heads != 0)
    throw InputError(source + ": hidden_size is not divisible by num_attention_heads");
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    throw InputError(source + ": num_attention_heads is not a multiple of num_key_value_heads");
  c.max_position_embeddings = json_get_or<int64_t>(j, "max_position_embeddings", 2048, source);
  c.rms_norm_eps = json_get_or<double>(j, "rms_norm_eps", 1e-6, source);
  c.rope_theta = json_get_or<double>(j, "rope_theta", 10000.0, source);
  c.initializer_range = json_get_or<double>(j, "initializer_range", 0.02, source);
  c.tie_word_embeddings = json_get_or<bool>(j, "tie_word_embeddings", false, source);
  c.torch_dtype = json_get_or<std::string>(j, "torch_dtype", "float32", source);
  bool attention_bias = json_get_or<bool>(j, "attention_bias", false, source);
  c.qkv_bias = c.model_type == "qwen2" || attention_bias;
  c.o_bias = c.model_type != "qwen2" && attention_bias;
  c.mlp_bias = json_get_or<bool>(j, "mlp_bias", false, source);
  bool use_sw = c.model_type == "mistral" || json_get_or<bool>(j, "use_sliding_window", false, source);
  if (use_sw && j.contains("sliding_window") && !j["sliding_window"].is_null())
    c.sliding_window = json_get<int64_t>(j, "sliding_window", source);
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const json& rs = j["rope_scaling"];
    std::string what = source + ": rope_scaling";
    c.rope_scaling.type = json_get_or<std::string>(rs, "rope_type", json_get_or<std::string>(rs, "type", "none", what), what);
    if (c.rope_scaling.type == "default") c.rope_scaling.type = "none";
    if (c.rope_scaling.type != "none" && c.rope_scaling.type != "linear" && c.rope_scaling.type != "llama3")
      throw InputError(what + ": type '" + c.rope_scaling.type + "' is not supported (linear, llama3)");
    c.rope_scaling.factor = json_get_or<double>(rs, "factor", 1.0, what);
    c.rope_scaling.low_freq_factor = json_get_or<double>(rs, "low_freq_factor", 1.0, what);
    c.rope_scaling.high_freq_factor = json_get_or<double>(rs, "high_freq_factor", 4.0, what);
    c.rope_scaling.original_max_position_embeddings =
        json_get_or<int64_t>(rs, "original_max_position_embeddings", 8192, what);
  }
  if (j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
    if (j["eos_token_id"].is_array())
      c.eos_token_ids = j["eos_token_id"].get<std::vector<int64_t>>();
    else
      c.eos_token_ids = {json_get<int64_t>(j, "eos_token_id", source)};
  }
  c.bos_token_id = json_get_or<int64_t>(j, "bos_token_id", -1, source);
  return c;
}

json ModelConfig::to_json() const {
  json j = raw.is_object() ? raw : json::object();
  j["model_type"] = model_type;
  j["architectures"] = json::array({model_type == "qwen2" ? "Qwen2ForCausalLM"
                                    : model_type == "mistral" ? "MistralForCausalLM"
                                                              : "LlamaForCausalLM"});
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  if (head_dim != hidden_size / num_attention_heads || raw.contains("head_dim")) j["head_dim"] = head_dim;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  j["initializer_range"] = initializer_range;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["torch_dtype"] = torch_dtype;
  j["hidden_act"] = "silu";
  if (model_type == "llama") {
    j["attention_bias"] = o_bias;
    j["mlp_bias"] = mlp_bias;
  }
  if (!eos_token_ids.empty())
    j["eos_token_id"] = eos_token_ids.size() == 1 ? json(eos_token_ids[0]) : json(eos_token_ids);
  if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
  return j;
}

int64_t ModelConfig::num_parameters() const {
  int64_t C = hidden_size, q = num_attention_heads * head_dim, kv = num_key_value_heads * head_dim;
  int64_t attn = C * q + 2 * C * kv + q * C + (qkv_bias ? q + 2 * kv : 0) + (o_bias ? C : 0);
  int64_t mlp = 3 * C * intermediate_size + (mlp_bias ? 2 * intermediate_size + C : 0);
  int64_t layer = attn + mlp + 2 * C;
  return num_hidden_layers * layer + vocab_size * C * (tie_word_embeddings ? 1 : 2) + C;
}

}  // namespace lethe
