// `lethe bench step`: the training step of one method on a model built from an HF config, timed
// the way it runs in `lethe unlearn` (the same objective, prepare, data-parallel engine, ZeRO
// stage, optimizer and loop), on random token sequences of exactly --seq-len tokens (half prompt,
// half answer). Reports the median step time after warm-up, throughput, the model FLOPs of the
// step and the MFU against a peak (measured on the spot on CPU), and peak memory per rank.
#pragma once
#include <string>

#include "common/json_io.h"
#include "dist/communicator.h"
#include "model/lora.h"
#include "unlearn/objective.h"
#include "unlearn/trainer.h"

namespace lethe {

struct StepBenchOptions {
  std::string model_config;  // HF config.json
  std::string dtype;         // float32 | bfloat16 ("": the config's torch_dtype)
  int64_t seq_len = 256;
  int64_t warmup = 2;     // steps not timed
  double peak_flops = 0;  // 0: the default for the device (below)
  // Also count the ATen operator calls of each timed step (nested ones included: every call the
  // dispatcher makes, which is what a CUDA step pays host time for). Every operator is then
  // recorded, which slows the step: its times are not the plain step's.
  bool count_ops = false;
  LoraOptions lora;    // rank 0: every weight trains
  TrainOptions train;  // train.steps: the timed steps
  const ObjectiveSpec* method = nullptr;
  MethodOptions method_options;
};

// Model FLOPs of one sequence of T tokens, forward only, PaLM's convention: 2 per multiply-add
// of every matmul weight (the decoder's projections and the LM head; embeddings are lookups)
// plus the attention scores and values, 4 * layers * heads * head_dim * T^2 (the whole T x T
// square, as MFU figures are usually quoted).
double forward_flops(const ModelConfig& c, int64_t T);
// A training pass: forward + backward. The backward pass costs twice the forward (gradients
// of the activations and of the weights); with LoRA the frozen weights get no gradient, so it
// costs about one forward (the adapters' own FLOPs are small and not counted).
double training_flops(const ModelConfig& c, int64_t T, bool lora);

// The peak FLOP/s MFU is measured against when none is given: 989e12 for bf16 on CUDA (H100 /
// H200 dense bf16), else the GEMM rate measured now (common/perf.h).
double default_peak_flops(torch::Device device, torch::ScalarType dtype, std::string* source);

// Runs the benchmark over `comm` on `device`; the JSON on rank 0 has step_s, tokens_per_s,
// flops_per_step, achieved_flops, peak_flops, mfu, peak_memory_mib (per rank) and the settings,
// and with count_ops ops_per_step (this rank's operator calls per timed step, their mean) and
// s_per_op (step_s / ops_per_step: the host time of one call and its share of the compute).
json bench_step(const StepBenchOptions& o, Communicator& comm, torch::Device device);

}  // namespace lethe
