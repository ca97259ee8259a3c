#include "unlearn/step_bench.h"

#include <ATen/record_function.h>

#include <atomic>
#include <chrono>
#include <random>

#include "common/error.h"
#include "common/perf.h"
#include "data/bpe_trainer.h"
#include "data/tokenizer.h"
#include "dist/collectives.h"

namespace lethe {

double forward_flops(const ModelConfig& c, int64_t T) {
  const double C = double(c.hidden_size), I = double(c.intermediate_size), L = double(c.num_hidden_layers);
  const double q = double(c.num_attention_heads * c.head_dim), kv = double(c.num_key_value_heads * c.head_dim);
  const double per_layer = C * (q + 2 * kv) + q * C + 3 * C * I;           // attention and gated MLP projections
  const double matmul_weights = L * per_layer + double(c.vocab_size) * C;  // + the LM head
  const double attention = 4 * L * q * double(T) * double(T);
  return 2 * matmul_weights * double(T) + attention;
}

double training_flops(const ModelConfig& c, int64_t T, bool lora) { return (lora ? 2 : 3) * forward_flops(c, T); }

double default_peak_flops(torch::Device device, torch::ScalarType dtype, std::string* source) {
  if (device.is_cuda() && dtype == torch::kBFloat16) {
    if (source) *source = "H100/H200 dense bf16 (989 TFLOP/s)";
    return 989e12;
  }
  if (source) *source = "measured GEMM rate";
  return measure_gemm_flops(device, dtype);
}

namespace {

// Sequences of exactly T random tokens, the first half prompt (no loss), the second the answer.
std::vector<TokenizedItem> random_items(int64_t count, int64_t T, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> id(0, vocab - 1);
  std::vector<TokenizedItem> items(static_cast<size_t>(count));
  for (auto& it : items) {
    it.ids.resize(size_t(T));
    for (auto& x : it.ids) x = id(rng);
    it.prompt_len = T / 2;
  }
  return items;
}

// Text for the methods that derive their own items from the examples (refusals, entities).
std::vector<Example> random_examples(int64_t count, int64_t chars, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> letter('a', 'z');
  auto text = [&] {
    std::string s;
    for (int64_t i = 0; i < chars; ++i) s += (i % 6 == 5) ? ' ' : char(letter(rng));
    return s;
  };
  std::vector<Example> out(static_cast<size_t>(count));
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].prompt = text() + "?";
    out[i].response = text() + ".";
    out[i].attrs = {{"entity", "entity " + std::to_string(i % 4)}};
  }
  return out;
}

// ATen operator calls on any thread while counted (bench_step's count_ops).
std::atomic<int64_t> operator_calls{0};

// Counts every operator call from construction to destruction (a global RecordFunction callback).
class OperatorCounter {
 public:
  OperatorCounter() {
    handle_ = at::addGlobalCallback(
        at::RecordFunctionCallback([](const at::RecordFunction&) -> std::unique_ptr<at::ObserverContext> {
          operator_calls.fetch_add(1, std::memory_order_relaxed);
          return nullptr;
        }).scopes({at::RecordScope::FUNCTION}));
  }
  ~OperatorCounter() { at::removeCallback(handle_); }
  OperatorCounter(const OperatorCounter&) = delete;
  OperatorCounter& operator=(const OperatorCounter&) = delete;

 private:
  at::CallbackHandle handle_;
};

double mean_length(const std::vector<TokenizedItem>& items) {
  double n = 0;
  for (auto& it : items) n += double(it.ids.size());
  return items.empty() ? 0 : n / double(items.size());
}

}  // namespace

json bench_step(const StepBenchOptions& o, Communicator& comm, torch::Device device) {
  if (!o.method) throw InputError("bench step: no method");
  if (o.seq_len < 2) throw InputError("--seq-len must be at least 2");
  ModelConfig c = ModelConfig::from_json(read_json_file(o.model_config), o.model_config);
  const std::string dtype_name = o.dtype.empty() ? c.torch_dtype : o.dtype;
  const torch::ScalarType dtype = parse_dtype(dtype_name, "--dtype");
  const int64_t T = o.seq_len, B = o.train.batch_size;
  if (T > c.max_position_embeddings)
    throw InputError("--seq-len " + std::to_string(T) + " exceeds the model's max_position_embeddings " +
                     std::to_string(c.max_position_embeddings));

  CausalLM model(c);
  model->init_weights(o.train.seed);
  model->to(dtype);
  if (o.lora.rank > 0) model->add_lora(o.lora);
  model->to(device);

  TrainOptions to = o.train;
  to.steps = o.warmup + o.train.steps;
  to.eval_every = 1;  // the hook below marks every step's end
  to.log_every = to.steps;
  to.checkpoint_dir.clear();
  to.checkpoint_every = 0;
  to.resume = false;

  // A small byte-level tokenizer for the methods that tokenize text of their own (refusals);
  // the timed sequences themselves are random ids over the model's whole vocabulary.
  const int64_t n_items = std::max<int64_t>(4 * B, 8);
  std::vector<Example> forget_ex = random_examples(n_items, T / 2, o.train.seed + 7);
  std::vector<Example> retain_ex = random_examples(n_items, T / 2, o.train.seed + 8);
  std::vector<std::string> texts;
  for (auto& e : forget_ex) texts.push_back(e.prompt + " " + e.response);
  BpeTrainOptions bo;
  bo.vocab_size = std::min<int64_t>(300, c.vocab_size);
  Tokenizer tok = Tokenizer::from_json(train_bpe_tokenizer(texts, bo), "bench tokenizer");
  std::vector<TokenizedItem> forget = random_items(n_items, T, c.vocab_size, o.train.seed + 1);
  std::vector<TokenizedItem> retain = random_items(n_items, T, c.vocab_size, o.train.seed + 2);

  auto objective = o.method->make(o.method_options);
  ObjectiveContext ctx =
      objective_context(forget, retain, forget_ex, retain_ex, tok, ChatTemplate::ChatML, T, /*pad_id=*/0, to, comm);
  objective->choose_trained(model);
  objective->prepare(model, ctx);  // reference caches etc.: not part of the step
  const bool uses_retain = objective->uses_retain();

  synchronize(device);
  reset_peak_memory(device);
  std::vector<double> ends;  // seconds since the start at the end of each step
  std::unique_ptr<OperatorCounter> counter;
  if (o.count_ops) counter = std::make_unique<OperatorCounter>();
  int64_t calls_before_timed = operator_calls.load();
  auto t0 = std::chrono::steady_clock::now();
  auto on_step = [&](int64_t) {
    synchronize(device);
    ends.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (int64_t(ends.size()) == o.warmup) calls_before_timed = operator_calls.load();
    return false;
  };
  train_loop(model, *objective, forget, uses_retain ? &retain : nullptr, to, ctx.pad_id,
             {[&](CausalLM&, int64_t step) {
                return EvalVerdict{on_step(step), false};
              },
              {},
              {}},
             comm);
  const int64_t calls = operator_calls.load() - calls_before_timed;
  counter.reset();
  std::vector<double> step_s;
  for (size_t i = size_t(o.warmup); i < ends.size(); ++i) step_s.push_back(ends[i] - (i ? ends[i - 1] : 0.0));
  // Every rank's step ends at the same collective: rank 0's times are the job's.
  const double med = median(step_s);

  const bool lora = o.lora.rank > 0;
  const double seqs = double(B * to.grad_accum);
  double flops = seqs * training_flops(c, int64_t(mean_length(forget) + 0.5), lora);
  double tokens = seqs * mean_length(forget);
  if (uses_retain) {
    flops += seqs * training_flops(c, int64_t(mean_length(retain) + 0.5), lora);
    tokens += seqs * mean_length(retain);
  }
  // Sequences the objective derives and trains on besides forget and retain (dpo's refusals).
  const json described = objective->describe();
  const double preferred = described.value("preferred_mean_tokens", 0.0);
  if (preferred > 0) {
    flops += seqs * training_flops(c, int64_t(preferred + 0.5), lora);
    tokens += seqs * preferred;
  }
  std::string peak_source = "given";
  const double peak = o.peak_flops > 0 ? o.peak_flops : default_peak_flops(device, dtype, &peak_source);
  const std::vector<int64_t> memory = all_gather_int(comm, peak_memory_mib(device));
  const double achieved = flops / std::max(med, 1e-12);
  int64_t trainable = 0;
  for (auto& p : model->trainable_parameters()) trainable += p.numel();
  return {{"bench", "step"},
          {"impl", "lethe"},
          {"method", o.method->name},
          {"model_config", o.model_config},
          {"params", c.num_parameters()},
          {"trainable", trainable},
          {"device", device.str()},
          {"dtype", dtype_name},
          {"threads", torch::get_num_threads()},
          {"ranks", comm.size()},
          {"zero_stage", to.zero_stage},
          {"activation_checkpointing", activation_checkpointing_name(to.activation_checkpointing)},
          {"zero3_overlap", to.zero3_overlap},
          {"fused_adamw", to.optimizer.fused},
          {"lora_rank", o.lora.rank},
          {"batch_size", B},
          {"grad_accum", to.grad_accum},
          {"seq_len", T},
          {"preferred_seq_len", preferred},
          {"warmup", o.warmup},
          {"steps", o.train.steps},
          {"step_s", med},
          {"step_s_all", step_s},
          {"tokens_per_step", tokens},
          {"tokens_per_s", tokens / std::max(med, 1e-12)},
          {"flops_per_step", flops},
          {"achieved_flops", achieved},
          {"peak_flops", peak},
          {"peak_flops_source", peak_source},
          {"mfu", achieved / peak},
          {"peak_memory_mib", memory},
          {"peak_memory_kind", device.is_cuda() ? "cuda allocated" : "host resident set"},
          {"ops_per_step", o.count_ops ? json(double(calls) / double(o.train.steps)) : json()},
          {"s_per_op", o.count_ops ? json(med * double(o.train.steps) / std::max<double>(double(calls), 1)) : json()}};
}

}  // namespace lethe
