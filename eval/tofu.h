// TOFU metrics (answer probability, truth ratio, ROUGE-L recall, forget quality) and leakage,
// added to the per-split metrics of evaluate_split.
#pragma once
#include <string>
#include <vector>

#include "data/dataset.h"
#include "eval/evaluate.h"

namespace lethe {

// Fills answer_prob (mean over items of exp(-mean answer NLL)), leakage (when generated) and,
// when the records carry `paraphrased_answer` and a `perturbed_answer` list (TOFU forget
// files), the truth ratio R = exp(mean NLL(perturbed) - NLL(paraphrased)) per item, scored with
// the question, and its forget / retain statistics. Distributed like evaluate_split.
void add_tofu_metrics(SplitMetrics& m, CausalLM& model, const Tokenizer& tok, ChatTemplate tmpl,
                      const std::vector<Example>& examples, const EvalOptions& opt, int64_t max_len,
                      Communicator* comm);

// The strings whose verbatim appearance in a generation leaks an item: the record's
// `sensitive` list when present, else what the answer holds of e-mail addresses, numbers
// (two or more digits) and multi-word capitalised names.
std::vector<std::string> sensitive_strings(const Example& e);

struct KsTest {
  double statistic = 0;  // sup |F_a - F_b|
  double p_value = 1;    // asymptotic Kolmogorov distribution at sqrt(n m / (n + m)) D
};
// Two-sample Kolmogorov-Smirnov test (two-sided). Forget quality is its p-value between the
// forget-set truth ratios of the unlearned model and of a model trained on the retain set only.
KsTest ks_two_sample(std::vector<double> a, std::vector<double> b);

}  // namespace lethe
