// `lethe sweep`: a grid of unlearning configurations (methods x learning rates x steps x method
// options, from a small JSON file), every configuration on its own rank group at the same time
// (SPUNGE's group machinery; configurations queue round-robin when they outnumber the groups),
// each evaluated as it finishes, and one table and one plot of forget quality against model
// utility with the Pareto front marked. Resumable: finished configurations are kept, the others
// continue from their checkpoints.
//
// The grid file:
//   {"methods": ["ga", "npo"], "lr": [1e-5, 1e-4], "steps": [10, 20],
//    "options": {"npo": {"npo.beta": [0.1, 0.5]}},
//    "lora": {"memflex": {"rank": 8, "alpha": 16, "dropout": 0.1}}}
// "lr" and "steps" default to --lr and --steps; either may instead be an object {method: [values]}
// (a method it does not name keeps the default). "options" lists values per method option (each
// combination is a configuration; options not listed keep their defaults). "lora" gives a method its
// own LoRA adapters (rank, alpha, dropout; targets and seed from the command line) instead of the
// command's --lora-* setting: MemFlex needs LoRA, the other methods can then train every weight.
//
// The sweep directory: sweep.json (the plan, then the results), runs/<config>/eval (the report
// of `lethe eval`), runs/<config>/result.json, runs/<config>/model (with --keep-models),
// sweep.md and sweep.svg.
#pragma once
#include <string>
#include <vector>

#include "dist/process_groups.h"
#include "eval/report.h"
#include "unlearn/run.h"

namespace lethe {

struct SweepConfig {
  std::string name;  // "npo_lr0.0001_s20_npo.beta0.5": method, lr, steps, options
  std::string method;
  double lr = 0;
  int64_t steps = 0;
  json options = json::object();  // method options set by the grid: {name: value}
  json lora;                      // null, or the grid's {rank, alpha, dropout} for this method
  json to_json() const;
};

// InputError naming `source` and the field for a malformed grid: unknown method or option, a
// value of the wrong type, an empty list, a non-positive lr or step count, a LoRA setting that is not
// {rank > 0, alpha > 0, 0 <= dropout < 1}, more than 1000 configurations.
std::vector<SweepConfig> expand_sweep_grid(const json& grid, const std::string& source, double default_lr,
                                           int64_t default_steps);

struct SweepOptions {
  RunSpec run;  // the base run: model, LoRA, data layout and loop; method, lr and steps per configuration
  std::string out;
  GroupOptions groups;  // default: one group per configuration, or every rank its own group when fewer
  EvalOptions eval;
  std::string tofu_reference;  // a retain-only model's report: forget quality (the plot's x axis)
  bool keep_models = false;
  std::vector<SweepConfig> configs;
};

// The run's LoRA setting for configuration `c`: the command's, or the grid's for its method.
LoraOptions sweep_lora(const LoraOptions& command, const SweepConfig& c);

struct SweepData {
  std::vector<Example> forget, retain;
  // forget, retain (or --eval-forget / --eval-retain instead), then real_authors / world_facts
  std::vector<NamedExamples> eval_splits;
};

// The table of finished configurations: each row of `rows` ({name, method, lr, steps, options,
// summary, tofu}) gets x (forget quality, or 1 - forget answer probability without a reference),
// y (model utility) and pareto (on the front of (x, y), both maximised).
json sweep_table(json rows, bool with_reference);
std::string sweep_markdown(const json& table, bool with_reference);

// 0, or kExitPreempted. `config` is the effective configuration stored in sweep.json.
int run_sweep(const SweepOptions& o, const SweepData& data, const Runtime& rt, const json& config);

}  // namespace lethe
