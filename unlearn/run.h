// One finetuning or unlearning run, the sequence every caller shares (`lethe finetune`,
// `lethe unlearn`, each SPUNGE subset and SPUNGE's plain comparison):
//   load the model -> LoRA adapters -> tokenize -> objective.prepare at theta_0 -> train_loop
//   -> (the peft adapter) -> merge LoRA -> objective.finish
// and, for the two single-run commands, in-training evaluation and the saved output.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "checkpoints/format.h"
#include "checkpoints/model_io.h"
#include "data/data_options.h"
#include "data/tokenizer.h"
#include "dist/runtime.h"
#include "eval/probe.h"
#include "model/lora.h"
#include "unlearn/objective.h"
#include "unlearn/selection.h"
#include "unlearn/trainer.h"

namespace lethe {

// What one run trains and how: the model, its adapters, the data layout, the loop and the method.
struct RunSpec {
  ModelLoadOptions model;
  LoraOptions lora;  // rank 0: every weight trains
  DataOptions data;
  TrainOptions train;
  const ObjectiveSpec* method = nullptr;
  MethodOptions method_options;
};

// The tokenizer and chat template of the run's base model, read once per job.
struct RunText {
  Tokenizer tok;
  ChatTemplate tmpl = ChatTemplate::ChatML;
};
RunText load_run_text(const RunSpec& spec);

// Loads spec.model in its dtype, applies the peft adapter or adds LoRA adapters, moves it to
// `device` and logs its size. With `deferred`, the decoder layers are left unread for the ZeRO 3
// engine to read as shards (load_model_without_layers).
CausalLM load_for_training(const RunSpec& spec, const Tokenizer& tok, torch::Device device, Communicator& comm,
                           DeferredWeights* deferred = nullptr);

struct RunOutput {
  CausalLM model{nullptr};  // LoRA merged, objective finished (unless preempted)
  TrainResult result;
  json description;  // the objective's describe(), stored with the output
  // Set when the run kept its ZeRO 3 layers sharded from loading to the end (may_stay_sharded):
  // the model's layers are empty, save with save_model_from_engine.
  std::unique_ptr<DataParallel> engine;
};
// The whole sequence over `comm`. eval runs every --eval-every steps (it may stop the run or keep
// a step's weights: train_loop's EvalHook); before_merge runs on every rank on the trained model
// while its adapters are still separate, with the engine when the layers are still shards (then
// the adapters' values are there). may_stay_sharded: at ZeRO 3, for a method that reads no
// weights outside training (full-parameter or LoRA), no rank loads or gathers the model whole
// (RunOutput::engine; LoRA's frozen base weights are shards too, and the adapters are merged as
// the model is saved).
using BeforeMerge = std::function<void(CausalLM& model, DataParallel* sharded)>;
RunOutput run_objective(const RunSpec& spec, const RunText& text, const std::vector<Example>& primary,
                        const std::vector<Example>* retain, Communicator& comm, torch::Device device,
                        const EvalHook& eval = {}, const BeforeMerge& before_merge = {}, bool may_stay_sharded = false);

// The LoRA adapters' values (by parameter name, on the CPU) of a run kept sharded. Collective
// over the engine's ranks: gathers the adapted layers one at a time.
std::map<std::string, torch::Tensor> gather_adapters(DataParallel& engine);

// The relearning probe's finetune (eval/probe.h's Relearner): a fresh copy of the model trained
// with NLL on the items at a constant lr for `epochs` passes, in global batches of batch_size,
// over `comm`; at zero_stage 3 each rank reads and trains its shard of the decoder layers, and
// the model stays sharded (the returned engine).
struct RelearnBudget {
  double lr = 2e-5, epochs = 1;
  int64_t batch_size = 8;
};
Relearner make_relearner(const DataOptions& data, const RelearnBudget& budget, int zero_stage, Communicator& comm,
                         torch::Device device);

// `lethe finetune` / `lethe unlearn`: one run on the world, evaluated on `eval_splits` during
// training (stopping once every split reaches target_accuracy when > 0), saved to output.out.
struct TrainJob {
  RunSpec run;
  OutputOptions output;
  std::vector<Example> primary, retain;
  bool uses_retain = false;  // the method has a retain term: `retain` is passed on
  std::vector<NamedExamples> eval_splits;
  double target_accuracy = 0;
  SelectOptions select;  // checkpoint selection over the evaluated steps (unlearn/selection.h)
  json config;           // the effective configuration, stored with the output
};
// Checks that need no model (output paths, adapter flags), before anything is loaded.
// Outputs never overlap each other or an input: --checkpoint-dir apart from --out, neither
// inside --model or --adapter (InputError naming both paths).
void check_output_paths(const RunSpec& run, const OutputOptions& output);
void check_train_job(const TrainJob& job);
// 0, or kExitPreempted after a preemption checkpoint.
int run_training(const TrainJob& job, const Runtime& rt);

}  // namespace lethe
