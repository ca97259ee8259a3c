// Cross-entropy of target tokens straight from hidden states: logits = h W^T are formed a chunk
// of rows at a time, so [N, V] float32 logits never exist at once (Llama-3's 128k vocabulary),
// and only for the rows asked for (the answer positions, not the prompt).
//
// Training keeps d nll / d logits = softmax - onehot per row (float32) when that fits
// kKeptGradientBytes (backward is then two GEMMs; in float32 no pass over the vocabulary), and
// otherwise recomputes each chunk's logits in backward (one more GEMM, bounded memory).
#pragma once
#include <torch/torch.h>

namespace lethe {

constexpr int64_t kKeptGradientBytes = int64_t(1) << 30;

struct VocabNll {
  torch::Tensor nll;      // [N] float32: logsumexp(logits) - logits[target]
  torch::Tensor correct;  // [N] float32: argmax(logits) == target (with_accuracy only)
};
// h [N, C] and W [V, C] in the model's dtype, targets [N] int64 in [0, V). softcap > 0 applies
// Gemma-2's cap * tanh(logits / cap) (then without chunking: autograd through the cap).
// Differentiable in h and W; chunk_rows 0 picks a size by device (a few MiB of logits on CPU,
// 256 MiB on CUDA); keep_bytes bounds the kept gradient (above it: recomputed).
VocabNll vocab_nll(const torch::Tensor& h, const torch::Tensor& W, const torch::Tensor& targets, double softcap,
                   bool with_accuracy, int64_t chunk_rows = 0, int64_t keep_bytes = kKeptGradientBytes);

// The positions of a batch that carry a loss: hidden states [B, T, C] at t predict labels[t + 1],
// so the rows are those whose shifted label is not -100. rows [N, C], targets [N] (int64),
// index [N] (flat positions in [B, T-1]), mask [B, T-1] float32; scatter() returns per-row
// values [N] as [B, T-1] float32, 0 off the answer.
struct AnswerRows {
  torch::Tensor rows, targets, index, mask;
  int64_t batch = 0, positions = 0;
  torch::Tensor scatter(const torch::Tensor& values) const;
};
AnswerRows answer_rows(const torch::Tensor& h, const torch::Tensor& labels);

}  // namespace lethe
