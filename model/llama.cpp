#include "model/llama.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "common/error.h"
#include "model/lm_loss.h"

namespace lethe {

namespace F = torch::nn::functional;

torch::ScalarType parse_dtype(const std::string& name, const std::string& what) {
  if (name == "float32" || name == "fp32" || name == "float") return torch::kFloat;
  if (name == "bfloat16" || name == "bf16") return torch::kBFloat16;
  if (name == "float16" || name == "fp16") return torch::kHalf;
  throw InputError(what + ": unknown dtype '" + name + "' (float32, bfloat16, float16)");
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_, bool plus_one_) : eps(eps_), plus_one(plus_one_) {
  weight = register_parameter("weight", plus_one ? torch::zeros({dim}) : torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  auto h = x.to(torch::kFloat);
  h = h * torch::rsqrt(h.pow(2).mean(-1, true) + eps);
  // Llama casts back before the weight; Gemma scales by (1 + w) in float32, then casts
  // (both exactly as transformers does, which matters in bf16).
  if (plus_one) return (h * (1.0 + weight.to(torch::kFloat))).to(x.scalar_type());
  return weight * h.to(x.scalar_type());
}

AttentionImpl::AttentionImpl(const ModelConfig& c)
    : n_heads(c.num_attention_heads), n_kv_heads(c.num_key_value_heads), head_dim(c.head_dim), rotary_dim(c.rotary_dim),
      scale(c.attn_scale), softcap(c.attn_logit_softcapping) {
  const int64_t C = c.hidden_size, q = n_heads * head_dim, kv = n_kv_heads * head_dim;
  if (c.family.fused_projections) {
    qkv_proj = register_module("qkv_proj", Linear(C, q + 2 * kv, c.qkv_bias));
  } else {
    q_proj = register_module("q_proj", Linear(C, q, c.qkv_bias));
    k_proj = register_module("k_proj", Linear(C, kv, c.qkv_bias));
    v_proj = register_module("v_proj", Linear(C, kv, c.qkv_bias));
  }
  o_proj = register_module("o_proj", Linear(q, C, c.o_bias));
  if (c.family.qk_norm) {
    q_norm = register_module("q_norm", RMSNorm(head_dim, c.rms_norm_eps));
    k_norm = register_module("k_norm", RMSNorm(head_dim, c.rms_norm_eps));
  }
}

static torch::Tensor rotate_half(const torch::Tensor& x) {
  int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// RoPE on the first rotary_dim features of every head; the rest pass unrotated (Phi-3's
// partial_rotary_factor).
static torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                int64_t rotary_dim) {
  if (rotary_dim == x.size(-1)) return x * cos + rotate_half(x) * sin;
  auto rot = x.narrow(-1, 0, rotary_dim);
  auto pass = x.narrow(-1, rotary_dim, x.size(-1) - rotary_dim);
  return torch::cat({rot * cos + rotate_half(rot) * sin, pass}, -1);
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                     const torch::Tensor& mask, KVCache* cache, int64_t layer) {
  const int64_t B = x.size(0), T = x.size(1);
  torch::Tensor q, k, v;
  if (qkv_proj) {
    auto qkv = qkv_proj(x);
    q = qkv.narrow(-1, 0, n_heads * head_dim);
    k = qkv.narrow(-1, n_heads * head_dim, n_kv_heads * head_dim);
    v = qkv.narrow(-1, (n_heads + n_kv_heads) * head_dim, n_kv_heads * head_dim);
  } else {
    q = q_proj(x), k = k_proj(x), v = v_proj(x);
  }
  q = q.view({B, T, n_heads, head_dim});
  k = k.view({B, T, n_kv_heads, head_dim});
  if (q_norm) {  // per head, before RoPE
    q = q_norm(q);
    k = k_norm(k);
  }
  q = apply_rope(q.transpose(1, 2), cos, sin, rotary_dim);  // [B, H, T, D]
  k = apply_rope(k.transpose(1, 2), cos, sin, rotary_dim);  // [B, K, T, D]
  v = v.view({B, T, n_kv_heads, head_dim}).transpose(1, 2);
  if (cache) {
    if (cache->k[layer].defined()) {
      k = torch::cat({cache->k[layer], k}, 2);
      v = torch::cat({cache->v[layer], v}, 2);
    }
    cache->k[layer] = k;
    cache->v[layer] = v;
  }
  torch::Tensor out;
  if (softcap > 0) {
    // Gemma-2 caps the scores before the mask, which no fused kernel does: materialise them.
    const int64_t groups = n_heads / n_kv_heads;
    if (groups > 1) {
      k = k.repeat_interleave(groups, 1);
      v = v.repeat_interleave(groups, 1);
    }
    auto scores = torch::matmul(q, k.transpose(2, 3)) * scale;  // [B, H, T, S]
    scores = torch::tanh(scores / softcap) * softcap + mask;
    auto probs = torch::softmax(scores, -1, torch::kFloat).to(q.scalar_type());
    out = torch::matmul(probs, v);
  } else {
    // Fused attention (flash / memory-efficient on CUDA, the flash CPU kernel on CPU); the
    // kernel serves grouped-query heads without copying K and V. No mask: plain causal
    // attention (is_causal), which lets the flash kernels run; otherwise the additive mask.
    out = at::scaled_dot_product_attention(q, k, v, mask.defined() ? std::optional<torch::Tensor>(mask) : std::nullopt,
                                           0.0, !mask.defined(), scale, n_heads != n_kv_heads);
  }
  return o_proj(out.transpose(1, 2).reshape({B, T, n_heads * head_dim}));
}

MLPImpl::MLPImpl(const ModelConfig& c) : gelu(c.hidden_act == "gelu_pytorch_tanh") {
  const int64_t C = c.hidden_size, I = c.intermediate_size;
  if (c.family.fused_projections) {
    gate_up_proj = register_module("gate_up_proj", Linear(C, 2 * I, c.mlp_bias));
  } else {
    gate_proj = register_module("gate_proj", Linear(C, I, c.mlp_bias));
    up_proj = register_module("up_proj", Linear(C, I, c.mlp_bias));
  }
  down_proj = register_module("down_proj", Linear(I, C, c.mlp_bias));
}

torch::Tensor MLPImpl::forward(const torch::Tensor& x) {
  torch::Tensor gate, up;
  if (gate_up_proj) {
    auto gu = gate_up_proj(x).chunk(2, -1);  // Phi-3: the gate is the first half
    gate = gu[0], up = gu[1];
  } else {
    gate = gate_proj(x), up = up_proj(x);
  }
  gate = gelu ? at::gelu(gate, "tanh") : F::silu(gate);  // GeGLU or SwiGLU
  return down_proj(gate * up);
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c) {
  const bool g = c.family.gemma_norm;
  self_attn = register_module("self_attn", Attention(c));
  mlp = register_module("mlp", MLP(c));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, g));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, g));
  if (c.family.sandwich_norm) {
    pre_feedforward_layernorm = register_module("pre_feedforward_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, g));
    post_feedforward_layernorm =
        register_module("post_feedforward_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, g));
  }
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                        const torch::Tensor& mask, KVCache* cache, int64_t layer) {
  if (pre_feedforward_layernorm) {  // Gemma-2
    auto h = x + post_attention_layernorm(self_attn(input_layernorm(x), cos, sin, mask, cache, layer));
    return h + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(h)));
  }
  auto h = x + self_attn(input_layernorm(x), cos, sin, mask, cache, layer);
  return h + mlp(post_attention_layernorm(h));
}

DecoderImpl::DecoderImpl(const ModelConfig& c) {
  // Created empty like every other weight (init_weights or a checkpoint fills it): the module's
  // default N(0, 1) draw would cost a pass over the largest matrix on every load.
  embed_tokens =
      register_module("embed_tokens", torch::nn::Embedding(torch::nn::EmbeddingOptions(c.vocab_size, c.hidden_size)
                                                               ._weight(torch::empty({c.vocab_size, c.hidden_size}))));
  layers_list = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layers.push_back(DecoderLayer(c));
    layers_list->push_back(layers.back());
  }
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps, c.family.gemma_norm));
  if (c.family.gemma_norm) embed_scale = std::sqrt(double(c.hidden_size));
}

torch::Tensor rope_inv_freq(const ModelConfig& c) {
  const int64_t D = c.rotary_dim;
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

std::pair<torch::Tensor, torch::Tensor> CausalLMImpl::rope(const torch::Tensor& positions,
                                                           torch::ScalarType dtype) const {
  auto pos = positions.to(torch::kFloat);
  if (config.rope_scaling.type == "linear") pos = pos / config.rope_scaling.factor;
  auto freqs = pos.unsqueeze(-1) * inv_freq.to(torch::kFloat);  // [T, D/2] or [B, T, D/2]
  auto emb = torch::cat({freqs, freqs}, -1);                    // [(B,) T, D]
  const int64_t rows = positions.dim() == 2 ? positions.size(0) : 1;
  return {emb.cos().to(dtype).view({rows, 1, -1, emb.size(-1)}), emb.sin().to(dtype).view({rows, 1, -1, emb.size(-1)})};
}

// Every row of a [B, S] 0/1 mask is ones then zeros (right padding, or none).
static bool padded_at_end(const torch::Tensor& mask) {
  if (mask.size(1) < 2) return true;
  auto m = mask.to(torch::kBool);
  return m.narrow(1, 0, m.size(1) - 1).ge(m.narrow(1, 1, m.size(1) - 1)).all().item<bool>();
}

torch::Tensor CausalLMImpl::attention_mask_for(int64_t window, const torch::Tensor& positions, int64_t S,
                                               const torch::Tensor& key_mask, int64_t B,
                                               torch::ScalarType dtype) const {
  const int64_t T = positions.size(0);
  auto qpos = positions.view({T, 1}), kpos = torch::arange(0, S, positions.options()).view({1, S});
  auto allowed = kpos <= qpos;
  if (window > 0) allowed = allowed.logical_and(qpos - kpos < window);  // as transformers: q - k < window
  auto allowed4 = allowed.view({1, 1, T, S}).expand({B, 1, T, S});
  if (key_mask.defined()) allowed4 = allowed4.logical_and(key_mask.to(torch::kBool).view({B, 1, 1, S}));
  double neg = dtype == torch::kFloat ? -3.4028234663852886e38 : -3.3895313892515355e38;
  if (dtype == torch::kHalf) neg = -65504.0;
  auto opts = torch::TensorOptions().dtype(dtype).device(positions.device());
  return torch::zeros({B, 1, T, S}, opts).masked_fill(allowed4.logical_not(), neg);
}

torch::Tensor CausalLMImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask, KVCache* cache,
                                    std::vector<torch::Tensor>* hidden_states) {
  auto logits = torch::matmul(hidden(input_ids, attention_mask, cache, hidden_states), lm_head_weight().t());
  const double cap = config.final_logit_softcapping;
  if (cap > 0) logits = torch::tanh(logits / cap) * cap;  // Gemma-2
  return logits;
}

TokenLoss CausalLMImpl::answer_loss(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                    const torch::Tensor& labels, bool with_accuracy) {
  return answer_loss_from_hidden(hidden(input_ids, attention_mask), labels, with_accuracy);
}

TokenLoss CausalLMImpl::answer_loss_from_hidden(const torch::Tensor& h, const torch::Tensor& labels,
                                                bool with_accuracy) {
  AnswerRows a = answer_rows(h, labels);
  VocabNll v = vocab_nll(a.rows, lm_head_weight(), a.targets, config.final_logit_softcapping, with_accuracy);
  TokenLoss tl;
  tl.nll = a.scatter(v.nll);
  tl.mask = a.mask;
  if (with_accuracy) tl.correct = a.scatter(v.correct);
  return tl;
}

torch::Tensor CausalLMImpl::hidden(const torch::Tensor& input_ids, const torch::Tensor& attention_mask, KVCache* cache,
                                   std::vector<torch::Tensor>* hidden_states) {
  return model->norm(run_layers(input_ids, attention_mask, cache, hidden_states, model->layers.size()));
}

torch::Tensor CausalLMImpl::layer_output(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                         int64_t layer) {
  TORCH_CHECK(layer >= 0 && layer < int64_t(model->layers.size()), "layer_output: no decoder layer ", layer);
  return run_layers(input_ids, attention_mask, nullptr, nullptr, size_t(layer) + 1);
}

torch::Tensor CausalLMImpl::run_layers(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                       KVCache* cache, std::vector<torch::Tensor>* hidden_states, size_t n_layers) {
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  const int64_t past = cache ? cache->length : 0, S = past + T;
  if (cache && cache->k.empty()) {
    cache->k.resize(model->layers.size());
    cache->v.resize(model->layers.size());
  }
  auto x = model->embed_tokens(input_ids);
  const auto dtype = x.scalar_type();
  if (model->embed_scale > 0)  // the scale is rounded to the model's dtype first, as transformers does
    x = x * torch::tensor(model->embed_scale, torch::kFloat).to(dtype);
  const auto on = torch::TensorOptions().dtype(torch::kLong).device(input_ids.device());
  auto positions = torch::arange(past, S, on);  // cache indices: the masks' causal order
  auto rope_positions = positions;
  if (cache && cache->position_offset.defined())
    rope_positions = (positions.view({1, T}) - cache->position_offset.view({B, 1})).clamp_min(0);
  auto [cos, sin] = rope(rope_positions, dtype);
  if (attention_mask.defined())
    TORCH_CHECK(attention_mask.size(1) == S, "attention_mask must cover past and current tokens");

  // One additive mask per distinct window (full causal, and the sliding layers' window). Full
  // causal layers need none when every row's padding is at its end (collate's layout) and no
  // cache holds earlier tokens: a real token's keys are then all real, and causal attention
  // without a mask (the flash kernels) computes them alike; pad positions carry no loss.
  const bool plain_causal =
      !cache && config.attn_logit_softcapping <= 0 && (!attention_mask.defined() || padded_at_end(attention_mask));
  std::map<int64_t, torch::Tensor> masks;
  for (auto w : config.layer_window)
    if (!masks.count(w))
      masks[w] =
          w == 0 && plain_causal ? torch::Tensor() : attention_mask_for(w, positions, S, attention_mask, B, dtype);

  for (size_t i = 0; i < n_layers; ++i) {
    const auto& mask = masks.at(config.layer_window[i]);
    x = layer_runner ? layer_runner(int64_t(i), x, cos, sin, mask, cache)
                     : model->layers[i](x, cos, sin, mask, cache, int64_t(i));
    if (hidden_states) hidden_states->push_back(x);
  }
  if (cache) cache->length = S;
  return x;
}

void CausalLMImpl::init_weights(uint64_t seed) {
  torch::NoGradGuard ng;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& [name, p] : named_weights()) {
    if (name.find("norm") != std::string::npos)
      p.fill_(config.family.gemma_norm ? 0.0 : 1.0);  // scale 1
    else if (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0)
      p.zero_();
    else
      p.normal_(0.0, config.initializer_range, gen);
  }
}

void CausalLMImpl::add_lora(const LoraOptions& opt) {
  for (auto& p : parameters()) p.set_requires_grad(false);
  auto gen = at::detail::createCPUGenerator(opt.seed);
  const auto known = config.linear_modules();
  const auto targets = opt.target_modules.empty() ? known : opt.target_modules;
  for (auto& t : targets)
    if (std::find(known.begin(), known.end(), t) == known.end()) {
      std::string list;
      for (auto& k : known) list += (list.empty() ? "" : ", ") + k;
      throw InputError("--lora-target: '" + t + "' is not a linear module of a " + config.model_type +
                       " decoder layer (" + list + ")");
    }
  for (auto& [name, lin] : linear_layers()) {
    std::string leaf = name.substr(name.rfind('.') + 1);
    if (std::find(targets.begin(), targets.end(), leaf) != targets.end()) lin->add_lora(opt, gen);
  }
}

std::vector<std::pair<std::string, LinearImpl*>> CausalLMImpl::linear_layers() const {
  std::vector<std::pair<std::string, LinearImpl*>> out;
  for (auto& item : named_modules())
    if (auto* lin = dynamic_cast<LinearImpl*>(item.value().get())) out.emplace_back(item.key(), lin);
  return out;
}

void CausalLMImpl::merge_lora() {
  for (auto& [name, lin] : linear_layers()) lin->merge_lora();
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

namespace {
class MapSource : public WeightSource {
 public:
  explicit MapSource(const std::map<std::string, torch::Tensor>& m) : m_(m) {}
  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    for (auto& kv : m_) out.push_back(kv.first);
    return out;
  }
  std::vector<int64_t> shape(const std::string& name) const override { return m_.at(name).sizes().vec(); }
  torch::Tensor read(const std::string& name) const override { return m_.at(name); }

 private:
  const std::map<std::string, torch::Tensor>& m_;
};
}  // namespace

void CausalLMImpl::load_weights(const std::map<std::string, torch::Tensor>& weights, const std::string& source) {
  load_weights(MapSource(weights), source);
}

void CausalLMImpl::load_weights(const WeightSource& weights, const std::string& source,
                                const DeferredWeights* deferred) {
  torch::NoGradGuard ng;
  const auto names = weights.names();
  const std::set<std::string> available(names.begin(), names.end());
  // Names and shapes first, from the headers: nothing is read when the checkpoint does not fit.
  std::vector<std::string> missing;
  std::set<std::string> known;
  auto params = named_weights();
  for (auto& [name, p] : params) {
    known.insert(name);
    if (!available.count(name)) {
      missing.push_back(name);
      continue;
    }
    const auto shape = weights.shape(name);
    const c10::IntArrayRef expected = deferred && deferred->has(name) ? deferred->shapes.at(name) : p.sizes();
    if (c10::IntArrayRef(shape) != expected) {
      std::ostringstream ss;
      ss << source << ": tensor '" << name << "' has shape " << c10::IntArrayRef(shape) << ", the model config expects "
         << expected;
      throw InputError(ss.str());
    }
  }
  if (!missing.empty())
    throw InputError(source + ": missing tensor '" + missing[0] + "'" +
                     (missing.size() > 1 ? " and " + std::to_string(missing.size() - 1) + " more" : ""));
  for (auto& name : names) {
    // HF keeps lm_head.weight in some tied checkpoints; it is ignored like HF ignores it.
    if (!known.count(name) && !(config.tie_word_embeddings && name == "lm_head.weight") &&
        name.find("rotary_emb.inv_freq") == std::string::npos)
      throw InputError(source + ": unexpected tensor '" + name + "' for this model config");
  }
  for (auto& [name, p] : params)  // one tensor at a time, if any
    if (!(deferred && deferred->has(name))) weights.read_into(name, p);
}

TokenLoss token_loss(const torch::Tensor& logits, const torch::Tensor& labels, bool with_accuracy) {
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
  if (with_accuracy) tl.correct = (lg.argmax(-1) == safe).to(torch::kFloat) * maskf;
  return tl;
}

torch::Tensor item_sum_nll(const TokenLoss& tl) { return tl.nll.sum(1); }

torch::Tensor item_mean_nll(const TokenLoss& tl) { return tl.nll.sum(1) / tl.mask.sum(1).clamp_min(1.0); }

torch::Tensor pooled_mean_nll(const TokenLoss& tl) { return tl.nll.sum() / tl.mask.sum().clamp_min(1.0); }

CausalLMImpl::ParameterBlock CausalLMImpl::parameter_block(const std::string& name) {
  const std::string layers = "model.layers.";
  if (name.compare(0, layers.size(), layers) == 0) {
    const size_t end = name.find('.', layers.size());
    return {name.substr(0, end), std::stoll(name.substr(layers.size(), end - layers.size()))};
  }
  return {name.substr(0, name.rfind('.')), -1};  // one block per module (names unique per block)
}

}  // namespace lethe
