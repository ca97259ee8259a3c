#include "unlearn/run.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>

#include "checkpoints/peft_adapter.h"
#include "common/fs.h"
#include "common/error.h"
#include "dist/collectives.h"
#include "dist/sharded_checkpoint.h"
#include "dist/signals.h"
#include "eval/report.h"
#include "eval/report_writer.h"
#include "eval/tofu.h"

namespace fs = std::filesystem;

namespace lethe {

RunText load_run_text(const RunSpec& spec) {
  return {Tokenizer::from_file(tokenizer_path(spec.model.dir)), chat_template_for(spec.data, spec.model.dir)};
}

namespace {
// Trainable parameters, counting those the model was loaded without (ZeRO 3 shards) and those
// an engine holds as shards.
int64_t trainable_count(CausalLM& model, const DeferredWeights* deferred, const DataParallel* engine = nullptr) {
  int64_t n = 0;
  for (auto& [name, p] : model->named_parameters(true).pairs()) {
    if (!p.requires_grad()) continue;
    if (engine)
      n += c10::multiply_integers(engine->full_shape(p));
    else if (deferred && deferred->has(name))
      n += c10::multiply_integers(deferred->shapes.at(name));
    else
      n += p.numel();
  }
  return n;
}
}  // namespace

CausalLM load_for_training(const RunSpec& spec, const Tokenizer& tok, torch::Device device, Communicator& comm,
                           DeferredWeights* deferred) {
  const std::string& dir = spec.model.dir;
  CausalLM model =
      deferred ? load_model_without_layers(dir, spec.model.dtype, *deferred) : load_model(dir, spec.model.dtype);
  if (tok.vocab_size() > model->config.vocab_size)
    throw InputError(dir + ": tokenizer has " + std::to_string(tok.vocab_size()) + " ids but the model only " +
                     std::to_string(model->config.vocab_size));
  if (!spec.model.adapter.empty()) {
    PeftAdapterInfo a = load_peft_adapter(model, spec.model.adapter);
    spdlog::info("peft adapter {}: r {}, alpha {}, {} modules ({})", spec.model.adapter, a.rank, a.alpha,
                 a.adapted_modules, json(a.target_modules).dump());
  } else if (spec.lora.rank > 0) {
    model->add_lora(spec.lora);
  }
  model->to(device);
  spdlog::info("model {}: {} parameters, {} trainable, {}, on {} (rank r -> {}), communicator {}", dir,
               model->config.num_parameters(), trainable_count(model, deferred), model->config.torch_dtype,
               device.str(), device.is_cpu() ? "cpu" : "cuda:<local rank>", comm.name());
  return model;
}

RunOutput run_objective(const RunSpec& spec, const RunText& text, const std::vector<Example>& primary,
                        const std::vector<Example>* retain, Communicator& comm, torch::Device device,
                        const EvalHook& eval, const BeforeMerge& before_merge, bool may_stay_sharded) {
  RunOutput out;
  auto obj = spec.method->make(spec.method_options);
  const TrainOptions& to = spec.train;
  const bool lora = spec.lora.rank > 0 || !spec.model.adapter.empty();
  const Objective::WeightUse use = obj->weight_use_outside_training();
  const bool sharded = may_stay_sharded && to.zero_stage == 3 && use != Objective::WeightUse::kWhole;
  if (to.zero_stage == 3 && !sharded)
    spdlog::info("ZeRO 3: every rank loads the model whole before sharding it ({})",
                 !may_stay_sharded ? "this command uses the trained model whole"
                                   : "this method reads the weights themselves before or after training");
  if (sharded)
    spdlog::info("ZeRO 3: each rank reads its shard of the decoder layers{} from {}; no rank holds them whole",
                 lora ? " (frozen base weights included; LoRA adapters attached)" : "", spec.model.dir);
  DeferredWeights deferred;
  out.model = load_for_training(spec, text.tok, device, comm, sharded ? &deferred : nullptr);
  obj->choose_trained(out.model);  // before the engine shards the model by what trains
  const int64_t max_len = spec.data.max_len;
  auto items = tokenize_items(text.tok, text.tmpl, primary, max_len);
  std::vector<TokenizedItem> retain_items;
  if (retain) retain_items = tokenize_items(text.tok, text.tmpl, *retain, max_len);
  // The objective sees the model at theta_0: whole, before sharding (reference caches, derived
  // items, parameter selection), or at ZeRO 3 kept sharded through the engine built first, whose
  // forward gathers one layer at a time (the same passes on every rank).
  static const std::vector<Example> no_examples;
  ObjectiveContext ctx = objective_context(items, retain_items, primary, retain ? *retain : no_examples, text.tok,
                                           text.tmpl, max_len, pad_token_id(text.tok, text.tmpl), to, comm);
  json identity;  // taken before the engine shards the model
  if (sharded) {
    identity = run_identity(out.model, items, retain ? &retain_items : nullptr, to, &deferred);
    out.engine = make_sharded_engine(out.model, *obj, ctx, comm, to, deferred);
  }
  obj->prepare(out.model, ctx);
  spdlog::info("training {} parameters ({} items{})", trainable_count(out.model, &deferred, out.engine.get()),
               items.size(), retain ? fmt::format(", {} retain items", retain_items.size()) : "");
  out.description = obj->describe();
  out.result = train_loop(out.model, *obj, items, retain ? &retain_items : nullptr, to, ctx.pad_id, eval, comm,
                          sharded ? &out.engine : nullptr, sharded ? &identity : nullptr);
  if (out.result.preempted) return out;
  if (before_merge) before_merge(out.model, out.engine.get());
  if (lora) obj->finish_adapters(out.model);
  if (out.engine) {  // kept sharded: the adapters are merged as the model is saved
    obj->finish_shards(*out.engine);
    return out;
  }
  out.model->merge_lora();
  obj->finish(out.model);
  return out;
}

std::map<std::string, torch::Tensor> gather_adapters(DataParallel& engine) {
  std::set<std::string> adapters;
  for (auto& [name, p] : engine.model()->named_weights())
    if (is_lora_parameter(name)) adapters.insert(name);
  std::map<std::string, torch::Tensor> out;
  visit_whole_named(engine, adapters, [&](const std::string& name, const torch::Tensor&, const torch::Tensor& value) {
    out[name] = value.to(torch::kCPU, false, true);
  });
  return out;
}

Relearner make_relearner(const DataOptions& data, const RelearnBudget& budget, int zero_stage, Communicator& comm,
                         torch::Device device) {
  return [data, budget, zero_stage, &comm, device](const ModelLoadOptions& model, const std::vector<Example>& items) {
    static const ObjectiveSpec finetune = nll_objective_spec();
    RunSpec spec;
    spec.model = model;
    spec.data = data;
    spec.method = &finetune;
    spec.method_options = MethodOptions(finetune.options);
    spec.train.batch_size = budget.batch_size;
    spec.train.zero_stage = zero_stage;
    spec.train.steps =
        std::max<int64_t>(1, int64_t(std::ceil(budget.epochs * double(items.size()) / double(budget.batch_size))));
    spec.train.schedule.kind = "constant";
    spec.train.schedule.lr = budget.lr;
    spec.train.log_every = spec.train.steps;
    spdlog::info("probe: relearning {} forget items, {} steps of {} at lr {}{}", items.size(), spec.train.steps,
                 budget.batch_size, budget.lr, zero_stage == 3 ? " (ZeRO 3)" : "");
    RunOutput run = run_objective(spec, load_run_text(spec), items, nullptr, comm, device, {}, {}, zero_stage == 3);
    auto out = std::make_unique<EvalModel>();
    out->model = run.model;
    out->engine = std::move(run.engine);  // the engine shares the model's module, not run's holder
    return out;
  };
}

namespace {

// Teacher-forced metrics (no generation) on the given splits, logged and kept as history; with
// TOFU metrics (truth ratios against `reference` for forget quality, model utility) when
// selecting a checkpoint.
json quick_eval(CausalLM& model, const RunText& text, const std::vector<NamedExamples>& splits, int64_t max_len,
                int64_t step, Communicator& comm, bool tofu, const std::vector<double>& reference) {
  EvalOptions eo;
  eo.generate = false;
  eo.tofu = tofu;
  Report r = evaluate_report(model, text.tok, text.tmpl, splits, eo, max_len, &comm);
  json h = {{"step", step}};
  std::string line = "eval @ step " + std::to_string(step);
  SplitFields fields;
  fields.tofu_terms = tofu;
  for (auto& m : r.splits) {
    h[m.name] = split_record(m, fields);
    line += fmt::format(" | {} acc {:.1f}% nll {:.3f}", m.name, 100 * m.accuracy, m.mean_nll);
  }
  if (r.has_scores) {
    h["knowundo"] = {{"unlearn_success", r.scores.unlearn_success},
                     {"retention_success", r.scores.retention_success},
                     {"average_success", r.scores.average_success}};
    line += fmt::format(" | US {:.1f} RS {:.1f}", r.scores.unlearn_success, r.scores.retention_success);
  }
  if (tofu) {
    json t = tofu_scores(r, false, reference, "");
    for (auto* k : {"forget_quality", "model_utility"})
      if (t.contains(k)) {
        h[k] = t[k];
        line += fmt::format(" | {} {:.4g}", k, t[k].get<double>());
      }
    if (t.contains("forget_quality") && t.contains("model_utility"))
      h["fq_mu"] = model_utility({t["forget_quality"].get<double>(), t["model_utility"].get<double>()});
  }
  spdlog::info("{}", line);
  return h;
}

}  // namespace

static bool finished_before(const TrainJob& job) {
  const std::string& out = job.output.out;
  if (!job.run.train.resume || !is_complete_dir(out)) return false;
  json stored;
  try {
    stored = read_run_config(out);
  } catch (const std::exception&) {
    return false;
  }
  stored.erase("objective");
  stored.erase("result");
  return stored == job.config;
}

void check_train_job(const TrainJob& job) {
  const OutputOptions& o = job.output;
  // --out is final: only a --resume of the run that wrote it finds it there (and has nothing
  // left to do); the adapter, written just before --out, likewise.
  const bool resumed = job.run.train.resume;
  if (fs::exists(o.out) && !finished_before(job))
    throw InputError("--out '" + o.out + "' already exists" +
                     (resumed && is_complete_dir(o.out) ? " and holds another run's model" : "") +
                     "; refusing to overwrite it");
  if (!o.adapter_out.empty() && fs::exists(o.adapter_out) && !(resumed && is_complete_dir(o.adapter_out)))
    throw InputError("--adapter-out '" + o.adapter_out + "' already exists; refusing to overwrite it");
  if (!o.adapter_out.empty() && job.run.lora.rank <= 0 && job.run.model.adapter.empty())
    throw InputError("--adapter-out needs LoRA adapters (--lora-rank R or --adapter DIR)");
  check_output_paths(job.run, o);
}

void check_output_paths(const RunSpec& run, const OutputOptions& o) {
  const std::string& ckpt = run.train.checkpoint_dir;
  if (!ckpt.empty() && (path_within(ckpt, o.out) || path_within(o.out, ckpt)))
    throw InputError("--checkpoint-dir '" + ckpt + "' and --out '" + o.out + "' must be separate directories");
  for (const std::string* input : {&run.model.dir, &run.model.adapter}) {
    if (input->empty()) continue;
    if (path_within(o.out, *input)) throw InputError("--out '" + o.out + "' lies inside the input '" + *input + "'");
    if (!ckpt.empty() && path_within(ckpt, *input))
      throw InputError("--checkpoint-dir '" + ckpt + "' lies inside the input '" + *input + "'");
  }
}

int run_training(const TrainJob& job, const Runtime& rt) {
  check_train_job(job);
  if (finished_before(job)) {  // killed after saving, then requeued
    spdlog::info("--out {} already holds this run's finished model; nothing to do", job.output.out);
    return 0;
  }
  Communicator& comm = *rt.world;
  const RunText text = load_run_text(job.run);
  json history = json::array();
  std::vector<std::string> split_names;
  for (auto& sp : job.eval_splits) split_names.push_back(sp.name);
  Selector selector(job.select, split_names, job.run.train.eval_every);
  EvalHook eval;
  eval.run = [&](CausalLM& model, int64_t step) {
    EvalVerdict v;
    if (job.eval_splits.empty()) return v;
    json h = quick_eval(model, text, job.eval_splits, job.run.data.max_len, step, comm, selector.active(),
                        selector.reference_truth_ratios());
    v = selector.consider(step, h);
    history.push_back(h);
    if (job.target_accuracy <= 0) return v;
    for (auto& sp : job.eval_splits)
      if (h[sp.name]["accuracy"].get<double>() < job.target_accuracy) return v;
    spdlog::info("target accuracy {:.1f}% reached at step {}", 100 * job.target_accuracy, step);
    v.stop = true;
    return v;
  };
  if (selector.active()) {  // the history too, so a resumed run reports every evaluation
    eval.state = [&] { return json{{"selector", selector.state()}, {"history", history}}; };
    eval.restore = [&](const json& s) {
      if (!s.is_object()) return;
      selector.restore(s.value("selector", json()));
      history = s.value("history", json::array());
    };
  }
  auto write_adapter = [&](CausalLM& model, DataParallel* sharded) {
    if (job.output.adapter_out.empty()) return;
    // Collective when sharded (every rank gathers), so every rank decides alike.
    if (any_rank(comm, is_complete_dir(job.output.adapter_out))) {  // --resume: written before an interruption
      spdlog::info("the LoRA adapter in {} was saved before the interruption", job.output.adapter_out);
      return;
    }
    std::map<std::string, torch::Tensor> values;
    if (sharded) values = gather_adapters(*sharded);
    if (comm.rank() != 0) return;
    save_peft_adapter(model, job.output.adapter_out, job.run.model.dir, sharded ? &values : nullptr);
    spdlog::info("saved the LoRA adapter (peft layout) to {}", job.output.adapter_out);
  };
  RunOutput run = run_objective(job.run, text, job.primary, job.uses_retain ? &job.retain : nullptr, comm, rt.device,
                                eval, write_adapter, true);
  const TrainResult& res = run.result;
  const TrainOptions& to = job.run.train;
  if (res.preempted) {
    spdlog::warn("preempted at step {}: checkpoint in {}; rerun the same command with --resume", res.steps_done,
                 to.checkpoint_dir);
    return kExitPreempted;
  }
  spdlog::info("trained {} steps in {:.1f} s ({:.0f} answer tokens/s, {} rank(s), ZeRO {})",
               res.steps_done - res.resumed_from, res.seconds, double(res.tokens) / std::max(res.seconds, 1e-9),
               comm.size(), to.zero_stage);
  // Peak resident memory of every rank (MiB), for the ZeRO memory table in docs/DISTRIBUTED.md.
  std::vector<int64_t> peak_mib = log_peak_rss(comm, "peak resident memory per rank");
  json cfg = job.config;
  if (!run.description.empty()) cfg["objective"] = run.description;
  cfg["result"] = {{"steps", res.steps_done}, {"resumed_from", res.resumed_from}, {"seconds", res.seconds},
                   {"tokens", res.tokens},    {"last_loss", res.last_loss},       {"stopped_early", res.stopped_early},
                   {"ranks", comm.size()},    {"peak_rss_mib", peak_mib},         {"history", history}};
  if (selector.active()) {
    json sel = selector.summary();
    sel["output_step"] = res.kept_step > 0 ? res.kept_step : res.steps_done;
    if (job.select.rule == "muse" && !sel["reached"].get<bool>())
      spdlog::warn(
          "select muse: no evaluated step reached the retain-only model's forget memorisation {:.4f}; the "
          "output is the last step",
          sel["reference_memorization"].get<double>());
    cfg["result"]["selection"] = sel;
    spdlog::info("select {}: the output is step {}", job.select.rule, sel["output_step"].get<int64_t>());
  }
  // Each rank writes its share of the output's shards: from the whole parameters every rank
  // holds after the step's all-gather, or (ZeRO 3 kept sharded) gathering one layer at a time.
  if (run.engine)
    save_model_from_engine(*run.engine, job.output.out, job.output.format, cfg, job.run.model.dir,
                           job.output.max_shard_bytes, comm);
  else
    save_model_on_ranks(run.model, job.output.out, job.output.format, cfg, job.run.model.dir,
                        job.output.max_shard_bytes, comm);
  log_peak_rss(comm, "peak resident memory per rank including the save");
  if (comm.rank() == 0) spdlog::info("saved {} checkpoint to {}", format_name(job.output.format), job.output.out);
  return 0;
}

}  // namespace lethe
