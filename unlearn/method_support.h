// Pieces several objectives share: per-item reference caches (the frozen model's outputs are
// computed once at theta_0 and cached per item, so no second model is kept in memory),
// per-item seeds, label replacement, refusal answers and parameter snapshots.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "eval/evaluate.h"
#include "unlearn/objective.h"

namespace lethe {

// The random streams of item_seed(): one id per use, so no two methods' draws collide by
// accident. dpo and idk share kRefusalLines on purpose: both pick item i's refusal the same way.
enum RngStream : uint64_t {
  kRandomLabels = 21,         // random_label: the replacement answer tokens
  kRefusalLines = 31,         // dpo, idk: the refusal line of each forget item
  kRmuDirection = 41,         // rmu: the random steering direction
  kMemflexForgetLabels = 51,  // memflex: random labels of the forget items' gradient pass
  kMemflexRetainLabels = 52,  // memflex: random labels of the retain items' gradient pass
  kSnapRefusalLines = 61,     // snap: the refusal line of each negative instruction
  kSnapDirections = 71,       // snap: the sliced-Wasserstein directions per (step, matrix)
};

// A seed for (stream, item) that does not depend on the rank that handles the item.
uint64_t item_seed(uint64_t seed, uint64_t stream, int64_t item);

// ItemShare / item_share (eval/evaluate.h): which rank runs prepare()'s pass over which item.

// fn gets one item alone (padded to pad_to tokens when pad_to > 0) and returns its cached value:
// a tensor whose first dimension is the position, or a scalar. Runs in eval mode, no grad, on
// the items in `which` only; the others stay undefined. Logs the cache size under `what`.
// Collective over `comm` (the same `which` on every rank): each rank computes every N-th item
// and the values are exchanged, so every rank returns the whole cache; when the forward is a
// collective (ZeRO 3), every rank runs as many passes.
using ItemForward = std::function<torch::Tensor(const Batch& one)>;
std::vector<torch::Tensor> cache_per_item(CausalLM& model, const std::vector<TokenizedItem>& items,
                                          const std::vector<int64_t>& which, int64_t pad_id, int64_t pad_to,
                                          const ItemForward& fn, const std::string& what, Communicator* comm);
// The cached values of a batch's items: scalars -> [B]; per-position tensors -> [B, T, ...],
// cut or zero-padded to T positions.
torch::Tensor gather_cached(const std::vector<torch::Tensor>& cache, const std::vector<int64_t>& index, int64_t T,
                            torch::Device device);

// out.loss += weight * NLL(retain), logged as retain_nll; nothing when weight is 0.
void add_retain_term(ObjectiveResult& out, CausalLM& model, const Batch* retain, double weight);

// An objective whose loss ends in + w_r NLL(x_r); with w_r = 0 it needs no retain data.
class WithRetainTerm : public Objective {
 public:
  explicit WithRetainTerm(double retain_weight) : wr_(retain_weight) {}
  bool uses_retain() const override { return wr_ != 0; }

 protected:
  void add_retain(ObjectiveResult& out, CausalLM& model, const Batch* retain) const {
    add_retain_term(out, model, retain, wr_);
  }
  double wr_;
};

// Summed answer-token log-probability per item [B] (logp(y) of METHODS.md).
torch::Tensor summed_logp(CausalLM& model, const Batch& b);
// DPO's forget term for the batch: its items' preferred answers `win` (reference log-probs
// ref_w, cached per item) against their own answers (ref_l). Logged as `name`,
// "<preferred>_logp" and "answer_logp". dpo and altpo differ only in what `win` holds.
ObjectiveResult preference_result(CausalLM& model, const Batch& forget, const std::vector<TokenizedItem>& win,
                                  const std::vector<torch::Tensor>& ref_w, const std::vector<torch::Tensor>& ref_l,
                                  double beta, int64_t pad_id, const std::string& name, const std::string& preferred);
// The same batch with other labels.
Batch with_labels(const Batch& b, const torch::Tensor& labels);
// Mask [B, T] of the positions whose logits predict an answer token (labels shifted by one).
torch::Tensor answer_prediction_mask(const torch::Tensor& labels);
// The answer token each position's logits predict [B, T] int64 (labels shifted by one; -100: none).
torch::Tensor next_token_targets(const torch::Tensor& labels);
// Mask [B, T] of the positions whose logits predict a token of the item (not padding).
torch::Tensor next_token_mask(const torch::Tensor& attention_mask);

// Labels [B, T] with every answer label replaced by the argmax of the logits that predict it,
// the true token excluded (the adversarial method's targets; defined in adversarial.cpp).
torch::Tensor adversarial_labels(const torch::Tensor& logits, const torch::Tensor& labels);

// Refusal answers ("I don't know"-style), one per line of a text file (blank lines skipped;
// e.g. ../shared/data/tofu/idontknow.jsonl); "" gives lethe's own built-in lines.
std::vector<std::string> load_refusals(const std::string& path, const std::string& option);
// Item i's question with a refusal line picked by (seed, i).
std::vector<TokenizedItem> refusal_items(const ObjectiveContext& ctx, const std::vector<Example>& examples,
                                         const std::vector<std::string>& refusals, uint64_t stream);

}  // namespace lethe
