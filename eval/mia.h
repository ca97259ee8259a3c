// Memorisation and membership-inference metrics as open-unlearning defines them (docs/METHODS.md),
// per item from the teacher-forced answer tokens:
//   exact memorization   share of answer tokens whose argmax is the label;
//   extraction strength  1 - k/|y|, k the smallest index with argmax[k:] == y[k:] (k = |y| when the
//                        last token is wrong);
//   LOSS    mean answer-token NLL;            ZLib  LOSS / zlib-compressed length of the answer text;
//   Min-K%  -mean of the lowest k share of the answer tokens' log-probabilities (k 0.4);
//   Min-K%++  the same on (log p(y_t) - mu_t) / sigma_t, mu and sigma the mean and standard
//           deviation of log p under the model's own next-token distribution at t.
//   GradNorm  the mean over parameter tensors of the L2 norm of d LOSS / d parameter, one item
//           at a time (open-unlearning's p = 2);
//   reference  LOSS minus a reference model's LOSS on the same item (filled by report_writer).
// Scores are loss-like (higher: less likely a member). AUC: forget items against holdout items
// the model never saw (forget = 0, holdout = 1), so 0.5 means indistinguishable.
#pragma once
#include <string>
#include <vector>

#include "data/batching.h"
#include "dist/communicator.h"
#include "dist/data_parallel.h"
#include "model/llama.h"

namespace lethe {

constexpr double kMinKShare = 0.4;

// Per answer position [B, T-1] (float32, 0 off the answer): NLL, argmax == label, and the
// Min-K%++ standardised log-probability. The vocabulary is read a chunk of rows at a time.
struct AnswerTokenStats {
  torch::Tensor nll, correct, z, mask;
};
AnswerTokenStats answer_token_stats(CausalLM& model, const Batch& b);

// GradNorm of each item, distributed like evaluate_split (rank r takes items r, r+N, ...; every
// rank returns all n). Gradients come from autograd::grad: no parameter's .grad is touched.
std::vector<double> gradnorm_scores(CausalLM& model, const std::vector<TokenizedItem>& items, int64_t pad_id,
                                    Communicator* comm);
// The same on a model whose decoder layers are shards of a ZeRO 1-3 engine over `comm`, over the
// parameters the engine trains. The engine averages each pass's gradient across the ranks, so
// every rank runs every item (the same passes); a parameter's norm is the square root of its
// slices' sums of squares, summed across the ranks.
std::vector<double> gradnorm_scores(CausalLM& model, DataParallel& engine, const std::vector<TokenizedItem>& items,
                                    int64_t pad_id, Communicator& comm);

double extraction_strength(const std::vector<bool>& correct);
// -mean of the lowest max(1, floor(n k)) values (0 for none).
double min_k_score(std::vector<double> values, double k = kMinKShare);
// Bytes of zlib's default compression of `text`.
int64_t zlib_length(const std::string& text);
// P(score of a positive > score of a negative) + 0.5 P(equal): the ROC AUC of the scores with
// negatives labelled 0 and positives 1.
double roc_auc(const std::vector<double>& negatives, const std::vector<double>& positives);
// MUSE's PrivLeak: 100 (AUC'_model - AUC'_retain) / AUC'_retain with AUC' = 1 - AUC (Min-K%).
double priv_leak(double auc_model, double auc_retain_model);

}  // namespace lethe
