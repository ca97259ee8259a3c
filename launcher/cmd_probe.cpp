// `lethe probe`: the robustness suite (eval/probe.h): the model as it is, with its weights
// quantized (int8, NF4, FP4), with paraphrased and prefixed forget questions, and read through
// the logit lens; one table and one plot, distributed over the ranks like `lethe eval`.
#include <iostream>

#include "common/error.h"
#include "common/text.h"
#include "eval/probe.h"
#include "launcher/command.h"
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
  o.then([&f](const po::variables_map&, std::vector<std::string>& errors) {
    f.probe.quantize = probe_list(f.quantize);
    f.probe.prompts = probe_list(f.prompts);
    f.probe.logit_lens = !f.no_logit_lens;
    for (auto& q : f.probe.quantize)
      if (q != "int8" && q != "nf4" && q != "fp4")
        errors.push_back("--quantize: unknown quantization '" + q + "' (int8, nf4, fp4, none)");
    for (auto& p : f.probe.prompts)
      if (p != "paraphrase" && p != "prefix")
        errors.push_back("--prompts: unknown prompt probe '" + p + "' (paraphrase, prefix, none)");
  });
  bind_out_dir(o, f.job.report.out, "probe directory (probe.json, probe.md, probe.svg; must not exist)", false);
}

int run(const ProbeFlags& f, const Runtime& rt, const json& cfg) {
  std::vector<NamedExamples> splits = {{"forget", read_source(f.forget, f.data.format, "--forget")}};
  if (f.retain.given()) splits.push_back({"retain", read_source(f.retain, f.data.format, "--retain")});
  EvalJob job = f.job;
  job.max_len = f.data.max_len;
  job.meta = {{"config", cfg}};
  const std::string& dir = job.model.dir;
  detect_format(dir);  // a missing or empty model directory is named before its tokenizer
  Tokenizer tok = Tokenizer::from_file(tokenizer_path(dir));
  ProbeResult r = run_probe(job, f.probe, splits, tok, chat_template_for(f.data, dir), rt.device, *rt.world);
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
