// The flags of every config group, each declared once (launcher/option_set.h binds a flag to
// its struct field: the field's initial value is the default). Commands compose the groups
// they need; the library never sees Boost.
#pragma once
#include <string>
#include <vector>

#include "checkpoints/model_io.h"
#include "data/data_options.h"
#include "data/split.h"
#include "dist/process_groups.h"
#include "dist/runtime.h"
#include "eval/evaluate.h"
#include "eval/report_writer.h"
#include "launcher/option_set.h"
#include "merge/merge_rules.h"
#include "model/lora.h"
#include "unlearn/objective.h"
#include "unlearn/trainer.h"

namespace lethe {

// --threads --log-level --log-file --seed; distributed commands also --first-step-timeout
// --timeout, and with a device --device.
void bind_runtime(OptionSet& o, RuntimeOptions& r, bool distributed, bool uses_device);
// --dtype: float32 or bfloat16 ("": the model's).
void bind_dtype(OptionSet& o, std::string& dtype);
// --model (or `flag`) --dtype, and --adapter when with_adapter.
void bind_model(OptionSet& o, ModelLoadOptions& m, const std::string& flag = "model", bool with_adapter = true);
// --lora-rank --lora-alpha --lora-dropout --lora-target (the seed is --seed).
void bind_lora(OptionSet& o, LoraOptions& l, const RuntimeOptions& rt);
// --data-format; with text: --template --system-prompt --max-len.
void bind_data(OptionSet& o, DataOptions& d, bool with_text = true);
// --NAME (a file) and --NAME-filter key=value.
void bind_source(OptionSet& o, DataSource& s, const std::string& name, const std::string& help, bool required);
// --activation-checkpointing none|selective|full.
void bind_activation_checkpointing(OptionSet& o, TrainOptions& t);
// --zero3-overlap auto|on|off.
void bind_zero3_overlap(OptionSet& o, TrainOptions& t);
// steps, batch, optimizer, schedule, clipping, logging, ZeRO, checkpoints (the seed is --seed).
void bind_train(OptionSet& o, TrainOptions& t, const RuntimeOptions& rt);
// --out, --format (or `format_flag`), --max-shard-size; --adapter-out when with_adapter_out.
void bind_output(OptionSet& o, OutputOptions& out, const std::string& format_flag = "format",
                 bool with_adapter_out = false);
// A checkpoint format flag (`flag`: native or hf).
void bind_format(OptionSet& o, CheckpointFormat& format, const std::string& flag, const std::string& help);
// --base and --models (two or more), the inputs of a merge.
void bind_merge_inputs(OptionSet& o, std::string& base, std::vector<std::string>& models);
// --eval-batch-size --no-generate --max-new-tokens.
void bind_eval(OptionSet& o, EvalOptions& e);
// --title --per-item --tofu-reference (the report's --out is bind_output's or the command's).
void bind_report(OptionSet& o, ReportOptions& r);
// --zero-stage 0|3 of an evaluation (`more`: what else it does at 3, appended to the help).
void bind_eval_zero_stage(OptionSet& o, int& zero_stage, const std::string& more);
// --merge and --merge.* (the rule table lists the rules).
void bind_merge(OptionSet& o, MergeOptions& m);
// --split-by --split-block --split-map.
void bind_split(OptionSet& o, SplitOptions& s);
// --group-sizes --groups.
void bind_groups(OptionSet& o, GroupOptions& g);

// --method and every method's options from the objective registry (`--help` lists them all);
// only the chosen method's values are read, validated (by building the objective once) and
// stored in the effective configuration.
struct MethodChoice {
  std::string name = "gd";
  const ObjectiveSpec* spec = nullptr;
  MethodOptions options;
  bool uses_retain = false;  // the objective built from these options has a retain term
};
void bind_method(OptionSet& o, MethodChoice& m);
// A rule: a method with a retain term needs --retain data.
void require_retain_if_used(OptionSet& o, const MethodChoice& m, const DataSource& retain);

}  // namespace lethe

namespace lethe {

// --out: a directory that must not exist (or be empty). `help` says what goes there.
void bind_out_dir(OptionSet& o, std::string& out, const std::string& help, bool required = true);
// NAME=PATH splits (repeatable) under `flag` (--split for eval, --eval-split for spunge).
void bind_named_splits(OptionSet& o, std::vector<std::string>& specs, const std::string& flag);

}  // namespace lethe
