// The one report writer of `lethe eval` and `lethe spunge`: a checkpoint is loaded and
// evaluated over a communicator, TOFU's forget quality and model utility are added, and rank 0
// writes report.json, report.md and (optionally) per_item.jsonl into a new directory.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "checkpoints/model_io.h"
#include "data/data_options.h"
#include "data/tokenizer.h"
#include "dist/data_parallel.h"
#include "eval/report.h"

namespace lethe {

struct ReportOptions {
  std::string out;             // report directory ("" : none written)
  std::string title;           // Markdown heading ("" : the model path)
  bool per_item = false;       // also per_item.jsonl
  std::string tofu_reference;  // report.json of a retain-only model: adds forget quality
  bool replace = false;        // an existing report in `out` is this job's own (a resumed SPUNGE run)
  std::string mia_reference;   // a reference model (same tokenizer): the reference membership attack
};

struct EvalJob {
  ModelLoadOptions model;  // the adapter, when given, is merged into the weights
  // 3: every rank reads and keeps 1/N of the decoder layers (a ZeRO 3 engine gathers one at a
  // time in each forward, so every rank runs as many passes); else every rank loads the model
  // whole. Either way the ranks score their shares of the items.
  int zero_stage = 0;
  int64_t max_len = 256;
  EvalOptions eval;
  ReportOptions report;
  json meta = json::object();  // report.json "meta" (the model path is added)
};

struct Evaluated {
  Report report;
  json summary;          // {split: {accuracy, mean_nll, rouge_l_recall, answer_prob, leakage}, knowundo}
  json tofu;             // forget_quality (with a reference), model_utility (with a retain split)
  json mia;              // {auc: {attack: AUC}, priv_leak} with "forget" and "holdout" splits; else null
  std::string markdown;  // the report's Markdown (with the forget-quality line)
};

// The forget split's truth ratios from a retain-only model's report: lethe's report.json or
// open-unlearning's TOFU_EVAL.json (forget_truth_ratio.value_by_index, in index order); an
// InputError naming the file when it has none.
std::vector<double> read_reference_truth_ratios(const std::string& path);

// The model of an evaluation on `device`, its adapter (when given) merged into the weights.
CausalLM load_eval_model(const ModelLoadOptions& m, torch::Device device);

// A model evaluated at ZeRO 3: each rank read only its shard of the decoder layers, which
// `engine` holds and gathers one layer at a time in every forward (a collective over the ranks).
// An adapter stays attached (its forward is the merged model's function). With `gradients`, the
// engine trains every weight but the adapter's (no optimizer state: SGD without momentum), so
// GradNorm can be taken through it; else nothing trains.
struct EvalModel {
  CausalLM model{nullptr};
  std::unique_ptr<DataParallel> engine;  // null: the model is whole
};
std::unique_ptr<EvalModel> load_sharded_eval_model(const ModelLoadOptions& m, torch::Device device, Communicator& comm,
                                                   bool gradients);
// load_sharded_eval_model at zero_stage 3, else load_eval_model (no engine).
std::unique_ptr<EvalModel> load_model_for_eval(const ModelLoadOptions& m, int zero_stage, torch::Device device,
                                               Communicator& comm, bool gradients = false);

// The same for a model already in memory (a sweep's freshly unlearned one): evaluated as it is.
// `sharded`: the engine whose shards hold the model's layers (a run kept at ZeRO 3); its splits
// must not ask for GradNorm (forget with holdout).
Evaluated evaluate_model(CausalLM& model, const EvalJob& job, const std::vector<NamedExamples>& splits,
                         const Tokenizer& tok, ChatTemplate tmpl, torch::Device device, Communicator& comm,
                         DataParallel* sharded = nullptr);

// Membership scores that need more than the forward pass, on the "forget" and "holdout" splits when
// both are in the report: GradNorm always (through `sharded` when the model's layers are its
// shards: over the weights it trains), the reference attack (LOSS minus the reference model's
// LOSS) when job.report.mia_reference names a model (loaded as shards too when job.zero_stage is
// 3). Collective over `comm`.
void add_membership_scores(Report& r, CausalLM& model, const std::vector<NamedExamples>& splits, const Tokenizer& tok,
                           ChatTemplate tmpl, const EvalJob& job, torch::Device device, Communicator& comm,
                           DataParallel* sharded = nullptr);

// Collective over `comm`: every rank evaluates its share; rank 0 writes the report directory.
Evaluated evaluate_checkpoint(const EvalJob& job, const std::vector<NamedExamples>& splits, const Tokenizer& tok,
                              ChatTemplate tmpl, torch::Device device, Communicator& comm);

// TOFU scores of a report: forget quality (KS p-value of the forget truth ratios against
// `reference`, when given) and model utility (open-unlearning's harmonic mean over the retain,
// real_authors and world_facts splits present: Prob, or Prob_normalised where the split has
// perturbed options, ROUGE-L recall when generated, truth ratio when available; the terms used
// are listed in "model_utility_terms").
json tofu_scores(const Report& r, bool generated, const std::vector<double>& reference,
                 const std::string& reference_path);
// The report in open-unlearning's layout (TOFU_EVAL.json): per metric {agg_value, value_by_index:
// {"<i>": {...}}}, named <p>_Q_A_Prob, <p>_Q_A_Prob_normalised, <p>_Q_A_ROUGE, forget_truth_ratio
// and <p>_Truth_Ratio (per-index "score" = R), <p>_exact_memorization, <p>_extraction_strength,
// forget_quality, model_utility, mia_<attack> (AUC), privleak, with <p> the split's name
// (real_authors: ra, world_facts: wf); and its summary (TOFU_SUMMARY.json: name -> agg_value).
json open_unlearning_eval(const Report& r, const std::vector<NamedExamples>& splits, const json& tofu, const json& mia,
                          bool generated);
json open_unlearning_summary(const json& eval);
// Membership inference when the report has "forget" and "holdout" splits: the AUC of each attack
// (forget = 0, holdout = 1), and MUSE's PrivLeak when the reference report (a retain-only model's
// report.json, evaluated with the same holdout) carries its own Min-K% AUC. Null otherwise.
json membership_inference(const Report& r, const std::string& reference_path);
// The split name open-unlearning's layout uses: real_authors -> ra, world_facts -> wf, else itself.
std::string open_unlearning_prefix(const std::string& split);
// One split's numbers as a record: accuracy, answer probability, mean NLL and the truth ratio (the
// forget form on "forget", else the retain form) when computed, plus the fields asked for.
struct SplitFields {
  bool rouge = false;       // rouge_l_recall (meaningful after generation)
  bool leakage = false;     // leakage
  bool tofu_terms = false;  // exact_memorization, extraction_strength, answer_prob_normalised (with options)
};
json split_record(const SplitMetrics& m, SplitFields fields);
// The summary of one report that SPUNGE's comparison, sweeps and result.json use.
json report_summary(const Report& r);

}  // namespace lethe
