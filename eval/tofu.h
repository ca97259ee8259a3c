// TOFU metrics (answer probability, truth ratio, ROUGE-L recall, forget quality) and leakage,
// added to the per-split metrics of evaluate_split.
#pragma once
#include <string>
#include <vector>

#include "data/dataset.h"
#include "eval/evaluate.h"

namespace lethe {

// Fills answer_prob (mean over items of exp(-mean answer NLL)), leakage (when generated) and,
// when every record carries a `perturbed_answer` list, open-unlearning's truth ratio per item,
// R = exp(-mean_k NLL(perturbed_k)) / exp(-NLL(correct)), scored with the question, with its
// forget (mean min(R, 1/R)) and retain (mean max(0, 1 - R)) statistics. The correct answer is
// `paraphrased_answer` when every record has one (TOFU forget / retain files), else the answer
// itself (real authors, world facts), which also gives Prob_normalised per item. NLLs are mean
// answer-token NLLs. Distributed like evaluate_split.
void add_tofu_metrics(SplitMetrics& m, CausalLM& model, const Tokenizer& tok, ChatTemplate tmpl,
                      const std::vector<Example>& examples, const EvalOptions& opt, int64_t max_len,
                      Communicator* comm);

// open-unlearning's per-item terms from mean answer-token NLLs: the truth ratio
// exp(correct_nll - mean_wrong_nll), and Prob_normalised p / (p + sum_k p_k + 1e-10) with
// p = exp(-correct_nll) and `wrong_prob_sum` = sum_k exp(-NLL(perturbed_k)).
double truth_ratio(double correct_nll, double mean_wrong_nll);
double prob_normalised(double correct_nll, double wrong_prob_sum);
// TOFU's model utility: the harmonic mean of its terms; 0 when a term is 0 or there are none.
double model_utility(const std::vector<double>& terms);

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
