// SPUNGE (split, unlearn, merge; docs/METHODS.md): the forget set is split by an attribute,
// every subset is unlearned from the same base model on its own group of ranks (all groups at
// once, or queued round-robin when subsets outnumber groups), the per-group deltas are merged
// shard by shard over the cross-group merge communicators, and the merged model is written,
// evaluated and, with `compare`, set against plain unlearning of the whole forget set with the
// same method and budget. The run directory's layout is docs/SPUNGE.md's.
#pragma once
#include <string>
#include <vector>

#include "data/split.h"
#include "dist/process_groups.h"
#include "eval/report.h"
#include "merge/merge_rules.h"
#include "unlearn/run.h"

namespace lethe {

struct SpungeOptions {
  RunSpec run;
  OutputOptions output;  // out: the run directory; format: the merged checkpoint's
  SplitOptions split;
  GroupOptions groups;
  MergeOptions merge;
  EvalOptions eval;
  bool compare = false;             // also plain unlearning of the whole forget set
  bool split_only = false;          // write the subsets and stop (one job per subset)
  bool keep_subset_models = false;  // write every subset's model to <out>/unlearned/<subset>
  // With compare: the robustness probe (eval/probe.h; relearning included) on the SPUNGE and the
  // plain model, side by side in the report.
  bool probe = false;
  RelearnBudget relearn;  // the probe's relearning (batch_size: --batch-size)
};

struct SpungeData {
  std::vector<Example> forget, retain;
  bool uses_retain = false;                // the method trains on `retain`
  std::vector<NamedExamples> eval_splits;  // forget, retain (when given), then the further splits
};

// Checks that need neither data nor model.
void check_spunge(const SpungeOptions& o);
// 0, or kExitPreempted. `config` is the effective configuration stored in spunge.json.
int run_spunge(const SpungeOptions& o, const SpungeData& data, const Runtime& rt, const json& config);

}  // namespace lethe
