#include "unlearn/losses.h"

#include "common/error.h"

namespace lethe {

namespace F = torch::nn::functional;

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
  auto per_pos = (ref.exp() * (ref - logq)).sum(-1);  // [B, T]
  auto m = mask.to(torch::kFloat);
  return ((per_pos * m).sum(1) / m.sum(1).clamp_min(1.0)).mean();
}

torch::Tensor masked_mse(const torch::Tensor& h, const torch::Tensor& target, const torch::Tensor& mask) {
  auto per_pos = (h.to(torch::kFloat) - target.to(torch::kFloat)).pow(2).mean(-1);  // [B, T]
  auto m = mask.to(torch::kFloat);
  return ((per_pos * m).sum(1) / m.sum(1).clamp_min(1.0)).mean();
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
