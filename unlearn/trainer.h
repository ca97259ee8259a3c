// The training loop shared by finetune and every unlearning method:
//   batch -> objective (forward) -> backward (accumulate) -> clip -> step -> log -> maybe eval.
#pragma once
#include <functional>

#include "optim/optimizer.h"
#include "optim/schedule.h"
#include "unlearn/objective.h"

namespace lethe {

struct TrainOptions {
  int64_t steps = 100;       // optimizer steps
  int64_t batch_size = 8;    // items per micro-batch
  int64_t grad_accum = 1;    // micro-batches per step
  double max_grad_norm = 1.0;
  uint64_t seed = 0;
  int64_t log_every = 10;
  int64_t eval_every = 0;    // 0: never during training
  ScheduleOptions schedule;
  OptimizerOptions optimizer;
};

struct TrainResult {
  int64_t steps_done = 0;
  double seconds = 0;
  int64_t tokens = 0;  // answer tokens seen
  double last_loss = 0;
  bool stopped_early = false;
};

// on_eval(step) runs every eval_every steps and after the last; returning true stops training.
TrainResult train_loop(CausalLM& model, Objective& objective, const std::vector<TokenizedItem>& primary,
                       const std::vector<TokenizedItem>* retain, const TrainOptions& opt, int64_t pad_id,
                       const std::function<bool(int64_t)>& on_eval);

}  // namespace lethe
