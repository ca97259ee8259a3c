// KnowUnDo report: per-split metrics plus Unlearn Success (100 - forget accuracy), Retention
// Success (retain accuracy) and their average, as JSON and as a Markdown table.
#pragma once
#include <string>
#include <vector>

#include "common/json_io.h"
#include "data/data_options.h"
#include "eval/evaluate.h"

namespace lethe {

struct KnowUndoScores {
  double unlearn_success = 0, retention_success = 0, average_success = 0;
};

// forget/retain name the splits the scores come from.
KnowUndoScores knowundo_scores(const SplitMetrics& forget, const SplitMetrics& retain);
// A split's per-item membership scores {attack: [score per item]} (loss, zlib, min_k,
// min_k_plus_plus; gradnorm and reference when the split has them).
json mia_scores(const SplitMetrics& m);
// ROC AUC per attack of forget (0) against holdout (1) scores, from two mia_scores objects.
json mia_aucs(const json& forget_scores, const json& holdout_scores);
// How report.json's per-item truth_ratios read (open-unlearning's). Reports without this key were
// written by lethe before it, with the reciprocal p(correct) / p(perturbed).
inline constexpr const char* kTruthRatioDefinition = "p(perturbed) / p(correct)";
json report_json(const std::vector<SplitMetrics>& splits, const KnowUndoScores* scores, const json& meta);
std::string report_markdown(const std::vector<SplitMetrics>& splits, const KnowUndoScores* scores,
                            const std::string& title);
struct Report {
  std::vector<SplitMetrics> splits;
  bool has_scores = false;  // true when splits named "forget" and "retain" exist
  KnowUndoScores scores;
};
Report evaluate_report(CausalLM& model, const Tokenizer& tok, ChatTemplate tmpl,
                       const std::vector<NamedExamples>& splits, const EvalOptions& opt, int64_t max_len,
                       Communicator* comm = nullptr);

// One JSON line per item: split, index, prompt, answer, nll, accuracy, generation, rouge.
std::string per_item_jsonl(const SplitMetrics& m, const std::vector<Example>& examples);

}  // namespace lethe
