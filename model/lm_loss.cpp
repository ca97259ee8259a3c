#include "model/lm_loss.h"

#include <algorithm>

namespace lethe {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

int64_t rows_per_chunk(const torch::Tensor& W, int64_t chunk_rows) {
  if (chunk_rows > 0) return chunk_rows;
  // CPU: small enough for the row passes to stay in cache; CUDA: few enough launches.
  const int64_t bytes = W.is_cuda() ? (int64_t(256) << 20) : (int64_t(4) << 20);
  return std::max<int64_t>(16, bytes / (W.size(0) * 4));
}

// lf [n, V] float32 logits, in place: becomes softmax(lf) when `softmax`, else exp(lf - max).
// Returns logsumexp per row [n].
torch::Tensor exp_rows(torch::Tensor& lf, bool softmax) {
  auto m = std::get<0>(lf.max(1, /*keepdim=*/true));
  lf.sub_(m).exp_();
  auto s = lf.sum(1, /*keepdim=*/true);
  if (softmax) lf.div_(s);
  return (m + s.log()).squeeze(1);
}

// One chunk's forward: nll[r] = logsumexp - logits[target]; `correct` (when defined) gets the
// argmax test; `grad` (when defined, [n, V] float32) gets softmax - onehot.
void chunk_forward(const torch::Tensor& h, const torch::Tensor& W, const torch::Tensor& t, torch::Tensor nll,
                   torch::Tensor correct, torch::Tensor grad) {
  const bool fp32 = W.scalar_type() == torch::kFloat;
  torch::Tensor l = fp32 && grad.defined() ? grad : torch::empty({h.size(0), W.size(0)}, h.options());
  torch::mm_out(l, h, W.t());
  if (correct.defined()) correct.copy_(l.argmax(1).eq(t));
  torch::Tensor lf = fp32 ? l : grad.defined() ? grad.copy_(l) : l.to(torch::kFloat);
  auto t1 = t.unsqueeze(1);
  auto target_logit = lf.gather(1, t1).squeeze(1);
  nll.copy_(exp_rows(lf, grad.defined()) - target_logit);
  if (grad.defined()) lf.scatter_(1, t1, lf.gather(1, t1) - 1.0);
}

class VocabNllFn : public torch::autograd::Function<VocabNllFn> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& h, const torch::Tensor& W,
                               const torch::Tensor& targets, int64_t rows, int64_t keep_bytes) {
    const int64_t N = h.size(0), V = W.size(0);
    auto nll = torch::empty({N}, h.options().dtype(torch::kFloat));
    const bool keep = N * V * int64_t(sizeof(float)) <= keep_bytes;
    torch::Tensor D = keep ? torch::empty({N, V}, W.options().dtype(torch::kFloat)) : torch::Tensor();
    for (int64_t r = 0; r < N; r += rows) {
      const int64_t n = std::min(rows, N - r);
      chunk_forward(h.narrow(0, r, n), W, targets.narrow(0, r, n), nll.narrow(0, r, n), {},
                    keep ? D.narrow(0, r, n) : torch::Tensor());
    }
    ctx->save_for_backward({h, W, targets});
    ctx->saved_data["D"] = D;
    ctx->saved_data["rows"] = rows;
    return nll;
  }

  // d nll_r / d logits_r = softmax_r - onehot_r =: D_r, so with upstream g:
  // grad_h = diag(g) D W and grad_W = D^T diag(g) h. In float32, g scales the [N, C] side
  // (no pass over [N, V]); in a 16-bit dtype, (g D) is rounded once before the GEMMs, as
  // autograd through the logits does.
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &h = saved[0], &W = saved[1], &targets = saved[2];
    const bool need_h = ctx->needs_input_grad(0), need_W = ctx->needs_input_grad(1);
    const bool fp32 = W.scalar_type() == torch::kFloat;
    auto g = grads[0].to(torch::kFloat).unsqueeze(1);  // [N, 1]
    torch::Tensor D = ctx->saved_data["D"].toTensor();
    const int64_t N = h.size(0), V = W.size(0), rows = ctx->saved_data["rows"].toInt();
    torch::Tensor gh, gW;
    if (need_h) gh = torch::empty_like(h);
    if (need_W) gW = torch::zeros(W.sizes(), W.options().dtype(torch::kFloat));
    auto chunk = [&](const torch::Tensor& Dc, int64_t r, int64_t n) {  // Dc [n, V] float32
      auto hc = h.narrow(0, r, n), gc = g.narrow(0, r, n);
      if (fp32) {
        if (need_h) gh.narrow(0, r, n).copy_(torch::mm(Dc, W).mul_(gc));
        if (need_W) gW.addmm_(Dc.t(), hc * gc);
        return;
      }
      auto Dg = (Dc * gc).to(W.scalar_type());
      if (need_h) gh.narrow(0, r, n).copy_(torch::mm(Dg, W));
      if (need_W) gW.add_(torch::mm(Dg.t(), hc));
    };
    if (D.defined()) {
      chunk(D, 0, N);
    } else {
      for (int64_t r = 0; r < N; r += rows) {  // logits recomputed a chunk at a time
        const int64_t n = std::min(rows, N - r);
        auto Dc = torch::empty({n, V}, W.options().dtype(torch::kFloat));
        chunk_forward(h.narrow(0, r, n), W, targets.narrow(0, r, n), torch::empty({n}, Dc.options()), {}, Dc);
        chunk(Dc, r, n);
      }
    }
    if (need_W && !fp32) gW = gW.to(W.scalar_type());
    return {gh, gW, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

VocabNll vocab_nll(const torch::Tensor& h, const torch::Tensor& W, const torch::Tensor& targets, double softcap,
                   bool with_accuracy, int64_t chunk_rows, int64_t keep_bytes) {
  TORCH_CHECK(
      h.dim() == 2 && W.dim() == 2 && h.size(1) == W.size(1) && targets.dim() == 1 && targets.size(0) == h.size(0),
      "vocab_nll: h [N, C], W [V, C], targets [N]");
  VocabNll out;
  if (softcap > 0) {  // Gemma-2: the cap sits between the GEMM and the softmax; plain autograd
    auto l = torch::mm(h, W.t());
    l = torch::tanh(l / softcap) * softcap;
    auto lf = l.to(torch::kFloat);
    out.nll = torch::logsumexp(lf, 1) - lf.gather(1, targets.unsqueeze(1)).squeeze(1);
    if (with_accuracy) out.correct = lf.argmax(1).eq(targets).to(torch::kFloat);
    return out;
  }
  const int64_t N = h.size(0), rows = rows_per_chunk(W, chunk_rows);
  const bool grad = torch::GradMode::is_enabled() && (h.requires_grad() || W.requires_grad());
  if (grad) out.nll = VocabNllFn::apply(h, W, targets, rows, keep_bytes);
  if (grad && !with_accuracy) return out;
  torch::NoGradGuard ng;
  if (!grad) out.nll = torch::empty({N}, h.options().dtype(torch::kFloat));
  if (with_accuracy) out.correct = torch::empty({N}, h.options().dtype(torch::kFloat));
  for (int64_t r = 0; r < N; r += rows) {
    const int64_t n = std::min(rows, N - r);
    chunk_forward(h.narrow(0, r, n), W, targets.narrow(0, r, n),
                  grad ? torch::empty({n}, out.nll.options()) : out.nll.narrow(0, r, n),
                  with_accuracy ? out.correct.narrow(0, r, n) : torch::Tensor(), {});
  }
  return out;
}

AnswerRows answer_rows(const torch::Tensor& h, const torch::Tensor& labels) {
  const int64_t B = h.size(0), T = h.size(1), C = h.size(2);
  auto lb = labels.narrow(1, 1, T - 1);
  auto answer = lb.ne(-100);
  AnswerRows a;
  a.batch = B;
  a.positions = T - 1;
  a.index = answer.reshape(-1).nonzero().squeeze(1);
  a.rows = h.narrow(1, 0, T - 1).reshape({-1, C}).index_select(0, a.index);
  a.targets = lb.reshape(-1).index_select(0, a.index).clamp_min(0);
  a.mask = answer.to(torch::kFloat);
  return a;
}

torch::Tensor AnswerRows::scatter(const torch::Tensor& values) const {
  auto zeros = torch::zeros({batch * positions}, values.options().dtype(torch::kFloat));
  return zeros.index_copy(0, index, values.to(torch::kFloat)).view({batch, positions});
}

}  // namespace lethe
