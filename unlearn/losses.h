// The loss terms of docs/METHODS.md as pure functions of tensors, so each can be checked on
// hand-computable cases and against python3-torch (tests/reference/losses_reference.py).
// Every term is per item first and then averaged over items: a rank's mean over its slice,
// averaged across ranks, equals the mean over the global batch.
#pragma once
#include <torch/torch.h>

namespace lethe {

// NPO: mean over items of (2/beta) log(1 + (pi_theta/pi_ref)^beta); logp = summed answer log-probs [B].
torch::Tensor npo_loss(const torch::Tensor& logp, const torch::Tensor& logp_ref, double beta);
// SimNPO: mean over items of -(2/beta) log sigmoid(beta (mean_nll - delta)); mean_nll [B].
torch::Tensor simnpo_loss(const torch::Tensor& mean_nll, double beta, double delta);
// DPO: mean of -(2/beta) log sigmoid(beta [(lw - lw_ref) - (ll - ll_ref)]); all [B] summed log-probs.
torch::Tensor dpo_loss(const torch::Tensor& logp_w, const torch::Tensor& logp_w_ref, const torch::Tensor& logp_l,
                       const torch::Tensor& logp_l_ref, double beta);
// KL(p_ref || p_theta) per position, averaged over the positions where mask is 1 in each item,
// then over items. logits [B, T, V]; ref_logp [B, T, V] log-probabilities; mask [B, T].
torch::Tensor kl_loss(const torch::Tensor& logits, const torch::Tensor& ref_logp, const torch::Tensor& mask);
// The token-level forget terms of open-unlearning's methods (docs/METHODS.md). Per position t
// of logits [B, T, V]; targets [B, T] int64 is the token position t predicts (-100: none); mask
// [B, T] selects the positions that count. Each is averaged over an item's masked positions,
// then over items (an item with none counts as 0), like every term above.
//
// WGA: -mean(w_t CE_t) with w_t = p(y_t)^beta, no gradient through w; nll [B, T] = CE_t.
torch::Tensor wga_loss(const torch::Tensor& nll, const torch::Tensor& mask, double beta);
// SatImp: -mean(w_t CE_t) with w_t = p^b1 (1 - p)^b2, no gradient through w.
torch::Tensor satimp_loss(const torch::Tensor& nll, const torch::Tensor& mask, double beta1, double beta2);
// UNDIAL: CE(softmax(z), q) with q = softmax(z_ref - beta onehot(y_t)) (y_t where targets has
// one; else q = softmax(z_ref)). ref_logits [B, T, V].
torch::Tensor undial_loss(const torch::Tensor& logits, const torch::Tensor& ref_logits, const torch::Tensor& targets,
                          const torch::Tensor& mask, double beta);
// CE-U: CE(softmax(z), q) with q = softmax(z with z_y set to -inf), no gradient through q.
torch::Tensor ce_u_loss(const torch::Tensor& logits, const torch::Tensor& targets, const torch::Tensor& mask);
// PDU's forget term: (max_v z - mean_v z)^2.
torch::Tensor logit_spread_loss(const torch::Tensor& logits, const torch::Tensor& mask);
// Mean squared error per position (mean over the hidden dimension), averaged over the masked
// positions of each item, then over items. h, target [B, T, C] (target may broadcast); mask [B, T].
torch::Tensor masked_mse(const torch::Tensor& h, const torch::Tensor& target, const torch::Tensor& mask);
// Sliced Wasserstein distance between the rows of w and w0 (n x d; a vector is 1 x d) along the
// unit directions [d, K]: (1/K) sum_k sum_i (sort(w0 t_k)_i - sort(w t_k)_i)^2.
torch::Tensor sliced_wasserstein(const torch::Tensor& w, const torch::Tensor& w0, const torch::Tensor& directions);
// K Gaussian directions in R^d, normalised, from a seeded generator (float32, CPU).
torch::Tensor random_directions(int64_t d, int64_t k, uint64_t seed);

}  // namespace lethe
