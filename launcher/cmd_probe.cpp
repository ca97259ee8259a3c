// `lethe probe`: the robustness suite (eval/probe.h): the model as it is, with its weights
// quantized (int8, NF4, FP4), with paraphrased and prefixed forget questions, and read through
// the logit lens; one table and one plot, distributed over the ranks like `lethe eval`.
#include <spdlog/spdlog.h>

#include <cmath>
#include <iostream>

#include "common/error.h"
#include "common/text.h"
#include "eval/probe.h"
#include "launcher/command.h"
#include "launcher/eval_job.h"
#include "launcher/option_groups.h"
#include "unlearn/run.h"

namespace lethe {

namespace {

struct ProbeFlags {
  EvalJob job;
  DataOptions data;
  DataSource forget, retain;
  ProbeOptions probe;
  std::string quantize = "int8,nf4,fp4", prompts = "paraphrase,prefix";
  bool no_logit_lens = false;
  bool relearn = false;
  RelearnBudget relearn_budget;
};

// "a,b" -> {a, b}; "none" or "" -> {}.
std::vector<std::string> probe_list(const std::string& s) {
  if (s.empty() || s == "none") return {};
  return split_commas(s);
}

void declare(OptionSet& o, ProbeFlags& f, const RuntimeOptions&) {
  bind_model(o, f.job.model);
  bind_data(o, f.data);
  bind_source(o, f.forget, "forget", "the forget data (TOFU records add truth ratios and paraphrased questions)", true);
  bind_source(o, f.retain, "retain", "retain data: what the model must keep, evaluated under every probe", false);
  bind_eval(o, f.job.eval);
  bind_report(o, f.job.report);
  o.group("probe", "Robustness probes");
  o.add("quantize", &f.quantize, "weight quantizations to probe, comma-separated (int8, nf4, fp4; none)");
  o.add("quant-block", &f.probe.quant_block, "NF4/FP4 block size", positive<int64_t>());
  o.add("prompts", &f.prompts, "prompt probes, comma-separated (paraphrase, prefix; none)");
  o.add("prefix", &f.probe.prefix, "the text the answer's turn starts with in the prefix probe");
  o.add("no-logit-lens", &f.no_logit_lens, "skip the logit lens");
  o.add("relearn", &f.relearn, "relearning probe: finetune on part of the forget set, evaluate on the rest");
  o.add("relearn-share", &f.probe.relearn_share, "share of the forget items relearnt (the first ones)",
        Check<double>([](const double& v) { return v > 0 && v < 1 ? "" : "must be in (0, 1)"; }));
  o.add("relearn-reference", &f.probe.relearn_reference,
        "a retain-only model (same tokenizer) relearnt the same way: adds open-unlearning's relearning ratio R per "
        "forget metric");
  o.add("relearn-lr", &f.relearn_budget.lr, "relearning learning rate (constant)", positive<double>());
  o.add("relearn-epochs", &f.relearn_budget.epochs, "relearning epochs over the relearnt items", positive<double>());
  o.add("relearn-batch-size", &f.relearn_budget.batch_size, "relearning global batch size (divisible by the ranks)",
        positive<int64_t>());
  o.then([&f](const po::variables_map&, std::vector<std::string>& errors) {
    f.probe.quantize = probe_list(f.quantize);
    f.probe.prompts = probe_list(f.prompts);
    f.probe.logit_lens = !f.no_logit_lens;
    try {
      check_probe_options(f.probe);  // before any model is loaded
    } catch (const InputError& e) {
      errors.push_back(std::string(e.what()) + "; or none");
    }
    if (!f.probe.relearn_reference.empty() && !f.relearn) errors.push_back("--relearn-reference needs --relearn");
  });
  bind_eval_zero_stage(o, f.job.zero_stage,
                       "; a quantization rounds one gathered layer at a time, and --relearn trains at ZeRO 3 too");
  bind_out_dir(o, f.job.report.out, "probe directory (probe.json, probe.md, probe.svg; must not exist)", false);
}

int run(const ProbeFlags& f, const Runtime& rt, const json& cfg) {
  std::vector<NamedExamples> splits = {{"forget", read_source(f.forget, f.data.format, "--forget")}};
  if (f.retain.given()) splits.push_back({"retain", read_source(f.retain, f.data.format, "--retain")});
  PreparedEval p = prepare_eval(f.job, f.data, cfg);
  const EvalJob& job = p.job;
  Relearner relearn;
  if (f.relearn) relearn = make_relearner(f.data, f.relearn_budget, job.zero_stage, *rt.world, rt.device);
  ProbeResult r =
      run_probe(job, f.probe, splits, p.tok, chat_template_for(f.data, job.model.dir), rt.device, *rt.world, relearn);
  log_peak_rss(*rt.world, "probe: peak resident memory per rank");
  if (rt.world->rank() == 0) std::cout << r.markdown << std::flush;
  return 0;
}

}  // namespace

Command probe_command() {
  return make_command<ProbeFlags>(
      "probe", "robustness of the forgetting: quantized weights, paraphrased and prefixed prompts, logit lens", true,
      true, declare, run);
}

}  // namespace lethe
