#include "model/config.h"

#include <cmath>

#include "common/error.h"

namespace lethe {

namespace {

// One entry per family: what differs from Llama, read off transformers' modeling files.
const std::vector<FamilyTraits>& families() {
  static const std::vector<FamilyTraits> kFamilies = [] {
    std::vector<FamilyTraits> f;
    FamilyTraits llama;
    llama.model_type = "llama";
    llama.architecture = "LlamaForCausalLM";
    llama.default_act = "silu";
    llama.bias_from_config = true;
    llama.sliding = "none";
    f.push_back(llama);

    FamilyTraits mistral = llama;
    mistral.model_type = "mistral";
    mistral.architecture = "MistralForCausalLM";
    mistral.bias_from_config = false;
    mistral.sliding = "all";  // sliding_window, when set, on every layer
    mistral.default_kv_heads = 8;
    mistral.default_window = 4096;
    mistral.default_max_positions = 131072;
    f.push_back(mistral);

    FamilyTraits qwen2 = llama;
    qwen2.model_type = "qwen2";
    qwen2.architecture = "Qwen2ForCausalLM";
    qwen2.bias_from_config = false;
    qwen2.always_qkv_bias = true;
    qwen2.sliding = "use_flag";  // use_sliding_window: layers >= max_window_layers
    qwen2.default_kv_heads = 32;
    qwen2.default_window = 4096;
    qwen2.default_max_positions = 32768;
    f.push_back(qwen2);

    FamilyTraits qwen3 = llama;
    qwen3.model_type = "qwen3";
    qwen3.architecture = "Qwen3ForCausalLM";
    qwen3.qk_norm = true;
    qwen3.sliding = "use_flag";
    qwen3.default_kv_heads = 32;
    qwen3.default_head_dim = 128;
    qwen3.default_window = 4096;
    qwen3.default_max_positions = 32768;
    f.push_back(qwen3);

    FamilyTraits gemma = llama;
    gemma.model_type = "gemma";
    gemma.architecture = "GemmaForCausalLM";
    gemma.default_act = "gelu_pytorch_tanh";
    gemma.gemma_norm = true;
    gemma.default_tied = true;
    gemma.default_head_dim = 256;
    gemma.default_kv_heads = 16;
    gemma.default_max_positions = 8192;
    f.push_back(gemma);

    FamilyTraits gemma2 = gemma;
    gemma2.model_type = "gemma2";
    gemma2.architecture = "Gemma2ForCausalLM";
    gemma2.sandwich_norm = true;
    gemma2.sliding = "alternate";  // layer_types, default: even layers sliding
    gemma2.default_kv_heads = 4;
    gemma2.default_window = 4096;
    f.push_back(gemma2);

    FamilyTraits phi3 = llama;
    phi3.model_type = "phi3";
    phi3.architecture = "Phi3ForCausalLM";
    phi3.bias_from_config = false;
    phi3.fused_projections = true;
    phi3.sliding = "all";
    phi3.default_eps = 1e-5;
    phi3.default_max_positions = 4096;
    f.push_back(phi3);
    return f;
  }();
  return kFamilies;
}

void require_positive(const json& j, const std::string& key, double value, const std::string& source) {
  if (!(value > 0) || !std::isfinite(value))
    throw InputError(source + ": field '" + key + "' must be a positive finite number");
}

}  // namespace

std::string supported_model_types() {
  std::string s;
  for (auto& f : families()) s += (s.empty() ? "" : ", ") + f.model_type;
  return s;
}

ModelConfig ModelConfig::from_json(const json& j, const std::string& source) {
  if (!j.is_object()) throw InputError(source + ": expected a JSON object");
  ModelConfig c;
  c.raw = j;
  c.model_type = json_get_or<std::string>(j, "model_type", "llama", source);
  const FamilyTraits* fam = nullptr;
  for (auto& f : families())
    if (f.model_type == c.model_type) fam = &f;
  if (!fam)
    throw InputError(source + ": model_type '" + c.model_type + "' is not supported (" + supported_model_types() + ")");
  c.family = *fam;
  // Gemma-2 names it hidden_activation, the others hidden_act.
  std::string act_key =
      j.contains("hidden_activation") && !j["hidden_activation"].is_null() ? "hidden_activation" : "hidden_act";
  c.hidden_act = json_get_or<std::string>(j, act_key, fam->default_act, source);
  if (c.hidden_act == "gelu_new" || c.hidden_act == "gelu_fast") c.hidden_act = "gelu_pytorch_tanh";
  if (c.hidden_act != "silu" && c.hidden_act != "gelu_pytorch_tanh")
    throw InputError(source + ": " + act_key + " '" + c.hidden_act + "' is not supported (silu, gelu_pytorch_tanh)");
  c.vocab_size = json_get<int64_t>(j, "vocab_size", source);
  c.hidden_size = json_get<int64_t>(j, "hidden_size", source);
  c.intermediate_size = json_get<int64_t>(j, "intermediate_size", source);
  c.num_hidden_layers = json_get<int64_t>(j, "num_hidden_layers", source);
  c.num_attention_heads = json_get<int64_t>(j, "num_attention_heads", source);
  bool has_kv = j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null();
  c.num_key_value_heads = has_kv ? json_get<int64_t>(j, "num_key_value_heads", source)
                                 : (fam->default_kv_heads > 0 ? fam->default_kv_heads : c.num_attention_heads);
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_hidden_layers <= 0 ||
      c.num_attention_heads <= 0 || c.num_key_value_heads <= 0)
    throw InputError(source + ": sizes must be positive");
  bool has_head_dim = j.contains("head_dim") && !j["head_dim"].is_null();
  c.head_dim = has_head_dim                ? json_get<int64_t>(j, "head_dim", source)
               : fam->default_head_dim > 0 ? fam->default_head_dim
                                           : c.hidden_size / c.num_attention_heads;
  if (c.head_dim <= 0 || c.head_dim % 2 != 0)
    throw InputError(source + ": head_dim must be positive and even for RoPE");
  if (!has_head_dim && fam->default_head_dim == 0 && c.hidden_size % c.num_attention_heads != 0)
    throw InputError(source + ": hidden_size is not divisible by num_attention_heads");
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    throw InputError(source + ": num_attention_heads is not a multiple of num_key_value_heads");
  c.max_position_embeddings = json_get_or<int64_t>(j, "max_position_embeddings", fam->default_max_positions, source);
  c.rms_norm_eps = json_get_or<double>(j, "rms_norm_eps", fam->default_eps, source);
  require_positive(j, "rms_norm_eps", c.rms_norm_eps, source);
  c.initializer_range = json_get_or<double>(j, "initializer_range", 0.02, source);
  c.tie_word_embeddings = json_get_or<bool>(j, "tie_word_embeddings", fam->default_tied, source);
  c.torch_dtype =
      json_get_or<std::string>(j, "torch_dtype", json_get_or<std::string>(j, "dtype", "float32", source), source);
  bool attention_bias = json_get_or<bool>(j, "attention_bias", false, source);
  c.qkv_bias = fam->always_qkv_bias || ((fam->bias_from_config || fam->gemma_norm) && attention_bias);
  c.o_bias = (fam->bias_from_config || fam->gemma_norm) && attention_bias;
  c.mlp_bias = fam->bias_from_config && json_get_or<bool>(j, "mlp_bias", false, source);

  // Rotary embeddings: transformers 5 keeps them in rope_parameters, earlier versions in
  // rope_theta + rope_scaling; both are read.
  const json* rp = nullptr;
  for (auto* key : {"rope_parameters", "rope_scaling"})
    if (!rp && j.contains(key) && j[key].is_object()) rp = &j[key];
  std::string what = source + ": rope parameters";
  c.rope_theta = json_get_or<double>(j, "rope_theta",
                                     rp ? json_get_or<double>(*rp, "rope_theta", 10000.0, what) : 10000.0, source);
  require_positive(j, "rope_theta", c.rope_theta, source);
  double partial = json_get_or<double>(j, "partial_rotary_factor",
                                       rp ? json_get_or<double>(*rp, "partial_rotary_factor", 1.0, what) : 1.0, source);
  if (!(partial > 0 && partial <= 1)) throw InputError(source + ": partial_rotary_factor must be in (0, 1]");
  c.rotary_dim = int64_t(double(c.head_dim) * partial);
  if (c.rotary_dim % 2 != 0 || c.rotary_dim == 0)
    throw InputError(source + ": head_dim * partial_rotary_factor must be even");
  if (rp) {
    c.rope_scaling.type =
        json_get_or<std::string>(*rp, "rope_type", json_get_or<std::string>(*rp, "type", "none", what), what);
    if (c.rope_scaling.type == "default") c.rope_scaling.type = "none";
    if (c.rope_scaling.type != "none" && c.rope_scaling.type != "linear" && c.rope_scaling.type != "llama3")
      throw InputError(what + ": type '" + c.rope_scaling.type + "' is not supported (default, linear, llama3)");
    c.rope_scaling.factor = json_get_or<double>(*rp, "factor", 1.0, what);
    c.rope_scaling.low_freq_factor = json_get_or<double>(*rp, "low_freq_factor", 1.0, what);
    c.rope_scaling.high_freq_factor = json_get_or<double>(*rp, "high_freq_factor", 4.0, what);
    c.rope_scaling.original_max_position_embeddings =
        json_get_or<int64_t>(*rp, "original_max_position_embeddings", 8192, what);
  }

  // Attention: scale, soft-capping and the per-layer sliding window.
  double scalar = json_get_or<double>(j, "query_pre_attn_scalar", 256.0, source);  // Gemma-2's default
  require_positive(j, "query_pre_attn_scalar", scalar, source);
  c.attn_scale = 1.0 / std::sqrt(fam->sandwich_norm ? scalar : double(c.head_dim));
  if (fam->sandwich_norm) {
    c.attn_logit_softcapping = j.contains("attn_logit_softcapping") && j["attn_logit_softcapping"].is_null()
                                   ? 0.0
                                   : json_get_or<double>(j, "attn_logit_softcapping", 50.0, source);
    c.final_logit_softcapping = j.contains("final_logit_softcapping") && j["final_logit_softcapping"].is_null()
                                    ? 0.0
                                    : json_get_or<double>(j, "final_logit_softcapping", 30.0, source);
  }
  if (c.attn_logit_softcapping < 0 || c.final_logit_softcapping < 0)
    throw InputError(source + ": soft-capping values must not be negative");
  // Absent: the family's default; null: none (except Gemma-2, whose layers need a window).
  bool has_window = j.contains("sliding_window") && !j["sliding_window"].is_null();
  int64_t window = has_window ? json_get<int64_t>(j, "sliding_window", source)
                   : j.contains("sliding_window") && fam->sliding != "alternate" ? 0
                                                                                 : fam->default_window;
  if (has_window && window <= 0) throw InputError(source + ": sliding_window must be positive (or null)");
  if (fam->sliding == "use_flag" && !json_get_or<bool>(j, "use_sliding_window", false, source)) window = 0;
  if (fam->sliding == "none") window = 0;
  c.layer_window.assign(size_t(c.num_hidden_layers), 0);
  if (j.contains("layer_types") && j["layer_types"].is_array() && window > 0) {
    const json& lt = j["layer_types"];
    if (int64_t(lt.size()) != c.num_hidden_layers)
      throw InputError(source + ": layer_types has " + std::to_string(lt.size()) + " entries for " +
                       std::to_string(c.num_hidden_layers) + " layers");
    for (size_t i = 0; i < lt.size(); ++i) {
      std::string t = lt[i].is_string() ? lt[i].get<std::string>() : "";
      if (t != "sliding_attention" && t != "full_attention")
        throw InputError(source + ": layer_types[" + std::to_string(i) +
                         "] must be sliding_attention or full_attention");
      c.layer_window[i] = t == "sliding_attention" ? window : 0;
    }
  } else if (window > 0) {
    int64_t first = fam->sliding == "use_flag" ? json_get_or<int64_t>(j, "max_window_layers", 28, source) : 0;
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      if (fam->sliding == "alternate")
        c.layer_window[size_t(i)] = (i + 1) % 2 ? window : 0;
      else if (i >= first)
        c.layer_window[size_t(i)] = window;
    }
  }
  c.sliding_window = window;

  if (j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
    if (j["eos_token_id"].is_array()) {
      for (auto& e : j["eos_token_id"]) {
        if (!e.is_number_integer()) throw InputError(source + ": field 'eos_token_id' must hold integers");
        c.eos_token_ids.push_back(e.get<int64_t>());
      }
    } else {
      c.eos_token_ids = {json_get<int64_t>(j, "eos_token_id", source)};
    }
  }
  c.bos_token_id = j.contains("bos_token_id") && j["bos_token_id"].is_null()
                       ? -1
                       : json_get_or<int64_t>(j, "bos_token_id", -1, source);
  return c;
}

json ModelConfig::to_json() const {
  json j = raw.is_object() ? raw : json::object();
  j["model_type"] = model_type;
  j["architectures"] = json::array({family.architecture});
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;  // always: families differ in its default
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  j["initializer_range"] = initializer_range;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["torch_dtype"] = torch_dtype;
  j[family.sandwich_norm ? "hidden_activation" : "hidden_act"] = hidden_act;
  if (family.bias_from_config) {
    j["attention_bias"] = o_bias;
    j["mlp_bias"] = mlp_bias;
  }
  if (!eos_token_ids.empty())
    j["eos_token_id"] = eos_token_ids.size() == 1 ? json(eos_token_ids[0]) : json(eos_token_ids);
  if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
  return j;
}

std::vector<std::string> ModelConfig::linear_modules() const {
  if (family.fused_projections) return {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"};
  return {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
}

int64_t ModelConfig::num_parameters() const {
  int64_t C = hidden_size, q = num_attention_heads * head_dim, kv = num_key_value_heads * head_dim;
  int64_t attn = C * q + 2 * C * kv + q * C + (qkv_bias ? q + 2 * kv : 0) + (o_bias ? C : 0);
  if (family.qk_norm) attn += 2 * head_dim;
  int64_t mlp = 3 * C * intermediate_size + (mlp_bias ? 2 * intermediate_size + C : 0);
  int64_t layer = attn + mlp + (family.sandwich_norm ? 4 : 2) * C;
  return num_hidden_layers * layer + vocab_size * C * (tie_word_embeddings ? 1 : 2) + C;
}

}  // namespace lethe
