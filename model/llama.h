// Decoder-only transformer of the Llama family (Llama-2/3, Mistral, Qwen2/3, Gemma/Gemma-2,
// Phi-3; what differs is in ModelConfig::family) with Hugging Face parameter names, so
// checkpoints map one to one:
//   model.embed_tokens.weight, model.layers.{i}.self_attn.{q,k,v,o}_proj.{weight,bias}
//   (Phi-3: qkv_proj), self_attn.{q,k}_norm.weight (Qwen3),
//   model.layers.{i}.mlp.{gate,up,down}_proj.weight (Phi-3: gate_up_proj),
//   model.layers.{i}.{input,post_attention}_layernorm.weight,
//   model.layers.{i}.{pre,post}_feedforward_layernorm.weight (Gemma-2),
//   model.norm.weight, lm_head.weight (absent when embeddings are tied).
// Shapes: B batch, T query length, S key length, C hidden, H heads, K kv heads, D head_dim, V vocab.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/lora.h"

namespace lethe {

// Per-layer key/value cache for incremental decoding.
struct KVCache {
  std::vector<torch::Tensor> k, v;  // [B, K, S, D] per layer
  int64_t length = 0;
  // Batched decoding of left-padded prompts: row b's first real token sits at cache index
  // position_offset[b] ([B] int64), and RoPE positions count from there (undefined: from 0).
  torch::Tensor position_offset;
};

class RMSNormImpl : public torch::nn::Module {
 public:
  // plus_one: Gemma's (1 + w) scale, applied in float32 before the cast back.
  RMSNormImpl(int64_t dim, double eps, bool plus_one = false);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
  bool plus_one;
};
TORCH_MODULE(RMSNorm);

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const ModelConfig& c);
  // mask: additive [B, 1, T, S] in x's dtype.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask, KVCache* cache, int64_t layer);
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  Linear qkv_proj{nullptr};                  // Phi-3: [q; k; v] in one projection
  RMSNorm q_norm{nullptr}, k_norm{nullptr};  // Qwen3
  int64_t n_heads, n_kv_heads, head_dim, rotary_dim;
  double scale, softcap;
};
TORCH_MODULE(Attention);

class MLPImpl : public torch::nn::Module {
 public:
  explicit MLPImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x);
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
  Linear gate_up_proj{nullptr};  // Phi-3: [gate; up] in one projection
  bool gelu;                     // GeGLU (tanh approximation) instead of SwiGLU
};
TORCH_MODULE(MLP);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  explicit DecoderLayerImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask, KVCache* cache, int64_t layer);
  Attention self_attn{nullptr};
  MLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  // Gemma-2's sandwich: post_attention_layernorm normalises the attention output, and these two
  // wrap the MLP.
  RMSNorm pre_feedforward_layernorm{nullptr}, post_feedforward_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

class DecoderImpl : public torch::nn::Module {
 public:
  explicit DecoderImpl(const ModelConfig& c);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers_list{nullptr};
  std::vector<DecoderLayer> layers;
  RMSNorm norm{nullptr};
  double embed_scale = 0;  // Gemma: embeddings times sqrt(C), rounded to the model's dtype; 0: off
};
TORCH_MODULE(Decoder);

// Answer-masked causal-LM loss pieces. labels [B, T] with -100 at ignored positions
// (prompt, padding); the logits at position t predict labels at t + 1.
struct TokenLoss {
  torch::Tensor nll;      // [B, T-1] float32, 0 where masked
  torch::Tensor mask;     // [B, T-1] float32, 1 on answer tokens
  torch::Tensor correct;  // [B, T-1] float32, argmax == label on answer tokens (with_accuracy only)
};

// What load_weights reads from: the names it holds, their shapes, and each tensor on demand,
// so a checkpoint streams into the model one tensor at a time (no second copy of the model).
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual std::vector<std::string> names() const = 0;
  virtual std::vector<int64_t> shape(const std::string& name) const = 0;
  virtual torch::Tensor read(const std::string& name) const = 0;
  // Into the parameter's storage; sources that can read without a temporary override it.
  virtual void read_into(const std::string& name, torch::Tensor dst) const { dst.copy_(read(name)); }
};

// Weights a model was built without: at ZeRO 3 each rank reads its shard of the decoder layers
// straight from the checkpoint (dist/data_parallel.h), so no rank holds them whole. Their
// parameters are empty; `shapes` has what they stand for, and the source reads any range of a
// flattened tensor's elements, or single elements, in the stored dtype.
struct DeferredWeights {
  std::map<std::string, std::vector<int64_t>> shapes;  // by weight name
  std::function<torch::Tensor(const std::string& name, int64_t first, int64_t count)> read_range;
  std::function<torch::Tensor(const std::string& name, const std::vector<int64_t>& index)> read_elements;
  bool has(const std::string& name) const { return shapes.count(name) > 0; }
};

class CausalLMImpl : public torch::nn::Module {
 public:
  explicit CausalLMImpl(const ModelConfig& c);
  // input_ids [B, T] int64; attention_mask [B, T] (1 = token, 0 = padding) or undefined.
  // With a cache, positions continue from cache->length and the cache is extended.
  // hidden_states, when given, receives the output of every decoder layer ([B, T, C] each).
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                        KVCache* cache = nullptr, std::vector<torch::Tensor>* hidden_states = nullptr);
  // forward() up to the final norm: [B, T, C], no vocabulary projection.
  torch::Tensor hidden(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                       KVCache* cache = nullptr, std::vector<torch::Tensor>* hidden_states = nullptr);
  // token_loss(forward(input_ids, attention_mask), labels, with_accuracy), with the vocabulary
  // projection and cross-entropy on the answer positions only, in chunks (model/lm_loss.h):
  // no [B, T, V] logits. What training and evaluation use.
  TokenLoss answer_loss(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                        const torch::Tensor& labels, bool with_accuracy = false);
  // The same from hidden states [B, T, C] that went through the final norm (the logit lens reads
  // each decoder layer's output this way).
  TokenLoss answer_loss_from_hidden(const torch::Tensor& h, const torch::Tensor& labels, bool with_accuracy = false);
  // The output of decoder layer `layer` ([B, T, C]), as hidden_states[layer] of forward(): no
  // later layer, final norm or vocabulary projection runs (RMU reads one layer's activations).
  torch::Tensor layer_output(const torch::Tensor& input_ids, const torch::Tensor& attention_mask, int64_t layer);

  void init_weights(uint64_t seed);
  void add_lora(const LoraOptions& opt);  // freezes the base weights, adapters trainable
  void merge_lora();                      // folds adapters into the weights; all trainable again
  // Every linear layer (qualified module name, the layer), in module order; with has_lora(), the
  // adapted ones.
  std::vector<std::pair<std::string, LinearImpl*>> linear_layers() const;
  // Parameters in HF naming, in a stable order; excludes lm_head when tied.
  std::vector<std::pair<std::string, torch::Tensor>> named_weights() const;
  // The unit a parameter belongs to for the data-parallel engine: its decoder layer
  // ("model.layers.3", layer 3) or its module ("model.embed_tokens", "lm_head"; layer -1).
  struct ParameterBlock {
    std::string name;
    int64_t layer = -1;
  };
  static ParameterBlock parameter_block(const std::string& param_name);
  std::vector<torch::Tensor> trainable_parameters() const;
  // Copies `weights` in; throws InputError naming missing/unexpected/mis-shaped tensors.
  void load_weights(const std::map<std::string, torch::Tensor>& weights, const std::string& source);
  // Checks every name and shape before reading anything, then reads one tensor at a time. The
  // weights in `deferred` are checked against its shapes and not read.
  void load_weights(const WeightSource& weights, const std::string& source, const DeferredWeights* deferred = nullptr);
  torch::Tensor lm_head_weight() const;
  torch::Device device() const { return model->embed_tokens->weight.device(); }

  ModelConfig config;
  Decoder model{nullptr};
  torch::Tensor lm_head;   // [V, C]; undefined when tied
  torch::Tensor inv_freq;  // [rotary_dim/2] float32 buffer
  // When set, runs decoder layer i in place of layers[i] (ZeRO 3 gathers its parameters).
  std::function<torch::Tensor(int64_t layer, const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                              const torch::Tensor& mask, KVCache* cache)>
      layer_runner;
  // Set while layer_runner gathers ZeRO 3 shards: every forward is then a collective over the
  // engine's ranks, so they must all run the same passes (evaluation does not split items).
  bool collective_forward = false;

 private:
  // Embeddings and decoder layers 0 .. n_layers - 1 (before the final norm).
  torch::Tensor run_layers(const torch::Tensor& input_ids, const torch::Tensor& attention_mask, KVCache* cache,
                           std::vector<torch::Tensor>* hidden_states, size_t n_layers);
  std::pair<torch::Tensor, torch::Tensor> rope(const torch::Tensor& positions, torch::ScalarType dtype) const;
  // Additive [B, 1, T, S] mask for a layer with this sliding window (0: full causal).
  torch::Tensor attention_mask_for(int64_t window, const torch::Tensor& positions, int64_t S,
                                   const torch::Tensor& key_mask, int64_t B, torch::ScalarType dtype) const;
};
TORCH_MODULE(CausalLM);

// Llama-3 style / linear RoPE frequency computation (float32, as HF does).
torch::Tensor rope_inv_freq(const ModelConfig& c);

// with_accuracy: also `correct` (an argmax over the vocabulary at every position, which the
// training objectives do not need).
TokenLoss token_loss(const torch::Tensor& logits, const torch::Tensor& labels, bool with_accuracy = false);
torch::Tensor item_mean_nll(const TokenLoss& tl);    // [B]: mean answer-token NLL per item
torch::Tensor item_sum_nll(const TokenLoss& tl);     // [B]: summed answer-token NLL per item
torch::Tensor pooled_mean_nll(const TokenLoss& tl);  // scalar: mean over all answer tokens (HF)

torch::ScalarType parse_dtype(const std::string& name, const std::string& what);

}  // namespace lethe
