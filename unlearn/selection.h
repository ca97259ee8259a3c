// Checkpoint selection (`lethe unlearn --select`): which evaluated step's weights become the
// output. Every --eval-every steps (and after the last) the eval splits are scored; then
//   last  the last step is the output (no selection);
//   best  the step that maximises the criterion: a number of the step's evaluation record named
//         by a dotted path ("model_utility", "forget.answer_prob", "knowundo.average_success";
//         "-name" minimises). The default, "fq_mu", is the harmonic mean of forget quality and
//         model utility, open-unlearning's usual trade-off (needs the retain-only model's report);
//         ties keep the earlier step;
//   muse  MUSE's rule: the first step whose forget memorisation (the forget split's exact
//         memorization, teacher-forced) is at or below the retain-only model's; training stops
//         there. No step reaches it: the last step, with a warning.
// The choice is a function of the all-reduced evaluation, so every rank and every rank count
// makes the same one; its memory (best value, kept step) goes into checkpoints.
#pragma once
#include <string>
#include <vector>

#include "common/json_io.h"
#include "unlearn/trainer.h"

namespace lethe {

struct SelectOptions {
  std::string rule = "last";  // last, best, muse
  std::string criterion;      // best: a dotted path into the evaluation record ("": fq_mu)
  std::string reference;      // a retain-only model's report.json or TOFU_EVAL.json
};

// One step's evaluation as selection reads it: {"step", <split>: {accuracy, mean_nll, answer_prob,
// exact_memorization, extraction_strength[, truth_ratio]}, forget_quality, model_utility,
// fq_mu, knowundo: {...}} (the TOFU numbers where the splits allow them).
class Selector {
 public:
  // InputError when the rule is unknown or what it needs is missing (the reference report, its
  // forget memorisation, the eval splits named in `splits`).
  Selector(const SelectOptions& o, const std::vector<std::string>& splits, int64_t eval_every);
  bool active() const { return opt_.rule != "last"; }
  const std::vector<double>& reference_truth_ratios() const { return reference_tr_; }
  // Reads the record (adds "selection_value") and says whether to keep this step / stop.
  EvalVerdict consider(int64_t step, json& record);
  json state() const;
  void restore(const json& s);
  json summary() const;  // {rule, criterion, kept_step, value, reached (muse)}
  const std::string& criterion() const { return criterion_; }

 private:
  SelectOptions opt_;
  std::string criterion_;
  std::vector<double> reference_tr_;
  double reference_memorization_ = 0;
  bool have_best_ = false, reached_ = false;
  double best_ = 0;
  int64_t kept_step_ = 0;
};

// The number at `path` ("a.b.c") of a JSON record; InputError naming the path when absent.
double record_value(const json& record, const std::string& path);

}  // namespace lethe
