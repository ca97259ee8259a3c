#include "unlearn/trainer.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "common/error.h"

namespace lethe {

namespace {
std::string hms(double s) {
  int64_t t = int64_t(s + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld", (long long)(t / 3600), (long long)(t / 60 % 60), (long long)(t % 60));
  return buf;
}
}  // namespace

TrainResult train_loop(CausalLM& model, Objective& objective, const std::vector<TokenizedItem>& primary,
                       const std::vector<TokenizedItem>* retain, const TrainOptions& opt, int64_t pad_id,
                       const std::function<bool(int64_t)>& on_eval) {
  if (opt.steps <= 0) throw InputError("--steps must be positive");
  if (opt.grad_accum <= 0) throw InputError("--grad-accum must be positive");
  if (objective.uses_retain() && (!retain || retain->empty()))
    throw InputError("this method needs retain data (--retain)");
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (auto& [n, p] : model->named_parameters(true).pairs())
    if (p.requires_grad()) named.emplace_back(n, p);
  if (named.empty()) throw InputError("no trainable parameters");
  std::vector<torch::Tensor> params;
  for (auto& np : named) params.push_back(np.second);
  Optimizer optimizer(named, opt.optimizer);
  BatchIterator data(&primary, opt.batch_size, opt.seed, pad_id);
  std::unique_ptr<BatchIterator> retain_data;
  if (objective.uses_retain()) retain_data = std::make_unique<BatchIterator>(retain, opt.batch_size, opt.seed + 1, pad_id);

  TrainResult res;
  auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  for (int64_t step = 1; step <= opt.steps; ++step) {
    // ---- training step ----
    model->train();
    optimizer.zero_grad();
    double loss_sum = 0;
    std::map<std::string, double> parts;
    for (int64_t micro = 0; micro < opt.grad_accum; ++micro) {
      Batch b = data.next();
      Batch r;
      if (retain_data) r = retain_data->next();
      ObjectiveResult out = objective.compute(model, b, retain_data ? &r : nullptr);
      (out.loss / double(opt.grad_accum)).backward();
      loss_sum += out.loss.item<double>() / double(opt.grad_accum);
      for (auto& [k, v] : out.parts) parts[k] += v / double(opt.grad_accum);
      res.tokens += b.answer_tokens() + (retain_data ? r.answer_tokens() : 0);
    }
    double grad_norm = clip_grad_norm(params, opt.max_grad_norm);
    double lr = lr_at(opt.schedule, step, opt.steps);
    optimizer.step(lr);
    res.steps_done = step;
    res.last_loss = loss_sum;
    if (!std::isfinite(loss_sum)) throw InternalError("loss became non-finite at step " + std::to_string(step));

    // ---- logging and evaluation ----
    if (step == 1 || step % std::max<int64_t>(opt.log_every, 1) == 0 || step == opt.steps) {
      double secs = elapsed();
      std::string extra;
      for (auto& [k, v] : parts) extra += fmt::format(" | {} {:.4f}", k, v);
      spdlog::info("step {}/{} | loss {:.4f}{} | grad_norm {:.3f} | lr {:.2e} | {:.0f} tok/s | ETA {}", step, opt.steps,
                   loss_sum, extra, grad_norm, lr, double(res.tokens) / std::max(secs, 1e-9),
                   hms(secs / double(step) * double(opt.steps - step)));
    }
    bool eval_now = (opt.eval_every > 0 && step % opt.eval_every == 0) || step == opt.steps;
    if (eval_now && on_eval && on_eval(step)) {
      res.stopped_early = step < opt.steps;
      break;
    }
  }
  res.seconds = elapsed();
  return res;
}

}  // namespace lethe
