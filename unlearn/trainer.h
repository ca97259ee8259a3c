// The training loop shared by finetune and every unlearning method:
//   global batch -> this rank's slice -> objective (forward) -> backward (accumulate)
//   -> reduce gradients across the group (ZeRO stage) -> clip -> sharded step -> log
//   -> maybe evaluate, checkpoint, or stop on a preemption signal.
// The global batch and its order do not depend on the number of ranks: rank r of N takes
// items [r*B/N, (r+1)*B/N) of every global micro-batch of B items.
#pragma once
#include <functional>

#include "dist/communicator.h"
#include "dist/data_parallel.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"
#include "unlearn/objective.h"

namespace lethe {

struct TrainOptions {
  int64_t steps = 100;     // optimizer steps
  int64_t batch_size = 8;  // global items per micro-batch (divisible by the ranks)
  int64_t grad_accum = 1;  // micro-batches per step
  double max_grad_norm = 1.0;
  uint64_t seed = 0;
  int64_t log_every = 10;
  int64_t eval_every = 0;  // 0: never during training
  int zero_stage = 0;
  ActivationCheckpointing activation_checkpointing = ActivationCheckpointing::kNone;
  // ZeRO 3: start each layer's all-gather while the layer before it runs, and reduce-scatter its
  // gradient while the next one's backward runs (DataParallel's overlap): "auto" where the
  // communicator overlaps compute (NCCL), "on", "off".
  std::string zero3_overlap = "auto";
  int64_t checkpoint_every = 0;  // 0: only on preemption
  std::string checkpoint_dir;    // resumable checkpoints (empty: none)
  bool resume = false;           // continue from the newest complete checkpoint in checkpoint_dir
  json run_config;               // stored in checkpoint manifests
  ScheduleOptions schedule;
  OptimizerOptions optimizer;
};

// Evaluation during training: run(model, step) every eval_every steps and after the last. Its
// verdict stops the loop and/or keeps this step's weights, which the loop then returns instead
// of the last step's (checkpoint selection; each rank holds 1/N of them in host memory).
// state()/restore() carry the evaluator's own memory (say, the best score so far) through
// checkpoints, beside the kept weights.
struct EvalVerdict {
  bool stop = false, keep = false;
};
struct EvalHook {
  std::function<EvalVerdict(CausalLM&, int64_t)> run;
  std::function<json()> state;
  std::function<void(const json&)> restore;
};

struct TrainResult {
  int64_t steps_done = 0;
  int64_t resumed_from = 0;  // step of the checkpoint resumed from (0: fresh start)
  double seconds = 0;
  int64_t tokens = 0;  // answer tokens seen, all ranks
  double last_loss = 0;
  bool stopped_early = false;
  bool preempted = false;  // checkpointed on SIGTERM/SIGUSR1; the caller exits kExitPreempted
  int64_t kept_step = 0;   // the step whose weights the model holds on return (0: none kept: the last)
};

// The item indices (sorted, unique) that `batches` global batches of a BatchIterator with this
// seed draw: what the training loop will see, so objectives cache reference values for those only.
// The loop seeds the primary items with opt.seed and the retain items with opt.seed + 1.
std::vector<int64_t> items_drawn(const std::vector<TokenizedItem>& items, int64_t batch_size, uint64_t seed,
                                 int64_t batches);

// What objective.prepare() sees for a run of `opt` over these items: the data, the text layout,
// and the item indices the loop will draw (items_drawn), so caches cover those only.
ObjectiveContext objective_context(std::vector<TokenizedItem>& forget, std::vector<TokenizedItem>& retain,
                                   const std::vector<Example>& forget_examples,
                                   const std::vector<Example>& retain_examples, const Tokenizer& tok, ChatTemplate tmpl,
                                   int64_t max_len, int64_t pad_id, const TrainOptions& opt, Communicator& comm);

// eval.run(model, step) runs every eval_every steps and after the last (see EvalHook).
// `sharded_engine`: an engine already built on `model` for these options (used instead of a
// new one), and where a ZeRO 3 run leaves its engine with the layers still sharded
// (dist/sharded_checkpoint.h saves from it); without it the model comes back whole. With it
// comes `identity`, the run identity taken before that engine sharded anything.
TrainResult train_loop(CausalLM& model, Objective& objective, const std::vector<TokenizedItem>& primary,
                       const std::vector<TokenizedItem>* retain, const TrainOptions& opt, int64_t pad_id,
                       const EvalHook& eval, Communicator& comm,
                       std::unique_ptr<DataParallel>* sharded_engine = nullptr, const json* identity = nullptr);

// ZeRO 3 kept sharded: the engine that trains `model`, loaded without its decoder-layer weights
// (`deferred`: each rank reads its shards), set in ctx.engine. When the objective locates what
// trains from gradients (Objective::locates_trained), it does so first through an engine over
// every parameter that trains so far; the values of those parameters (small: LoRA adapters)
// come back into the model one layer at a time, that engine goes, and this one is built over
// the objective's choice. Collective.
std::unique_ptr<DataParallel> make_sharded_engine(CausalLM& model, Objective& objective, ObjectiveContext& ctx,
                                                  Communicator& comm, const TrainOptions& opt,
                                                  const DeferredWeights& deferred);

// What --resume compares: the data, the model at the start (names, shapes, dtypes and a sample
// of every tensor's values), the method and the settings that change the result. `deferred`:
// weights the model was loaded without (sampled from the checkpoint, so the identity equals a
// whole load's). Taken before any engine shards the model.
json run_identity(const CausalLM& model, const std::vector<TokenizedItem>& primary,
                  const std::vector<TokenizedItem>* retain, const TrainOptions& opt, const DeferredWeights* deferred);

}  // namespace lethe
