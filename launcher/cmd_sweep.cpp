// `lethe sweep`: a grid of unlearning configurations on rank groups at once (unlearn/sweep.h).
#include "common/error.h"
#include "launcher/command.h"
#include "launcher/option_groups.h"
#include "eval/report_writer.h"
#include "unlearn/sweep.h"

namespace lethe {

namespace {

struct SweepFlags {
  SweepOptions s;
  DataSource forget, retain, eval_forget, eval_retain, real_authors, world_facts;
  std::string grid;
};

void declare(OptionSet& o, SweepFlags& f, const RuntimeOptions& rt) {
  SweepOptions& s = f.s;
  bind_model(o, s.run.model);
  bind_lora(o, s.run.lora, rt);
  bind_data(o, s.run.data);
  bind_source(o, f.forget, "forget", "data to forget (also evaluated)", true);
  bind_source(o, f.retain, "retain", "data to keep (methods with a retain term; evaluated: model utility)", true);
  bind_source(o, f.eval_forget, "eval-forget", "evaluated as the forget split instead of --forget", false);
  bind_source(o, f.eval_retain, "eval-retain",
              "evaluated as the retain split instead of --retain (a sample of a large retain set)", false);
  bind_source(o, f.real_authors, "real-authors", "TOFU's real authors, evaluated (model utility's terms)", false);
  bind_source(o, f.world_facts, "world-facts", "TOFU's world facts, evaluated (model utility's terms)", false);
  bind_train(o, s.run.train, rt);
  bind_groups(o, s.groups);
  bind_eval(o, s.eval);
  o.group("sweep", "Sweep");
  o.add("grid", &f.grid,
        "the grid, a JSON file: {\"methods\": [...], \"lr\": [...], \"steps\": [...], \"options\": {method: {option: "
        "[values]}}, \"lora\": {method: {\"rank\": R, \"alpha\": A, \"dropout\": D}}} (lr and steps default to --lr "
        "and --steps, or {method: [...]} each)",
        {}, true);
  o.add("tofu-reference", &s.tofu_reference,
        "report of the retain-only model on the same --forget data: forget quality, the plot's x axis (else 1 - the "
        "forget answer probability)");
  o.add("keep-models", &s.keep_models, "also write every configuration's model to <out>/runs/<config>/model (HF)");
  bind_out_dir(o, s.out, "sweep directory (sweep.json, sweep.md, sweep.svg, runs/; must not exist unless --resume)",
               true);
}

int run(const SweepFlags& f, const Runtime& rt, const json& cfg) {
  SweepOptions s = f.s;
  if (s.run.train.checkpoint_dir.empty()) s.run.train.checkpoint_dir = s.out + ".ckpt";
  OutputOptions output;
  output.out = s.out;
  check_output_paths(s.run, output);
  if (!s.tofu_reference.empty()) read_reference_truth_ratios(s.tofu_reference);  // bad input before any work
  s.configs = expand_sweep_grid(read_json_file(f.grid), f.grid, s.run.train.schedule.lr, s.run.train.steps);
  SweepData data;
  const std::string& fmt = s.run.data.format;
  data.forget = read_source(f.forget, fmt, "--forget");
  data.retain = read_source(f.retain, fmt, "--retain");
  data.eval_splits = {
      {"forget", f.eval_forget.given() ? read_source(f.eval_forget, fmt, "--eval-forget") : data.forget},
      {"retain", f.eval_retain.given() ? read_source(f.eval_retain, fmt, "--eval-retain") : data.retain}};
  if (f.real_authors.given())
    data.eval_splits.push_back({"real_authors", read_source(f.real_authors, fmt, "--real-authors")});
  if (f.world_facts.given())
    data.eval_splits.push_back({"world_facts", read_source(f.world_facts, fmt, "--world-facts")});
  return run_sweep(s, data, rt, cfg);
}

}  // namespace

Command sweep_command() {
  Command c = make_command<SweepFlags>(
      "sweep",
      "a grid of methods x learning rates x steps x method options, each on its own rank group, evaluated; one table "
      "and a forget-quality vs model-utility plot with the Pareto front",
      true, true, declare, run);
  c.resumable = true;
  return c;
}

}  // namespace lethe
