// `lethe bench step|checkpoint|merge`: throughput on the real code paths, one JSON line per run
// on stdout with --json (bench/ runs them next to the Python peers and prints the ratios).
#include <spdlog/spdlog.h>

#include <iostream>

#include "checkpoints/io_bench.h"
#include "launcher/command.h"
#include "launcher/option_groups.h"
#include "unlearn/step_bench.h"

namespace lethe {

namespace {

void print(const json& result, bool as_json, const std::vector<std::string>& summary_keys) {
  if (as_json) {
    std::cout << result.dump() << "\n" << std::flush;
    return;
  }
  for (auto& k : summary_keys)
    if (result.contains(k)) std::cout << k << ": " << result[k].dump() << "\n";
}

// The flags every bench command has besides its library options.
template <class Options>
struct BenchFlags {
  Options bench;
  bool json_out = false;
};

void bind_json(OptionSet& o, bool& json_out) { o.add("json", &json_out, "print one JSON line"); }

// --dir (an existing directory for scratch outputs, removed after each run) and --repeats.
void bind_scratch(OptionSet& o, std::string& dir, int64_t& repeats, const std::string& what) {
  o.require("dir", &dir, "existing directory on the disk to measure; " + what + " are written there and removed");
  o.add("repeats", &repeats, "runs (medians reported)", positive<int64_t>());
}

// ---- bench step ----

struct StepFlags : BenchFlags<StepBenchOptions> {
  MethodChoice method;
};

void declare_step(OptionSet& o, StepFlags& f, const RuntimeOptions& rt) {
  StepBenchOptions& b = f.bench;
  o.group("bench", "Benchmark");
  o.require("model-config", &b.model_config, "HF config.json of the model (configs/models/*.json)");
  o.add("batch-size", &b.train.batch_size, "global sequences per micro-batch (divisible by the ranks)",
        positive<int64_t>());
  o.add("grad-accum", &b.train.grad_accum, "micro-batches per step", positive<int64_t>());
  o.add("seq-len", &b.seq_len, "tokens per sequence (half prompt, half answer)",
        Check<int64_t>([](const int64_t& v) { return v >= 2 && v <= (int64_t(1) << 20) ? "" : "must be in 2..2^20"; }));
  b.train.steps = 5;
  o.add("steps", &b.train.steps, "timed steps (the median is reported)", positive<int64_t>());
  o.add("warmup", &b.warmup, "untimed steps first", non_negative<int64_t>());
  o.add("zero-stage", &b.train.zero_stage, "ZeRO stage across ranks (0-3)",
        Check<int>([](const int& v) { return v >= 0 && v <= 3 ? "" : "is not supported (0, 1, 2, 3)"; }));
  bind_activation_checkpointing(o, b.train);
  bind_zero3_overlap(o, b.train);
  auto unfused = std::make_shared<bool>(false);
  o.add("unfused-adamw", unfused.get(), "AdamW as a loop over parameters (the fused kernel's before/after)");
  o.then([&b, unfused](const po::variables_map&, std::vector<std::string>&) { b.train.optimizer.fused = !*unfused; });
  o.add("count-ops", &b.count_ops,
        "also count the ATen operator calls per step (ops_per_step, s_per_op; the step runs slower while counted)");
  o.add("peak-flops", &b.peak_flops,
        "peak FLOP/s for MFU (0: 989e12 for bf16 on CUDA, else the GEMM rate measured now)", non_negative<double>());
  bind_dtype(o, b.dtype);
  bind_json(o, f.json_out);
  bind_lora(o, b.lora, rt);
  bind_method(o, f.method);
  o.then([&f, &rt](const po::variables_map&, std::vector<std::string>&) {
    f.bench.train.seed = rt.seed;
    f.bench.train.schedule.lr = 1e-5;
    f.bench.train.schedule.kind = "constant";
    f.bench.method = f.method.spec;
    f.bench.method_options = f.method.options;
  });
}

int run_step(const StepFlags& f, const Runtime& rt, const json&) {
  json r = bench_step(f.bench, *rt.world, rt.device);
  if (rt.rank.world_rank == 0)
    print(r, f.json_out,
          {"method", "params", "device", "dtype", "ranks", "step_s", "tokens_per_s", "achieved_flops", "peak_flops",
           "mfu", "peak_memory_mib"});
  return 0;
}

// ---- bench checkpoint ----

using CheckpointFlags = BenchFlags<CheckpointBenchOptions>;

void declare_checkpoint(OptionSet& o, CheckpointFlags& f, const RuntimeOptions&) {
  CheckpointBenchOptions& b = f.bench;
  o.group("bench", "Benchmark");
  o.require("model-config", &b.model_config, "HF config.json of a random model to write and read");
  bind_scratch(o, b.dir, b.repeats, "the checkpoints");
  bind_format(o, b.format, "format", "checkpoint format");
  bind_dtype(o, b.dtype);
  bind_json(o, f.json_out);
}

int run_checkpoint(const CheckpointFlags& f, const Runtime&, const json&) {
  print(bench_checkpoint(f.bench), f.json_out,
        {"format", "bytes", "write_s", "write_MBps", "read_cold_s", "read_cold_MBps", "read_warm_MBps"});
  return 0;
}

// ---- bench merge ----

using MergeFlags = BenchFlags<MergeBenchOptions>;

void declare_merge(OptionSet& o, MergeFlags& f, const RuntimeOptions&) {
  MergeBenchOptions& b = f.bench;
  o.group("bench", "Benchmark");
  bind_merge_inputs(o, b.base, b.models);
  bind_scratch(o, b.dir, b.repeats, "the merged outputs");
  bind_format(o, b.format, "format", "output format");
  auto warm_flag = std::make_shared<bool>(false);
  o.add("warm", warm_flag.get(), "keep the inputs in the page cache (default: dropped before every run)");
  o.then([&b, warm_flag](const po::variables_map&, std::vector<std::string>&) { b.cold = !*warm_flag; });
  bind_merge(o, b.merge);
  bind_json(o, f.json_out);
}

int run_merge(const MergeFlags& f, const Runtime& rt, const json&) {
  json r = bench_merge(f.bench, *rt.world);
  if (rt.rank.world_rank == 0)
    print(r, f.json_out, {"rule", "ranks", "input_bytes", "output_bytes", "merge_s", "output_MBps"});
  return 0;
}

}  // namespace

std::vector<Command> bench_commands() {
  return {
      make_command<StepFlags>("bench step", "time the training step of a method (JSON: step_s, tokens/s, MFU, memory)",
                              true, true, declare_step, run_step),
      make_command<CheckpointFlags>("bench checkpoint",
                                    "checkpoint write and read bandwidth (save_model / load_model, fsynced)", false,
                                    false, declare_checkpoint, run_checkpoint),
      make_command<MergeFlags>("bench merge", "merge throughput from disk (lethe merge's code path)", true, false,
                               declare_merge, run_merge)};
}

}  // namespace lethe
