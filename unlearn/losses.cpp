#include "unlearn/losses.h"

#include <limits>

#include "common/error.h"

namespace lethe {

namespace F = torch::nn::functional;

namespace {
// Mean over each item's masked positions of per_pos [B, T], then over items.
torch::Tensor masked_item_mean(const torch::Tensor& per_pos, const torch::Tensor& mask) {
  auto m = mask.to(torch::kFloat);
  return ((per_pos * m).sum(1) / m.sum(1).clamp_min(1.0)).mean();
}
// Cross-entropy of softmax(logits) against the distribution softmax(target_logits), per position.
torch::Tensor soft_cross_entropy(const torch::Tensor& logits, const torch::Tensor& target_logits) {
  auto logq = torch::log_softmax(logits.to(torch::kFloat), -1);
  return -(torch::softmax(target_logits.to(torch::kFloat), -1) * logq).sum(-1);
}
// target_logits with `value` added at each position's target token (positions without one unchanged).
torch::Tensor add_at_targets(const torch::Tensor& target_logits, const torch::Tensor& targets, double value) {
  auto has = targets.ge(0);
  auto idx = targets.clamp_min(0).unsqueeze(-1);
  auto add = torch::zeros_like(target_logits).scatter_(-1, idx, has.unsqueeze(-1).to(target_logits.dtype()) * value);
  return target_logits + add;
}
}  // namespace

torch::Tensor npo_loss(const torch::Tensor& logp, const torch::Tensor& logp_ref, double beta) {
  return (2.0 / beta) * F::softplus(beta * (logp - logp_ref)).mean();
}

torch::Tensor simnpo_loss(const torch::Tensor& mean_nll, double beta, double delta) {
  return -(2.0 / beta) * F::logsigmoid(beta * (mean_nll - delta)).mean();
}

torch::Tensor dpo_loss(const torch::Tensor& logp_w, const torch::Tensor& logp_w_ref, const torch::Tensor& logp_l,
                       const torch::Tensor& logp_l_ref, double beta) {
  return -(2.0 / beta) * F::logsigmoid(beta * ((logp_w - logp_w_ref) - (logp_l - logp_l_ref))).mean();
}

torch::Tensor kl_loss(const torch::Tensor& logits, const torch::Tensor& ref_logp, const torch::Tensor& mask) {
  auto logq = torch::log_softmax(logits.to(torch::kFloat), -1);
  auto ref = ref_logp.to(torch::kFloat);
  return masked_item_mean((ref.exp() * (ref - logq)).sum(-1), mask);
}

torch::Tensor wga_loss(const torch::Tensor& nll, const torch::Tensor& mask, double beta) {
  auto w = torch::exp(-beta * nll.detach().to(torch::kFloat));
  return -masked_item_mean(w * nll.to(torch::kFloat), mask);
}

torch::Tensor satimp_loss(const torch::Tensor& nll, const torch::Tensor& mask, double beta1, double beta2) {
  auto p = torch::exp(-nll.detach().to(torch::kFloat));
  auto w = p.pow(beta1) * (1 - p).pow(beta2);
  return -masked_item_mean(w * nll.to(torch::kFloat), mask);
}

torch::Tensor undial_loss(const torch::Tensor& logits, const torch::Tensor& ref_logits, const torch::Tensor& targets,
                          const torch::Tensor& mask, double beta) {
  auto q_logits = add_at_targets(ref_logits.detach().to(torch::kFloat), targets, -beta);
  return masked_item_mean(soft_cross_entropy(logits, q_logits), mask);
}

torch::Tensor ce_u_loss(const torch::Tensor& logits, const torch::Tensor& targets, const torch::Tensor& mask) {
  // q: the model's own distribution with the true token's probability set to 0 (no gradient).
  auto q_logits = logits.detach().to(torch::kFloat);
  auto is_target = torch::zeros_like(q_logits, q_logits.options().dtype(torch::kBool))
                       .scatter_(-1, targets.clamp_min(0).unsqueeze(-1), targets.ge(0).unsqueeze(-1));
  q_logits = q_logits.masked_fill(is_target, -std::numeric_limits<float>::infinity());
  return masked_item_mean(soft_cross_entropy(logits, q_logits), mask);
}

torch::Tensor logit_spread_loss(const torch::Tensor& logits, const torch::Tensor& mask) {
  auto z = logits.to(torch::kFloat);
  auto spread = std::get<0>(z.max(-1)) - z.mean(-1);
  return masked_item_mean(spread.pow(2), mask);
}

torch::Tensor masked_mse(const torch::Tensor& h, const torch::Tensor& target, const torch::Tensor& mask) {
  return masked_item_mean((h.to(torch::kFloat) - target.to(torch::kFloat)).pow(2).mean(-1), mask);
}

torch::Tensor sliced_wasserstein(const torch::Tensor& w, const torch::Tensor& w0, const torch::Tensor& directions) {
  auto a = w.dim() == 1 ? w.view({1, -1}) : w.flatten(1);
  auto b = w0.dim() == 1 ? w0.view({1, -1}) : w0.flatten(1);
  LETHE_CHECK(a.sizes() == b.sizes() && a.size(1) == directions.size(0), "sliced_wasserstein: shape mismatch");
  auto t = directions.to(a.device(), torch::kFloat);
  auto pa = std::get<0>(torch::sort(torch::matmul(a.to(torch::kFloat), t), 0));
  auto pb = std::get<0>(torch::sort(torch::matmul(b.to(torch::kFloat), t), 0));
  return (pb - pa).pow(2).sum(0).mean();
}

torch::Tensor random_directions(int64_t d, int64_t k, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto t = at::normal(0.0, 1.0, {d, k}, gen);
  return t / t.norm(2, 0, true).clamp_min(1e-12);
}

}  // namespace lethe
