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

TrainJob job_of(const TrainFlags& f, const ObjectiveSpec& spec, const MethodOptions& mo, const json& cfg) {
  TrainJob job;
  job.run = {f.model, f.lora, f.data, f.train, &spec, mo};
  if (job.run.train.checkpoint_dir.empty()) job.run.train.checkpoint_dir = f.output.out + ".ckpt";
  job.run.train.run_config = cfg;
  job.output = f.output;
  job.config = cfg;
  return job;
}

}  // namespace

Command finetune_command() {
  return {"finetune", "train a model on question/answer data (full or LoRA)", true, true,
          [](OptionSet& o, const RuntimeOptions& rt) -> RunCommand {
            auto f = std::make_shared<TrainFlags>();
            auto data = std::make_shared<DataSource>();
            auto target = std::make_shared<double>(0.0);
            bind_common(o, *f, rt);
            bind_source(o, *data, "data", "training data (TOFU/KnowUnDo JSON or JSONL)", true);
            o.group("train", "Training");
            o.add("target-accuracy", target.get(),
                  "stop once answer-token accuracy on --data reaches this (0..1; checked every --eval-every steps)",
                  in_range(0, 1));
            return [f, data, target](const Runtime& rt, const json& cfg) {
              TrainJob job = job_of(*f, nll_objective_spec(), {}, cfg);
              job.primary = read_source(*data, f->data.format, "--data");
              job.target_accuracy = *target;
              if (*target > 0 || f->train.eval_every > 0) {
                // One split per scope when the data carries one (synth data), so both must be learned.
                std::map<std::string, std::vector<Example>> by_scope;
                for (auto& e : job.primary)
                  by_scope[attr_string(e, "scope").empty() ? "data" : attr_string(e, "scope")].push_back(e);
                for (auto& [k, v] : by_scope) job.eval_splits.push_back({k, v});
              }
              return run_training(job, rt);
            };
          }};
}

Command unlearn_command() {
  return {"unlearn", "make a model forget a data set with an unlearning method", true, true,
          [](OptionSet& o, const RuntimeOptions& rt) -> RunCommand {
            auto f = std::make_shared<TrainFlags>();
            auto method = std::make_shared<MethodChoice>();
            auto forget = std::make_shared<DataSource>(), retain = std::make_shared<DataSource>();
            auto eval_files = std::make_shared<std::pair<std::string, std::string>>();
            bind_common(o, *f, rt);
            bind_source(o, *forget, "forget", "data to forget", true);
            bind_source(o, *retain, "retain", "data to keep (methods with a retain term)", false);
            o.add("eval-forget", &eval_files->first, "evaluate on this forget data during training");
            o.add("eval-retain", &eval_files->second, "evaluate on this retain data during training");
            bind_method(o, *method);
            o.rule([method, retain] {
              return method->spec && method->uses_retain && !retain->given()
                         ? "--method " + method->name + " needs --retain data"
                         : "";
            });
            return [f, method, forget, retain, eval_files](const Runtime& rt, const json& cfg) {
              TrainJob job = job_of(*f, *method->spec, method->options, cfg);
              job.primary = read_source(*forget, f->data.format, "--forget");
              job.uses_retain = method->uses_retain;
              if (job.uses_retain) job.retain = read_source(*retain, f->data.format, "--retain");
              if (!eval_files->first.empty())
                job.eval_splits.push_back({"forget", read_examples(eval_files->first, f->data.format)});
              if (!eval_files->second.empty())
                job.eval_splits.push_back({"retain", read_examples(eval_files->second, f->data.format)});
              spdlog::info("unlearn --method {}: {} forget items, {} retain items", method->name, job.primary.size(),
                           job.retain.size());
              return run_training(job, rt);
            };
          }};
}

}  // namespace lethe
