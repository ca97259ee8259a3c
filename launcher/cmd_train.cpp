// `lethe finetune` and `lethe unlearn`: the same loop with a different Objective.
#include <spdlog/spdlog.h>

#include <sys/resource.h>

#include <filesystem>

#include "checkpoints/model_io.h"
#include "checkpoints/peft_adapter.h"
#include "common/error.h"
#include "data/dataset.h"
#include "dist/process_groups.h"
#include "dist/signals.h"
#include "eval/report.h"
#include "launcher/options.h"
#include "launcher/train_common.h"
#include "unlearn/trainer.h"

namespace fs = std::filesystem;

namespace lethe {

namespace {

void add_model_options(po::options_description& d) {
  d.add_options()("model", po::value<std::string>(), "model directory (HF or native checkpoint)")(
      "data-format", po::value<std::string>()->default_value("auto"), "auto, tofu, knowundo or jsonl");
}

struct Session {
  std::unique_ptr<Communicator> comm;
  CausalLM model{nullptr};
  Tokenizer tok;
  ChatTemplate tmpl = ChatTemplate::ChatML;
  int64_t max_len = 256;
};

}  // namespace

CausalLM load_for_training(const po::variables_map& vm, const std::string& dir, const Tokenizer& tok,
                           torch::Device device, Communicator& comm) {
  CausalLM model = load_model(dir, vm["dtype"].as<std::string>());
  if (tok.vocab_size() > model->config.vocab_size)
    throw InputError(dir + ": tokenizer has " + std::to_string(tok.vocab_size()) + " ids but the model only " +
                     std::to_string(model->config.vocab_size));
  const std::string adapter = vm["adapter"].as<std::string>();
  if (!adapter.empty()) {
    if (vm["lora-rank"].as<int64_t>() > 0) throw InputError("give --adapter or --lora-rank, not both");
    PeftAdapterInfo a = load_peft_adapter(model, adapter);
    spdlog::info("peft adapter {}: r {}, alpha {}, {} modules ({})", adapter, a.rank, a.alpha, a.adapted_modules,
                 json(a.target_modules).dump());
  } else if (vm["lora-rank"].as<int64_t>() > 0) {
    LoraOptions lo;
    lo.rank = vm["lora-rank"].as<int64_t>();
    lo.alpha = vm["lora-alpha"].as<double>();
    lo.dropout = vm["lora-dropout"].as<double>();
    lo.seed = vm["seed"].as<uint64_t>();
    if (vm.count("lora-target")) lo.target_modules = vm["lora-target"].as<std::vector<std::string>>();
    model->add_lora(lo);
  } else if (vm["lora-rank"].as<int64_t>() < 0) {
    throw InputError("--lora-rank must be >= 0");
  }
  model->to(device);
  int64_t trainable = 0;
  for (auto& p : model->trainable_parameters()) trainable += p.numel();
  spdlog::info("model {}: {} parameters, {} trainable, {}, on {} (rank r -> {}), communicator {}", dir,
               model->config.num_parameters(), trainable, model->config.torch_dtype, device.str(),
               device.is_cpu() ? "cpu" : "cuda:<local rank>", comm.name());
  return model;
}

TrainResult fit_objective(CausalLM& model, Objective& obj, const Tokenizer& tok, ChatTemplate tmpl, int64_t max_len,
                          const std::vector<Example>& primary, const std::vector<Example>* retain, const TrainOptions& to,
                          Communicator& comm, const std::function<bool(int64_t)>& on_eval, json* description) {
  auto items = tokenize_items(tok, tmpl, primary, max_len);
  std::vector<TokenizedItem> retain_items;
  if (retain) retain_items = tokenize_items(tok, tmpl, *retain, max_len);
  // The objective sees the model at theta_0 (whole, before sharding): reference caches, derived
  // items, parameter selection.
  ObjectiveContext ctx;
  ctx.forget = &items;
  ctx.retain = &retain_items;
  ctx.forget_examples = &primary;
  static const std::vector<Example> no_examples;
  ctx.retain_examples = retain ? retain : &no_examples;
  const int64_t batches = to.steps * to.grad_accum;
  ctx.forget_used = items_drawn(items, to.batch_size, to.seed, batches);
  ctx.retain_used = items_drawn(retain_items, to.batch_size, to.seed + 1, batches);
  ctx.tok = &tok;
  ctx.tmpl = tmpl;
  ctx.max_len = max_len;
  ctx.pad_id = pad_token_id(tok, tmpl);
  ctx.seed = to.seed;
  ctx.zero_stage = to.zero_stage;
  ctx.comm = &comm;
  obj.prepare(model, ctx);
  int64_t trainable = 0;
  for (auto& p : model->trainable_parameters()) trainable += p.numel();
  spdlog::info("training {} parameters ({} items{})", trainable, items.size(),
               retain ? fmt::format(", {} retain items", retain_items.size()) : "");
  if (description) *description = obj.describe();
  return train_loop(model, obj, items, retain ? &retain_items : nullptr, to, pad_token_id(tok, tmpl), on_eval, comm);
}

namespace {

Session open_session(const po::variables_map& vm) {
  Session s;
  std::string dir = require_string(vm, "model");
  const torch::Device device = select_device(vm["device"].as<std::string>());
  s.comm = make_device_communicator(device);
  s.tok = Tokenizer::from_file(tokenizer_path(dir));
  s.tmpl = read_chat_template(vm, dir);
  s.max_len = vm["max-len"].as<int64_t>();
  s.model = load_for_training(vm, dir, s.tok, device, *s.comm);
  return s;
}

// Teacher-forced metrics (no generation) on the given splits, logged and kept as history.
json quick_eval(Session& s, const std::vector<NamedSplit>& splits, int64_t step) {
  EvalOptions eo;
  eo.generate = false;
  eo.tofu = false;
  Report r = evaluate_report(s.model, s.tok, s.tmpl, splits, eo, s.max_len, s.comm.get());
  json h = {{"step", step}};
  std::string line = "eval @ step " + std::to_string(step);
  for (auto& m : r.splits) {
    h[m.name] = {{"accuracy", m.accuracy}, {"mean_nll", m.mean_nll}};
    line += fmt::format(" | {} acc {:.1f}% nll {:.3f}", m.name, 100 * m.accuracy, m.mean_nll);
  }
  if (r.has_scores) {
    h["unlearn_success"] = r.scores.unlearn_success;
    h["retention_success"] = r.scores.retention_success;
    line += fmt::format(" | US {:.1f} RS {:.1f}", r.scores.unlearn_success, r.scores.retention_success);
  }
  spdlog::info("{}", line);
  return h;
}

int train_and_save(const po::variables_map& vm, json cfg, Session& s, Objective& obj,
                   const std::vector<Example>& primary, const std::vector<Example>* retain,
                   const std::vector<NamedSplit>& eval_splits, double target_accuracy) {
  std::string out = require_string(vm, "out");
  std::string format = vm["format"].as<std::string>();
  if (format != "native" && format != "hf") throw InputError("--format: unknown format '" + format + "' (native, hf)");
  TrainOptions to = read_train_options(vm);
  // A resumed run may find its own earlier output missing only; an existing --out is final.
  if (fs::exists(out)) throw InputError("--out '" + out + "' already exists; refusing to overwrite it");
  const std::string adapter_out = vm["adapter-out"].as<std::string>();
  if (!adapter_out.empty() && fs::exists(adapter_out))
    throw InputError("--adapter-out '" + adapter_out + "' already exists; refusing to overwrite it");
  if (!adapter_out.empty() && vm["lora-rank"].as<int64_t>() <= 0 && vm["adapter"].as<std::string>().empty())
    throw InputError("--adapter-out needs LoRA adapters (--lora-rank R or --adapter DIR)");
  to.run_config = cfg;
  json history = json::array();
  auto on_eval = [&](int64_t step) {
    if (eval_splits.empty()) return false;
    json h = quick_eval(s, eval_splits, step);
    history.push_back(h);
    if (target_accuracy <= 0) return false;
    for (auto& sp : eval_splits)
      if (h[sp.name]["accuracy"].get<double>() < target_accuracy) return false;
    spdlog::info("target accuracy {:.1f}% reached at step {}", 100 * target_accuracy, step);
    return true;
  };
  json description;
  TrainResult res = fit_objective(s.model, obj, s.tok, s.tmpl, s.max_len, primary, retain, to, *s.comm, on_eval,
                                  &description);
  if (!description.empty()) cfg["objective"] = description;
  if (res.preempted) {
    spdlog::warn("preempted at step {}: checkpoint in {}; rerun the same command with --resume", res.steps_done,
                 to.checkpoint_dir);
    return kExitPreempted;
  }
  spdlog::info("trained {} steps in {:.1f} s ({:.0f} answer tokens/s, {} rank(s), ZeRO {})", res.steps_done - res.resumed_from,
               res.seconds, double(res.tokens) / std::max(res.seconds, 1e-9), s.comm->size(), to.zero_stage);
  // Peak resident memory of every rank (MiB), for the ZeRO memory table in docs/DISTRIBUTED.md.
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  auto mine = torch::tensor({int64_t(ru.ru_maxrss / 1024)}, torch::kLong);
  auto peaks = torch::zeros({s.comm->size()}, torch::kLong);
  all_gather_host(*s.comm, mine, peaks);
  std::vector<int64_t> peak_mib(peaks.data_ptr<int64_t>(), peaks.data_ptr<int64_t>() + peaks.numel());
  spdlog::info("peak resident memory per rank (MiB): {}", json(peak_mib).dump());
  if (!adapter_out.empty() && s.comm->rank() == 0) {
    save_peft_adapter(s.model, adapter_out, vm["model"].as<std::string>());
    spdlog::info("saved the LoRA adapter (peft layout) to {}", adapter_out);
  }
  s.model->merge_lora();
  obj.finish(s.model);
  cfg["result"] = {{"steps", res.steps_done}, {"resumed_from", res.resumed_from}, {"seconds", res.seconds},
                   {"tokens", res.tokens}, {"last_loss", res.last_loss}, {"stopped_early", res.stopped_early},
                   {"ranks", s.comm->size()}, {"peak_rss_mib", peak_mib}, {"history", history}};
  if (s.comm->rank() == 0) {  // parameters are whole on every rank after the step's all-gather
    save_model(s.model, out, format, cfg, vm["model"].as<std::string>());
    spdlog::info("saved {} checkpoint to {}", format, out);
  }
  s.comm->barrier();
  return 0;
}

}  // namespace

void add_finetune_options(po::options_description& d) {
  add_model_options(d);
  add_split_options(d, "data", "training data (TOFU/KnowUnDo JSON or JSONL)");
  add_train_options(d);
  d.add_options()("target-accuracy", po::value<double>()->default_value(0.0),
                  "stop once answer-token accuracy on --data reaches this (0..1; checked every --eval-every steps)");
}

int run_finetune(const po::variables_map& vm, const json& cfg) {
  auto data = load_split(vm, "data");
  double target = vm["target-accuracy"].as<double>();
  if (target < 0 || target > 1) throw InputError("--target-accuracy must be in [0, 1]");
  Session s = open_session(vm);
  auto obj = nll_objective_spec().make(vm);
  std::vector<NamedSplit> eval_splits;
  if (target > 0 || vm["eval-every"].as<int64_t>() > 0) {
    // One split per scope when the data carries one (synth data), so both must be learned.
    std::map<std::string, std::vector<Example>> by_scope;
    for (auto& e : data) by_scope[attr_string(e, "scope").empty() ? "data" : attr_string(e, "scope")].push_back(e);
    for (auto& [k, v] : by_scope) eval_splits.push_back({k, v});
  }
  return train_and_save(vm, cfg, s, *obj, data, nullptr, eval_splits, target);
}

void add_unlearn_options(po::options_description& d) {
  add_model_options(d);
  std::string methods;
  for (auto& spec : objective_registry()) methods += "\n  " + spec.name + ": " + spec.summary;
  d.add_options()("method", po::value<std::string>()->default_value("gd"), ("unlearning method:" + methods).c_str());
  add_split_options(d, "forget", "data to forget");
  add_split_options(d, "retain", "data to keep (methods with a retain term)");
  d.add_options()("eval-forget", po::value<std::string>()->default_value(""), "evaluate on this forget data during training")(
      "eval-retain", po::value<std::string>()->default_value(""), "evaluate on this retain data during training");
  add_train_options(d);
  for (auto& spec : objective_registry()) {
    po::options_description md(spec.name + " options");
    spec.add_options(md);
    if (!md.options().empty()) d.add(md);
  }
}

int run_unlearn(const po::variables_map& vm, const json& cfg) {
  const ObjectiveSpec& spec = find_objective(vm["method"].as<std::string>());
  auto forget = load_split(vm, "forget");
  auto obj = spec.make(vm);
  std::vector<Example> retain;
  if (obj->uses_retain()) {
    if (!vm.count("retain")) throw InputError("--method " + spec.name + " needs --retain data");
    retain = load_split(vm, "retain");
  }
  std::vector<NamedSplit> eval_splits;
  std::string fmt = vm["data-format"].as<std::string>();
  if (!vm["eval-forget"].as<std::string>().empty())
    eval_splits.push_back({"forget", read_examples(vm["eval-forget"].as<std::string>(), fmt)});
  if (!vm["eval-retain"].as<std::string>().empty())
    eval_splits.push_back({"retain", read_examples(vm["eval-retain"].as<std::string>(), fmt)});
  Session s = open_session(vm);
  spdlog::info("unlearn --method {}: {} forget items, {} retain items", spec.name, forget.size(), retain.size());
  return train_and_save(vm, cfg, s, *obj, forget, obj->uses_retain() ? &retain : nullptr, eval_splits, 0.0);
}

}  // namespace lethe
