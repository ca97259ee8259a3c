// `lethe spunge`: SPUNGE (unlearn/spunge.h): split, unlearn on rank groups, merge, evaluate.
#include "common/error.h"
#include "launcher/command.h"
#include "launcher/option_groups.h"
#include "unlearn/spunge.h"

namespace lethe {

namespace {

struct SpungeFlags {
  SpungeOptions s;
  MethodChoice method;
  DataSource forget, retain;
  std::vector<std::string> eval_splits;
};

void declare(OptionSet& o, SpungeFlags& f, const RuntimeOptions& rt) {
  SpungeOptions& s = f.s;
  bind_model(o, s.run.model);
  bind_lora(o, s.run.lora, rt);
  bind_data(o, s.run.data);
  bind_source(o, f.forget, "forget", "data to forget", true);
  bind_source(o, f.retain, "retain", "data to keep (methods with a retain term; also evaluated)", false);
  bind_method(o, f.method);
  bind_train(o, s.run.train, rt);
  bind_output(o, s.output);
  bind_split(o, s.split);
  bind_groups(o, s.groups);
  bind_merge(o, s.merge);
  bind_eval(o, s.eval);
  bind_named_splits(o, f.eval_splits, "eval-split");
  o.group("spunge", "SPUNGE");
  o.add("compare", &s.compare,
        "also unlearn the whole forget set on all ranks with the same method and budget, and compare");
  o.add("split-only", &s.split_only,
        "only write the subsets (<out>/subsets/NAME.jsonl, <out>/subsets.txt) and stop: for one job per subset "
        "(slurm/spunge-array.sh)");
  o.add("keep-subset-models", &s.keep_subset_models,
        "write every subset's unlearned model to <out>/unlearned/<subset> (native)");
  o.add("probe", &s.probe,
        "with --compare: lethe probe (quantization, prompts, logit lens, relearning) on the SPUNGE and the plain "
        "model, side by side");
  o.add("relearn-lr", &s.relearn.lr, "--probe's relearning learning rate (constant)", positive<double>());
  o.add("relearn-epochs", &s.relearn.epochs, "--probe's relearning epochs over half of the forget set",
        positive<double>());
  o.rule([&s] { return !s.probe || s.compare ? "" : "--probe needs --compare"; });
  require_retain_if_used(o, f.method, f.retain);
}

int run(const SpungeFlags& f, const Runtime& rt, const json& cfg) {
  SpungeOptions s = f.s;
  s.run.method = f.method.spec;
  s.run.method_options = f.method.options;
  if (s.run.train.checkpoint_dir.empty()) s.run.train.checkpoint_dir = s.output.out + ".ckpt";
  check_spunge(s);
  SpungeData data;
  const std::string& fmt = s.run.data.format;
  data.forget = read_source(f.forget, fmt, "--forget");
  data.uses_retain = f.method.uses_retain;
  if (f.retain.given()) data.retain = read_source(f.retain, fmt, "--retain");
  data.eval_splits = {{"forget", data.forget}};
  if (f.retain.given()) data.eval_splits.push_back({"retain", data.retain});
  for (auto& spec : f.eval_splits) data.eval_splits.push_back(read_named_split(spec, "--eval-split", fmt));
  return run_spunge(s, data, rt, cfg);
}

}  // namespace

Command spunge_command() {
  Command c = make_command<SpungeFlags>(
      "spunge",
      "SPUNGE: split the forget set by an attribute, unlearn the subsets on rank groups in parallel, merge, evaluate",
      true, true, declare, run);
  c.resumable = true;
  return c;
}

}  // namespace lethe
