// `lethe finetune` and `lethe unlearn`: the same run (unlearn/run.h) with a different Objective.
#include <spdlog/spdlog.h>

#include <map>

#include "common/error.h"
#include "launcher/command.h"
#include "launcher/option_groups.h"
#include "unlearn/run.h"

namespace lethe {

namespace {

struct TrainFlags {
  ModelLoadOptions model;
  LoraOptions lora;
  DataOptions data;
  TrainOptions train;
  OutputOptions output;
};

void bind_common(OptionSet& o, TrainFlags& f, const RuntimeOptions& rt) {
  bind_model(o, f.model);
  bind_lora(o, f.lora, rt);
  bind_data(o, f.data);
  bind_train(o, f.train, rt);
  bind_output(o, f.output, "format", /*with_adapter_out=*/true);
}

// `spec` is referred to by the job (RunSpec::method): it must outlive the job.
TrainJob job_of(const TrainFlags& f, const ObjectiveSpec& spec, const MethodOptions& mo, const json& cfg) {
  TrainJob job;
  job.run = {f.model, f.lora, f.data, f.train, &spec, mo};
  if (job.run.train.checkpoint_dir.empty()) job.run.train.checkpoint_dir = f.output.out + ".ckpt";
  job.run.train.run_config = cfg;
  job.output = f.output;
  job.config = cfg;
  return job;
}

struct FinetuneFlags : TrainFlags {
  DataSource data_source;
  double target_accuracy = 0.0;
};

void declare_finetune(OptionSet& o, FinetuneFlags& f, const RuntimeOptions& rt) {
  bind_common(o, f, rt);
  bind_source(o, f.data_source, "data", "training data (TOFU/KnowUnDo JSON or JSONL)", true);
  o.group("train", "Training");
  o.add("target-accuracy", &f.target_accuracy,
        "stop once answer-token accuracy on --data reaches this (0..1; checked every --eval-every steps)",
        in_range(0, 1));
}

int run_finetune(const FinetuneFlags& f, const Runtime& rt, const json& cfg) {
  // The job keeps a pointer to its method: the spec must outlive it (a temporary here was a
  // use after scope that AddressSanitizer found).
  static const ObjectiveSpec finetune = nll_objective_spec();
  TrainJob job = job_of(f, finetune, {}, cfg);
  job.primary = read_source(f.data_source, f.data.format, "--data");
  job.target_accuracy = f.target_accuracy;
  if (f.target_accuracy > 0 || f.train.eval_every > 0) {
    // One split per scope when the data carries one (synth data), so both must be learned.
    std::map<std::string, std::vector<Example>> by_scope;
    for (auto& e : job.primary)
      by_scope[attr_string(e, "scope").empty() ? "data" : attr_string(e, "scope")].push_back(e);
    for (auto& [k, v] : by_scope) job.eval_splits.push_back({k, v});
  }
  return run_training(job, rt);
}

struct UnlearnFlags : TrainFlags {
  MethodChoice method;
  DataSource forget, retain;
  std::string eval_forget, eval_retain, eval_real_authors, eval_world_facts;
  SelectOptions select;
};

void declare_unlearn(OptionSet& o, UnlearnFlags& f, const RuntimeOptions& rt) {
  bind_common(o, f, rt);
  bind_source(o, f.forget, "forget", "data to forget", true);
  bind_source(o, f.retain, "retain", "data to keep (methods with a retain term)", false);
  o.add("eval-forget", &f.eval_forget, "evaluate on this forget data during training");
  o.add("eval-retain", &f.eval_retain, "evaluate on this retain data during training");
  o.add("eval-real-authors", &f.eval_real_authors,
        "TOFU's real authors, evaluated during training (model utility's Prob_normalised and truth ratio)");
  o.add("eval-world-facts", &f.eval_world_facts,
        "TOFU's world facts, evaluated during training (as --eval-real-authors)");
  o.group("select", "Checkpoint selection");
  o.add("select", &f.select.rule,
        "which evaluated step becomes --out: last; best (maximises --select-criterion); muse (the first step whose "
        "forget exact memorization is at or below the retain-only model's; stops there)",
        one_of({"last", "best", "muse"}));
  o.add("select-criterion", &f.select.criterion,
        "--select best: a number of the step's evaluation, as a dotted path (model_utility, forget_quality, "
        "forget.answer_prob, retain.accuracy, knowundo.average_success; '-' in front minimises); default fq_mu, the "
        "harmonic mean of forget quality and model utility");
  o.add("select-reference", &f.select.reference,
        "report.json or TOFU_EVAL.json of the retain-only model on the same forget data: forget quality and the "
        "muse threshold");
  bind_method(o, f.method);
  require_retain_if_used(o, f.method, f.retain);
}

int run_unlearn(const UnlearnFlags& f, const Runtime& rt, const json& cfg) {
  TrainJob job = job_of(f, *f.method.spec, f.method.options, cfg);
  job.primary = read_source(f.forget, f.data.format, "--forget");
  job.uses_retain = f.method.uses_retain;
  if (job.uses_retain) job.retain = read_source(f.retain, f.data.format, "--retain");
  if (!f.eval_forget.empty()) job.eval_splits.push_back({"forget", read_examples(f.eval_forget, f.data.format)});
  if (!f.eval_retain.empty()) job.eval_splits.push_back({"retain", read_examples(f.eval_retain, f.data.format)});
  if (!f.eval_real_authors.empty())
    job.eval_splits.push_back({"real_authors", read_examples(f.eval_real_authors, f.data.format)});
  if (!f.eval_world_facts.empty())
    job.eval_splits.push_back({"world_facts", read_examples(f.eval_world_facts, f.data.format)});
  job.select = f.select;
  spdlog::info("unlearn --method {}: {} forget items, {} retain items", f.method.name, job.primary.size(),
               job.retain.size());
  return run_training(job, rt);
}

}  // namespace

Command finetune_command() {
  Command c = make_command<FinetuneFlags>("finetune", "train a model on question/answer data (full or LoRA)", true,
                                          true, declare_finetune, run_finetune);
  c.resumable = true;
  return c;
}

Command unlearn_command() {
  Command c = make_command<UnlearnFlags>("unlearn", "make a model forget a data set with an unlearning method", true,
                                         true, declare_unlearn, run_unlearn);
  c.resumable = true;
  return c;
}

}  // namespace lethe
