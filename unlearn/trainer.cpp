#include "unlearn/trainer.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "common/error.h"
#include "dist/data_parallel.h"
#include "dist/sharded_checkpoint.h"
#include "dist/collectives.h"
#include "common/hash.h"
#include "dist/signals.h"

namespace lethe {

namespace {

std::string hms(double s) {
  int64_t t = int64_t(s + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld", (long long)(t / 3600), (long long)(t / 60 % 60),
                (long long)(t % 60));
  return buf;
}

// This rank's contiguous share of a global batch.
std::vector<int64_t> local_slice(const std::vector<int64_t>& global, const Communicator& comm) {
  const size_t per = global.size() / size_t(comm.size());
  return {global.begin() + long(per * size_t(comm.rank())), global.begin() + long(per * size_t(comm.rank() + 1))};
}

}  // namespace

std::vector<int64_t> items_drawn(const std::vector<TokenizedItem>& items, int64_t batch_size, uint64_t seed,
                                 int64_t batches) {
  if (items.empty()) return {};
  BatchIterator it(&items, batch_size, seed, 0);
  std::vector<char> seen(items.size(), 0);
  for (int64_t b = 0; b < batches; ++b)
    for (int64_t i : it.next_indices()) seen[size_t(i)] = 1;
  std::vector<int64_t> out;
  for (size_t i = 0; i < seen.size(); ++i)
    if (seen[i]) out.push_back(int64_t(i));
  return out;
}

ObjectiveContext objective_context(std::vector<TokenizedItem>& forget, std::vector<TokenizedItem>& retain,
                                   const std::vector<Example>& forget_examples,
                                   const std::vector<Example>& retain_examples, const Tokenizer& tok, ChatTemplate tmpl,
                                   int64_t max_len, int64_t pad_id, const TrainOptions& opt, Communicator& comm) {
  ObjectiveContext ctx;
  ctx.forget = &forget;
  ctx.retain = &retain;
  ctx.forget_examples = &forget_examples;
  ctx.retain_examples = &retain_examples;
  const int64_t batches = opt.steps * opt.grad_accum;
  ctx.forget_used = items_drawn(forget, opt.batch_size, opt.seed, batches);
  ctx.retain_used = items_drawn(retain, opt.batch_size, opt.seed + 1, batches);
  ctx.tok = &tok;
  ctx.tmpl = tmpl;
  ctx.max_len = max_len;
  ctx.pad_id = pad_id;
  ctx.seed = opt.seed;
  ctx.zero_stage = opt.zero_stage;
  ctx.comm = &comm;
  return ctx;
}

// What defines a run's result, recorded in every checkpoint and compared on --resume: the
// tokenized data (so data files, tokenizer, template and --max-len), the model at the start
// (names, shapes, dtypes and a sample of every tensor's values: another base model or another
// adapter initialisation), the method and its options, and the training settings that change
// the result. The rank count and ZeRO stage may change across a resume (the result does not),
// and so may --steps (to train on).
json run_identity(const CausalLM& model, const std::vector<TokenizedItem>& primary,
                  const std::vector<TokenizedItem>* retain, const TrainOptions& opt, const DeferredWeights* deferred) {
  auto items_digest = [](const std::vector<TokenizedItem>& items) {
    uint64_t h = kFnvOffset;
    for (auto& it : items) {
      h = fnv1a(&it.prompt_len, sizeof it.prompt_len, h);
      h = fnv1a(it.ids.data(), it.ids.size() * sizeof(int64_t), h);
    }
    return hex64(h) + " (" + std::to_string(items.size()) + " items)";
  };
  uint64_t mh = kFnvOffset;
  for (auto& [name, t0] : model->named_weights()) {
    torch::NoGradGuard ng;
    const bool from_file = deferred && deferred->has(name);  // sampled from the checkpoint: the same values
    const std::vector<int64_t> shape = from_file ? deferred->shapes.at(name) : t0.sizes().vec();
    mh = fnv1a(name, mh);
    for (auto d : shape) mh = fnv1a(&d, sizeof d, mh);
    const auto dtype = t0.scalar_type();
    mh = fnv1a(&dtype, sizeof dtype, mh);
    const int64_t n = c10::multiply_integers(shape), k = std::min<int64_t>(n, 1024);
    if (k > 0) {
      // float32 positions (as ever, so identities stay comparable) clamped: above 2^24 elements
      // the last one rounds up past the end.
      auto index = torch::linspace(0, double(n - 1), k).to(torch::kLong).clamp_max(n - 1);
      torch::Tensor sample;
      if (from_file)
        sample =
            deferred
                ->read_elements(name, std::vector<int64_t>(index.data_ptr<int64_t>(), index.data_ptr<int64_t>() + k))
                .to(dtype)
                .to(torch::kFloat);
      else
        sample = t0.detach().reshape({-1}).index_select(0, index).to(torch::kCPU, torch::kFloat);
      mh = fnv1a(sample.contiguous().data_ptr(), size_t(k) * sizeof(float), mh);
    }
  }
  const json& rc = opt.run_config.is_object() ? opt.run_config : json::object();
  json id = {{"data", items_digest(primary)},
             {"model", hex64(mh)},
             {"method", rc.contains("method") ? rc["method"] : json("nll")},
             {"lora", rc.value("lora", json())},
             {"subset", rc.value("subset", json())},
             {"training",
              {{"batch_size", opt.batch_size},
               {"grad_accum", opt.grad_accum},
               {"lr", opt.schedule.lr},
               {"schedule", opt.schedule.kind},
               {"warmup_steps", opt.schedule.warmup_steps},
               {"min_lr_ratio", opt.schedule.min_lr_ratio},
               {"optimizer", opt.optimizer.name},
               {"weight_decay", opt.optimizer.weight_decay},
               {"momentum", opt.optimizer.momentum},
               {"max_grad_norm", opt.max_grad_norm},
               {"seed", opt.seed}}}};
  if (retain) id["retain_data"] = items_digest(*retain);
  return id;
}

std::unique_ptr<DataParallel> make_sharded_engine(CausalLM& model, Objective& objective, ObjectiveContext& ctx,
                                                  Communicator& comm, const TrainOptions& opt,
                                                  const DeferredWeights& deferred) {
  auto build = [&] {
    auto e = std::make_unique<DataParallel>(model, comm, opt.zero_stage, opt.optimizer, opt.activation_checkpointing,
                                            &deferred);
    if (opt.zero3_overlap != "auto") e->set_overlap(opt.zero3_overlap == "on");
    return e;
  };
  if (objective.locates_trained()) {
    std::set<std::string> trained;
    for (auto& [name, p] : model->named_parameters(true).pairs())
      if (p.requires_grad()) trained.insert(name);
    std::map<std::string, torch::Tensor> values;
    {
      auto probe = build();
      ctx.engine = probe.get();
      objective.locate_trained(model, ctx);
      ctx.engine = nullptr;
      visit_whole_named(*probe, trained, [&](const std::string& name, const torch::Tensor&, const torch::Tensor& v) {
        values[name] = v.clone();
      });
    }
    torch::NoGradGuard ng;
    auto params = model->named_parameters(true);
    for (auto& [name, v] : values) params[name].set_data(v);
  }
  auto engine = build();
  ctx.engine = engine.get();
  return engine;
}

// InputError listing what differs between a checkpoint's run and this one.
void require_same_run(const json& stored, const json& now, const std::string& dir) {
  if (stored.is_null())
    throw InputError("--resume: checkpoint '" + dir +
                     "' records no run identity (written by an older lethe); resume "
                     "needs a checkpoint of this run");
  std::string diffs;
  for (auto& [key, value] : now.items()) {
    const json& was = stored.contains(key) ? stored[key] : json();
    if (was == value) continue;
    if (value.is_object() && was.is_object()) {
      for (auto& [k, v] : value.items())
        if (!was.contains(k) || was[k] != v)
          diffs += (diffs.empty() ? "" : "; ") + key + "." + k + " " + (was.contains(k) ? was[k].dump() : "none") +
                   " -> " + v.dump();
    } else {
      diffs += (diffs.empty() ? "" : "; ") + key + " " + was.dump() + " -> " + value.dump();
    }
  }
  if (!diffs.empty())
    throw InputError("--resume: checkpoint '" + dir + "' belongs to another run (" + diffs +
                     "); use another --checkpoint-dir or the original settings");
}

TrainResult train_loop(CausalLM& model, Objective& objective, const std::vector<TokenizedItem>& primary,
                       const std::vector<TokenizedItem>* retain, const TrainOptions& opt, int64_t pad_id,
                       const EvalHook& eval, Communicator& comm, std::unique_ptr<DataParallel>* sharded_engine,
                       const json* identity_before_engine) {
  if (opt.steps <= 0) throw InputError("--steps must be positive");
  if (opt.grad_accum <= 0) throw InputError("--grad-accum must be positive");
  if (opt.batch_size % comm.size() != 0)
    throw InputError("--batch-size " + std::to_string(opt.batch_size) +
                     " (the global batch) must be divisible by the " + std::to_string(comm.size()) + " ranks");
  if (objective.uses_retain() && (!retain || retain->empty()))
    throw InputError("this method needs retain data (--retain)");
  // Dropout draws from the global generator: seeded per rank so runs reproduce (a resume
  // restores each rank's stream from the checkpoint).
  torch::manual_seed(opt.seed * 1000003ULL + uint64_t(comm.rank()));
  // An engine built by the caller has sharded the model already: the caller took the identity.
  const bool prebuilt = sharded_engine && *sharded_engine;
  LETHE_CHECK(prebuilt == (identity_before_engine != nullptr), "train_loop: a prebuilt engine comes with its identity");
  const json identity =
      prebuilt ? *identity_before_engine : run_identity(model, primary, retain, opt, nullptr);  // before ZeRO shards
  std::unique_ptr<DataParallel> engine =
      prebuilt
          ? std::move(*sharded_engine)
          : std::make_unique<DataParallel>(model, comm, opt.zero_stage, opt.optimizer, opt.activation_checkpointing);
  DataParallel& dp = *engine;
  if (opt.zero3_overlap != "auto") dp.set_overlap(opt.zero3_overlap == "on");
  if (auto penalty = objective.weight_penalty()) dp.set_weight_penalty(penalty);
  BatchIterator data(&primary, opt.batch_size, opt.seed, pad_id);
  std::unique_ptr<BatchIterator> retain_data;
  if (objective.uses_retain())
    retain_data = std::make_unique<BatchIterator>(retain, opt.batch_size, opt.seed + 1, pad_id);

  TrainResult res;
  int64_t first_step = 1, last_evaluated = 0;
  auto is_eval_step = [&](int64_t step) {
    return (opt.eval_every > 0 && step % opt.eval_every == 0) || step == opt.steps;
  };
  auto evaluate = [&](int64_t step) {  // true: stop
    last_evaluated = step;
    EvalVerdict v = eval.run(model, step);
    if (v.keep) {
      dp.keep_params();
      res.kept_step = step;
    }
    return v.stop;
  };
  bool resumed_stop = false;
  if (opt.resume && !opt.checkpoint_dir.empty()) {
    std::string dir = latest_complete_checkpoint(opt.checkpoint_dir);
    if (!dir.empty()) {
      ShardedCheckpoint ck = load_sharded_checkpoint(dir);
      const json& m = ck.manifest;
      require_same_run(m.value("run_identity", json()), identity, dir);
      dp.load_sharded(ck.shards, m.at("layout"), dir);
      data.seek(m.at("data")[0].get<int64_t>(), m.at("data")[1].get<int64_t>());
      if (retain_data) retain_data->seek(m.at("retain_data")[0].get<int64_t>(), m.at("retain_data")[1].get<int64_t>());
      // The same rank count restores each rank's own RNG stream; another count restarts them
      // from rank 0's (only LoRA dropout draws from it).
      int src = int(ck.shards.size()) == comm.size() ? comm.rank() : 0;
      set_cpu_rng_state(ck.shards[size_t(src)]->read("rng_state"));
      objective.restore(m.value("objective_state", json::object()));
      if (eval.restore) eval.restore(m.value("eval_state", json()));
      res.kept_step = m.value("kept_step", int64_t(0));
      res.resumed_from = res.steps_done = m.at("step").get<int64_t>();
      res.tokens = m.value("tokens", int64_t(0));
      first_step = res.resumed_from + 1;
      spdlog::info("resumed from {} (step {}, written by {} rank(s), ZeRO {})", dir, res.resumed_from, ck.shards.size(),
                   m.at("layout").at("zero_stage").get<int>());
      // A preemption at an evaluation step checkpoints before evaluating: evaluate it now.
      last_evaluated = m.value("last_evaluated", int64_t(0));
      if (eval.run && is_eval_step(res.resumed_from) && last_evaluated != res.resumed_from)
        resumed_stop = evaluate(res.resumed_from);
      if (resumed_stop) first_step = opt.steps + 1;
    }
  }
  auto save = [&](int64_t step) {
    NamedTensors shard = dp.shard_state();
    shard.emplace_back("rng_state", cpu_rng_state());
    auto [e, c] = data.position();
    json manifest = {{"layout", dp.layout()},      {"data", {e, c}},
                     {"tokens", res.tokens},       {"run_config", opt.run_config},
                     {"run_identity", identity},   {"objective_state", objective.state()},
                     {"kept_step", res.kept_step}, {"last_evaluated", last_evaluated}};
    if (eval.state) manifest["eval_state"] = eval.state();
    if (retain_data) {
      auto [re, rc] = retain_data->position();
      manifest["retain_data"] = {re, rc};
    }
    save_sharded_checkpoint(opt.checkpoint_dir, step, comm, shard, manifest);
    spdlog::info("checkpoint for step {} written to {}", step, opt.checkpoint_dir);
  };

  auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  StopPoint stop_point;  // a signal during the steps is acted on at the next step boundary
  for (int64_t step = first_step; step <= opt.steps; ++step) {
    // ---- training step ----
    model->train();
    dp.zero_grad();
    objective.begin_step(step);
    std::map<std::string, double> parts;
    double loss_sum = 0, tokens = 0;
    for (int64_t micro = 0; micro < opt.grad_accum; ++micro) {
      // Slices are padded to the global batch's longest item: the same shapes on any rank count.
      auto global = data.next_indices();
      const auto dev = model->device();
      Batch b = collate(primary, local_slice(global, comm), pad_id, max_length(primary, global)).to(dev);
      Batch r;
      if (retain_data) {
        auto rg = retain_data->next_indices();
        r = collate(*retain, local_slice(rg, comm), pad_id, max_length(*retain, rg)).to(dev);
      }
      ObjectiveResult out = objective.compute(model, b, retain_data ? &r : nullptr);
      (out.loss / double(opt.grad_accum)).backward();
      loss_sum += out.loss.item<double>() / double(opt.grad_accum);
      for (auto& [k, v] : out.parts) parts[k] += v / double(opt.grad_accum);
      tokens += double(b.answer_tokens() + (retain_data ? r.answer_tokens() : 0));
    }
    dp.reduce_gradients();
    double grad_norm = dp.clip_grad_norm(opt.max_grad_norm);
    double lr = lr_at(opt.schedule, step, opt.steps);
    dp.step(lr);
    process_deadline().first_step_done = true;

    // ---- logging, evaluation, checkpoints ----
    std::vector<double> stats = {loss_sum};  // averaged over ranks; tokens summed
    for (auto& [k, v] : parts) stats.push_back(v);
    auto st = torch::tensor(stats, torch::kDouble);
    all_reduce_host(comm, st, ReduceOp::Average);
    auto counts = torch::tensor({tokens, preemption_requested() ? 1.0 : 0.0}, torch::kDouble);  // tokens, stop vote
    all_reduce_host(comm, counts, ReduceOp::Sum);
    loss_sum = st[0].item<double>();
    size_t k = 1;
    for (auto& [name, v] : parts) v = st[long(k++)].item<double>();
    res.tokens += int64_t(counts[0].item<double>());
    res.steps_done = step;
    res.last_loss = loss_sum;
    objective.end_step(step, parts);
    if (!std::isfinite(loss_sum)) throw InternalError("loss became non-finite at step " + std::to_string(step));
    if (step == first_step || step % std::max<int64_t>(opt.log_every, 1) == 0 || step == opt.steps) {
      double secs = elapsed();
      std::string extra;
      for (auto& [name, v] : parts) extra += fmt::format(" | {} {:.4f}", name, v);
      double done = double(step - first_step + 1);
      spdlog::info("step {}/{} | loss {:.4f}{} | grad_norm {:.3f} | lr {:.2e} | {:.0f} tok/s | ETA {}", step, opt.steps,
                   loss_sum, extra, grad_norm, lr, double(res.tokens) / std::max(secs, 1e-9),
                   hms(secs / done * double(opt.steps - step)));
    }
    // A preemption checkpoints at once (the evaluation of this step then runs on resume);
    // otherwise the step is evaluated before its checkpoint, which so holds what it kept (and is
    // written even when the evaluation stops the run there).
    const bool preempt = counts[1].item<double>() > 0;  // any rank signalled: all checkpoint together
    const bool stop = !preempt && eval.run && is_eval_step(step) && evaluate(step);
    if (!opt.checkpoint_dir.empty() &&
        (preempt || (opt.checkpoint_every > 0 && step % opt.checkpoint_every == 0 && step < opt.steps)))
      save(step);
    if (preempt) {
      if (opt.checkpoint_dir.empty()) spdlog::warn("preemption signal: no --checkpoint-dir, nothing saved");
      res.preempted = true;
      preemption_handled();
      break;
    }
    if (stop) {
      res.stopped_early = step < opt.steps;
      break;
    }
  }
  if (resumed_stop) res.stopped_early = res.resumed_from < opt.steps;
  res.seconds = elapsed();
  const bool stay_sharded = sharded_engine && dp.sharded();
  if (!stay_sharded) dp.materialize();  // ZeRO 3: the caller gets whole parameters back
  if (!res.preempted && dp.has_kept() && res.kept_step != res.steps_done) {
    dp.restore_kept();
    spdlog::info("returning the weights kept at step {} (trained to step {})", res.kept_step, res.steps_done);
  }
  if (!dp.has_kept()) res.kept_step = 0;
  if (stay_sharded) *sharded_engine = std::move(engine);
  return res;
}

}  // namespace lethe
