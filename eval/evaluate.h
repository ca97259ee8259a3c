// Teacher-forced and generation metrics for one split of question/answer items.
#pragma once
#include <string>
#include <vector>

#include "data/batching.h"
#include "dist/communicator.h"
#include "model/llama.h"

namespace lethe {

struct EvalOptions {
  int64_t batch_size = 16;
  bool generate = true;  // greedy generations for ROUGE-L
  int64_t max_new_tokens = 64;
  bool tofu = true;  // answer probability, truth ratio, leakage (eval/tofu.h)
};

struct ItemMetrics {
  int64_t index = 0;
  int64_t answer_tokens = 0;
  double nll = 0;       // mean answer-token NLL
  double accuracy = 0;  // share of answer tokens predicted by argmax
  std::string generation;
  double rouge_l_f1 = 0, rouge_l_recall = 0;
  bool leaked = false;         // a sensitive string of the answer appears in the generation
  double truth_ratio = 0;      // open-unlearning's R = p(perturbed) / p(correct) (eval/tofu.h)
  double prob_normalised = 0;  // p(answer) / (p(answer) + sum p(perturbed)) (real authors, world facts)
  // open-unlearning's memorisation and membership scores (eval/mia.h); LOSS is nll.
  double extraction_strength = 0;
  double mia_zlib = 0, mia_min_k = 0, mia_min_k_plus_plus = 0;
  double mia_gradnorm = 0;   // when has_gradnorm (eval/mia.h)
  double mia_reference = 0;  // NLL minus the reference model's NLL, when has_reference
};

struct SplitMetrics {
  std::string name;
  int64_t items = 0, answer_tokens = 0;
  double accuracy = 0;                        // pooled over all answer tokens
  double exact_memorization = 0;              // mean over items of the item's token accuracy
  double extraction_strength = 0;             // mean over items
  double mean_nll = 0;                        // pooled answer-token NLL
  double perplexity = 0;                      // exp(mean_nll)
  double rouge_l_f1 = 0, rouge_l_recall = 0;  // means over items (when generated)
  double answer_prob = 0;                     // TOFU: mean exp(-mean answer NLL)
  double leakage = 0;                         // share of items with sensitive strings that leak
  int64_t leakage_items = 0;                  // items that have sensitive strings
  bool has_truth_ratio = false;
  double truth_ratio_forget = 0;                     // mean min(R, 1/R)
  double truth_ratio_retain = 0;                     // mean max(0, 1 - R)
  bool has_options = false;                          // the truth ratio's correct answer is the answer (no paraphrase)
  double answer_prob_normalised = 0;                 // mean Prob_normalised (when has_options)
  bool has_gradnorm = false, has_reference = false;  // membership scores filled by report_writer
  std::vector<ItemMetrics> per_item;
};

// The ranks that run passes over `count` items, one item each in turn (prepare()'s reference
// values, evaluation's batches are made of them too): in round j,
// rank r takes item j N + r. When the passes gather sharded layers (model->collective_forward),
// a rank past the end runs a filler pass (on item 0, its result dropped), so every rank runs as
// many passes. `split`: the results must be gathered across ranks afterwards.
//   for (size_t j = 0; j < share.rounds(count); ++j) {
//     const size_t k = share.item(j);
//     if (k >= count && !share.fillers) break;  // else a filler: run item 0, keep nothing
struct ItemShare {
  size_t rank = 0, ranks = 1;
  bool split = false, fillers = false;
  size_t rounds(size_t count) const { return (count + ranks - 1) / ranks; }
  size_t item(size_t round) const { return round * ranks + rank; }
  std::vector<int64_t> items(size_t count) const;  // this rank's items below count, in order
};
ItemShare item_share(const CausalLM& model, Communicator* comm);

// Rank r's share of n items evaluated in batches: its items (item_share), and how many batches
// it runs. That is its own count, or, when the forward is a collective (model->collective_forward:
// ZeRO 3 shards), as many as rank 0, which has the most; a batch past the rank's items is then
// empty, and the rank runs a filler pass (a copy of item 0, dropped).
struct EvalShare {
  std::vector<int64_t> mine;
  size_t batch_size = 1, batches = 0;
  bool collective = false;
  std::vector<int64_t> batch(size_t k) const;  // the items of batch k (empty: a filler)
};
EvalShare eval_share(const CausalLM& model, int64_t n, int64_t batch_size, Communicator* comm);

// Distributed when comm is given: rank r scores items r, r+N, ...; the per-item results are
// reduced so every rank returns the whole split. When the forward is a collective (ZeRO 3
// shards), every rank runs as many passes (fillers where it has fewer items) and every
// generation batch as many steps. Generations end at the template's end-of-turn token or the
// config's eos ids.
SplitMetrics evaluate_split(CausalLM& model, const Tokenizer& tok, ChatTemplate tmpl, const std::string& name,
                            const std::vector<Example>& examples, const EvalOptions& opt, int64_t max_len,
                            Communicator* comm = nullptr);
std::vector<int64_t> stop_token_ids(const CausalLM& model, const Tokenizer& tok, ChatTemplate tmpl);
int64_t pad_token_id(const Tokenizer& tok, ChatTemplate tmpl);

}  // namespace lethe
