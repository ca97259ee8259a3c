// `lethe eval`: KnowUnDo and TOFU metrics per split (eval/report_writer.h), distributed over
// the ranks; JSON, Markdown and per-item JSONL.
#include <spdlog/spdlog.h>

#include <iostream>

#include "common/error.h"
#include "dist/collectives.h"
#include "dist/runtime.h"
#include "launcher/command.h"
#include "launcher/eval_job.h"
#include "launcher/option_groups.h"
#include "unlearn/run.h"

namespace lethe {

namespace {

struct EvalFlags {
  EvalJob job;
  DataOptions data;
  DataSource forget, retain, holdout, real_authors, world_facts;
  std::vector<std::string> splits;
};

void declare(OptionSet& o, EvalFlags& f, const RuntimeOptions&) {
  bind_model(o, f.job.model);
  bind_data(o, f.data);
  bind_source(o, f.forget, "forget", "unlearn-scope data (Unlearn Success = 100 - its answer-token accuracy)", false);
  bind_source(o, f.retain, "retain", "retention-scope data (Retention Success = its answer-token accuracy)", false);
  bind_source(o, f.holdout, "holdout",
              "items the model never saw: membership-inference AUC of --forget against them (and PrivLeak with "
              "--tofu-reference)",
              false);
  bind_source(o, f.real_authors, "real-authors",
              "TOFU's real authors (question, answer, perturbed_answer): enter model utility with Prob_normalised, "
              "ROUGE-L recall and truth ratio",
              false);
  bind_source(o, f.world_facts, "world-facts", "TOFU's world facts (the same fields and terms as --real-authors)",
              false);
  bind_named_splits(o, f.splits, "split");
  bind_eval(o, f.job.eval);
  bind_report(o, f.job.report);
  o.add("mia-reference", &f.job.report.mia_reference,
        "a reference model with the same tokenizer (open-unlearning uses the retain-only model): adds the reference "
        "membership attack, each item's NLL minus the reference model's, to --holdout's AUCs");
  bind_eval_zero_stage(o, f.job.zero_stage, ", and GradNorm runs every item on every rank");
  bind_out_dir(o, f.job.report.out, "report directory (report.json, report.md; must not exist)", false);
  o.rule([&f] {
    bool any =
        f.forget.given() || f.retain.given() || f.real_authors.given() || f.world_facts.given() || !f.splits.empty();
    return any ? "" : "nothing to evaluate: give --forget, --retain, --real-authors, --world-facts or --split";
  });
  o.rule([&f] {
    return !f.holdout.given() || f.forget.given() ? "" : "--holdout needs --forget (what it is compared with)";
  });
  o.rule([&f] {
    return f.job.report.mia_reference.empty() || f.holdout.given() ? "" : "--mia-reference needs --holdout";
  });
  o.rule([&f] {
    bool ok = f.job.report.tofu_reference.empty() || f.forget.given();
    return ok ? "" : "--tofu-reference needs --forget (TOFU forget data)";
  });
}

int run(const EvalFlags& f, const Runtime& rt, const json& cfg) {
  std::vector<NamedExamples> splits;
  if (f.forget.given()) splits.push_back({"forget", read_source(f.forget, f.data.format, "--forget")});
  if (f.retain.given()) splits.push_back({"retain", read_source(f.retain, f.data.format, "--retain")});
  if (f.holdout.given()) splits.push_back({"holdout", read_source(f.holdout, f.data.format, "--holdout")});
  if (f.real_authors.given())
    splits.push_back({"real_authors", read_source(f.real_authors, f.data.format, "--real-authors")});
  if (f.world_facts.given())
    splits.push_back({"world_facts", read_source(f.world_facts, f.data.format, "--world-facts")});
  for (auto& s : f.splits) splits.push_back(read_named_split(s, "--split", f.data.format));
  PreparedEval p = prepare_eval(f.job, f.data, cfg);
  Evaluated ev =
      evaluate_checkpoint(p.job, splits, p.tok, chat_template_for(f.data, p.job.model.dir), rt.device, *rt.world);
  log_peak_rss(*rt.world, "eval: peak resident memory per rank");
  if (rt.world->rank() == 0) std::cout << ev.markdown << std::flush;
  return 0;
}

}  // namespace

PreparedEval prepare_eval(const EvalJob& flags, const DataOptions& data, const json& config) {
  EvalJob job = flags;
  job.max_len = data.max_len;
  job.meta = {{"config", config}};
  detect_format(job.model.dir);  // a missing or empty model directory is named before its tokenizer
  return {job, Tokenizer::from_file(tokenizer_path(job.model.dir))};
}

Command eval_command() {
  return make_command<EvalFlags>("eval", "KnowUnDo and TOFU metrics per split: JSON, Markdown and per-item JSONL", true,
                                 true, declare, run);
}

}  // namespace lethe
