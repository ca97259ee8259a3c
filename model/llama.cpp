#include "model/llama.h"

#include <cmath>
#include <set>

#include "common/error.h"

namespace lethe {

namespace F = torch::nn::functional;

torch::ScalarType parse_dtype(const std::string& name, const std::string& what) {
  if (name == "float32" || name == "fp32" || name == "float") return torch::kFloat;
  if (name == "bfloat16" || name == "bf16") return torch::kBFloat16;
  if (name == "float16" || name == "fp16") return torch::kHalf;
  throw InputError(what + ": unknown dtype '" + name + "' (float32, bfloat16, float16)");
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  // Normalise in float32 and cast back before the weight, as HF's LlamaRMSNorm does.
  auto h = x.to(torch::kFloat);
  h = h * torch::rsqrt(h.pow(2).mean(-1, true) + eps);
  return weight * h.to(x.scalar_type());
}

AttentionImpl::AttentionImpl(const ModelConfig& c)
    : n_heads(c.num_attention_heads), n_kv_heads(c.num_key_value_heads), head_dim(c.head_dim) {
  q_proj = register_module("q_proj", Linear(c.hidden_size, n_heads * head_dim, c.qkv_bias));
  k_proj = register_module("k_proj", Linear(c.hidden_size, n_kv_heads * head_dim, c.qkv_bias));
  v_proj = register_module("v_proj", Linear(c.hidden_size, n_kv_heads * head_dim, c.qkv_bias));
  o_proj = register_module("o_proj", Linear(n_heads * head_dim, c.hidden_size, c.o_bias));
}

static torch::Tensor rotate_half(const torch::Tensor& x) {
  int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                     const torch::Tensor& mask, KVCache* cache, int64_t layer) {
  const int64_t B = x.size(0), T = x.size(1);
  auto q = q_proj(x).view({B, T, n_heads, head_dim}).transpose(1, 2);     // [B, H, T, D]
  auto k = k_proj(x).view({B, T, n_kv_heads, head_dim}).transpose(1, 2);  // [B, K, T, D]
  auto v = v_proj(x).view({B, T, n_kv_heads, head_dim}).transpose(1, 2);
  q = q * cos + rotate_half(q) * sin;
  k = k * cos + rotate_half(k) * sin;
  if (cache) {
    if (cache->k[layer].defined()) {
      k = torch::cat({cache->k[layer], k}, 2);
      v = torch::cat({cache->v[layer], v}, 2);
    }
    cache->k[layer] = k;
    cache->v[layer] = v;
  }
  const int64_t groups = n_heads / n_kv_heads;
  if (groups > 1) {  // grouped-query attention: each kv head serves `groups` query heads
    k = k.repeat_interleave(groups, 1);
    v = v.repeat_interleave(groups, 1);
  }
  auto scores = torch::matmul(q, k.transpose(2, 3)) * (1.0 / std::sqrt(double(head_dim)));  // [B, H, T, S]
  scores = scores + mask;
  auto probs = torch::softmax(scores, -1, torch::kFloat).to(q.scalar_type());
  auto out = torch::matmul(probs, v).transpose(1, 2).reshape({B, T, n_heads * head_dim});
  return o_proj(out);
}

MLPImpl::MLPImpl(const ModelConfig& c) {
  gate_proj = register_module("gate_proj", Linear(c.hidden_size, c.intermediate_size, c.mlp_bias));
  up_proj = register_module("up_proj", Linear(c.hidden_size, c.intermediate_size, c.mlp_bias));
  down_proj = register_module("down_proj", Linear(c.intermediate_size, c.hidden_size, c.mlp_bias));
}

torch::Tensor MLPImpl::forward(const torch::Tensor& x) {
  return down_proj(F::silu(gate_proj(x)) * up_proj(x));  // SwiGLU
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c) {
  self_attn = register_module("self_attn", Attention(c));
  mlp = register_module("mlp", MLP(c));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                        const torch::Tensor& mask, KVCache* cache, int64_t layer) {
  auto h = x + self_attn(input_layernorm(x), cos, sin, mask, cache, layer);
  return h + mlp(post_attention_layernorm(h));
}

DecoderImpl::DecoderImpl(const ModelConfig& c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  layers_list = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layers.push_back(DecoderLayer(c));
    layers_list->push_back(layers.back());
  }
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

torch::Tensor rope_inv_freq(const ModelConfig& c) {
  const int64_t D = c.head_dim;
  auto inv = 1.0 / torch::pow(torch::tensor(c.rope_theta, torch::kFloat),
                              torch::arange(0, D, 2, torch::kLong).to(torch::kFloat) / double(D));
  const RopeScaling& rs = c.rope_scaling;
  if (rs.type == "llama3") {
    // Llama-3.1: long wavelengths are divided by `factor`, short ones kept, and the band in
    // between interpolated smoothly.
    double old_ctx = double(rs.original_max_position_embeddings);
    double low_wavelen = old_ctx / rs.low_freq_factor, high_wavelen = old_ctx / rs.high_freq_factor;
    auto wavelen = 2.0 * M_PI / inv;
    auto scaled = torch::where(wavelen > low_wavelen, inv / rs.factor, inv);
    auto smooth = (old_ctx / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
    auto smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled;
    auto medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
    inv = torch::where(medium, smoothed, scaled);
  }
  return inv;
}

CausalLMImpl::CausalLMImpl(const ModelConfig& c) : config(c) {
  model = register_module("model", Decoder(c));
  if (!c.tie_word_embeddings) lm_head = register_parameter("lm_head", torch::empty({c.vocab_size, c.hidden_size}));
  inv_freq = register_buffer("inv_freq", rope_inv_freq(c));
}

torch::Tensor CausalLMImpl::lm_head_weight() const {
  return config.tie_word_embeddings ? model->embed_tokens->weight : lm_head;
}

std::pair<torch::Tensor, torch::Tensor> CausalLMImpl::rope(const torch::Tensor& positions, torch::ScalarType dtype) const {
  auto pos = positions.to(torch::kFloat);
  if (config.rope_scaling.type == "linear") pos = pos / config.rope_scaling.factor;
  auto freqs = torch::outer(pos, inv_freq.to(torch::kFloat));  // [T, D/2]
  auto emb = torch::cat({freqs, freqs}, -1);                     // [T, D]
  return {emb.cos().to(dtype).view({1, 1, -1, emb.size(-1)}), emb.sin().to(dtype).view({1, 1, -1, emb.size(-1)})};
}

torch::Tensor CausalLMImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask, KVCache* cache,
                                    std::vector<torch::Tensor>* hidden_states) {
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  const int64_t past = cache ? cache->length : 0, S = past + T;
  if (cache && cache->k.empty()) {
    cache->k.resize(model->layers.size());
    cache->v.resize(model->layers.size());
  }
  auto x = model->embed_tokens(input_ids);
  const auto dtype = x.scalar_type();
  const auto on = torch::TensorOptions().dtype(torch::kLong).device(input_ids.device());
  auto positions = torch::arange(past, S, on);
  auto [cos, sin] = rope(positions, dtype);

  // Additive mask [B, 1, T, S]: causal, optional sliding window, key padding.
  auto qpos = positions.view({T, 1}), kpos = torch::arange(0, S, on).view({1, S});
  auto allowed = kpos <= qpos;
  if (config.sliding_window > 0) allowed = allowed.logical_and(qpos - kpos < config.sliding_window);
  auto allowed4 = allowed.view({1, 1, T, S}).expand({B, 1, T, S});
  if (attention_mask.defined()) {
    TORCH_CHECK(attention_mask.size(1) == S, "attention_mask must cover past and current tokens");
    allowed4 = allowed4.logical_and(attention_mask.to(torch::kBool).view({B, 1, 1, S}));
  }
  double neg = dtype == torch::kFloat ? -3.4028234663852886e38 : -3.3895313892515355e38;
  if (dtype == torch::kHalf) neg = -65504.0;
  auto mask = torch::zeros({B, 1, T, S}, x.options()).masked_fill(allowed4.logical_not(), neg);

  for (size_t i = 0; i < model->layers.size(); ++i) {
    x = layer_runner ? layer_runner(int64_t(i), x, cos, sin, mask, cache)
                     : model->layers[i](x, cos, sin, mask, cache, int64_t(i));
    if (hidden_states) hidden_states->push_back(x);
  }
  if (cache) cache->length = S;
  x = model->norm(x);
  return torch::matmul(x, lm_head_weight().t());
}

void CausalLMImpl::init_weights(uint64_t seed) {
  torch::NoGradGuard ng;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& [name, p] : named_weights()) {
    if (name.find("norm") != std::string::npos) p.fill_(1.0);
    else if (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0) p.zero_();
    else p.normal_(0.0, config.initializer_range, gen);
  }
}

void CausalLMImpl::add_lora(const LoraOptions& opt) {
  for (auto& p : parameters()) p.set_requires_grad(false);
  auto gen = at::detail::createCPUGenerator(opt.seed);
  int64_t n = 0;
  for (auto& item : named_modules()) {
    auto* lin = dynamic_cast<LinearImpl*>(item.value().get());
    if (!lin) continue;
    std::string leaf = item.key().substr(item.key().rfind('.') + 1);
    for (auto& t : opt.target_modules)
      if (leaf == t) {
        lin->add_lora(opt, gen);
        ++n;
      }
  }
  if (n == 0) throw InputError("--lora-target matched no linear layer");
}

void CausalLMImpl::merge_lora() {
  for (auto& item : named_modules())
    if (auto* lin = dynamic_cast<LinearImpl*>(item.value().get())) lin->merge_lora();
  for (auto& p : parameters()) p.set_requires_grad(true);
}

std::vector<std::pair<std::string, torch::Tensor>> CausalLMImpl::named_weights() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& item : named_parameters(true)) {
    std::string name = item.key();
    if (name == "lm_head") name = "lm_head.weight";
    out.emplace_back(name, item.value());
  }
  return out;
}

std::vector<torch::Tensor> CausalLMImpl::trainable_parameters() const {
  std::vector<torch::Tensor> out;
  for (auto& p : parameters())
    if (p.requires_grad()) out.push_back(p);
  return out;
}

void CausalLMImpl::load_weights(const std::map<std::string, torch::Tensor>& weights, const std::string& source) {
  torch::NoGradGuard ng;
  std::vector<std::string> missing;
  std::set<std::string> known;
  for (auto& [name, p] : named_weights()) {
    known.insert(name);
    auto it = weights.find(name);
    if (it == weights.end()) {
      missing.push_back(name);
      continue;
    }
    if (it->second.sizes() != p.sizes()) {
      std::ostringstream ss;
      ss << source << ": tensor '" << name << "' has shape " << it->second.sizes() << ", the model config expects "
         << p.sizes();
      throw InputError(ss.str());
    }
    p.copy_(it->second);
  }
  if (!missing.empty())
    throw InputError(source + ": missing tensor '" + missing[0] + "'" +
                     (missing.size() > 1 ? " and " + std::to_string(missing.size() - 1) + " more" : ""));
  for (auto& [name, t] : weights) {
    // HF keeps lm_head.weight in some tied checkpoints; it is ignored like HF ignores it.
    if (!known.count(name) && !(config.tie_word_embeddings && name == "lm_head.weight") &&
        name.find("rotary_emb.inv_freq") == std::string::npos)
      throw InputError(source + ": unexpected tensor '" + name + "' for this model config");
  }
}

TokenLoss token_loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  const int64_t T = logits.size(1);
  auto lg = logits.narrow(1, 0, T - 1).to(torch::kFloat);
  auto lb = labels.narrow(1, 1, T - 1);
  auto mask = lb.ne(-100);
  auto safe = lb.clamp_min(0);
  auto logp = torch::log_softmax(lg, -1);
  auto nll = -logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1);
  auto maskf = mask.to(torch::kFloat);
  TokenLoss tl;
  tl.nll = nll * maskf;
  tl.mask = maskf;
  tl.correct = (lg.argmax(-1) == safe).to(torch::kFloat) * maskf;
  return tl;
}

torch::Tensor item_sum_nll(const TokenLoss& tl) { return tl.nll.sum(1); }

torch::Tensor item_mean_nll(const TokenLoss& tl) { return tl.nll.sum(1) / tl.mask.sum(1).clamp_min(1.0); }

torch::Tensor pooled_mean_nll(const TokenLoss& tl) { return tl.nll.sum() / tl.mask.sum().clamp_min(1.0); }

}  // namespace lethe
