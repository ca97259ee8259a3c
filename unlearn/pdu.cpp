// PDU (primal-dual unlearning): minimise the forget term (max_v z - mean_v z)^2 on the forget
// answers, which flattens the logits, subject to the retain loss staying at or below epsilon:
// loss = w_f L_f + lambda (NLL(x_r) - epsilon), where the retain weight lambda is a dual
// variable, after each step lambda <- max(0, lambda + eta (NLL(x_r) - epsilon)) with the step's
// retain NLL (its mean over micro-batches and ranks), once the warm-up steps are done. Epsilon
// defaults to the retain loss of the starting model (the items the loop will draw, at theta_0):
// forget without letting the retain loss rise. lambda and epsilon are kept in checkpoints.
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "dist/collectives.h"
#include "unlearn/losses.h"
#include "unlearn/method_support.h"

namespace lethe {

namespace {
class Pdu : public Objective {
 public:
  explicit Pdu(const MethodOptions& o)
      : wf_(o.number("pdu.forget-weight")), lambda_(o.number("pdu.retain-weight")), eta_(o.number("pdu.dual-step")),
        epsilon_(o.number("pdu.epsilon")), warmup_(o.integer("pdu.warmup-steps")) {
    if (lambda_ < 0) throw InputError("--pdu.retain-weight must be >= 0 (the dual variable's start)");
    if (eta_ < 0) throw InputError("--pdu.dual-step must be >= 0");
    if (warmup_ < 0) throw InputError("--pdu.warmup-steps must be >= 0");
  }
  bool uses_retain() const override { return true; }
  void prepare(CausalLM& model, ObjectiveContext& ctx) override {
    if (epsilon_ >= 0) return;
    // The starting model's mean retain NLL over the items the loop draws, split over the ranks.
    torch::NoGradGuard ng;
    const bool was_training = model->is_training();
    model->eval();
    const int rank = ctx.comm ? ctx.comm->rank() : 0, size = ctx.comm ? ctx.comm->size() : 1;
    double sum = 0, count = 0;
    for (size_t k = size_t(rank); k < ctx.retain_used.size(); k += size_t(size), ++count) {
      Batch one = collate(*ctx.retain, {ctx.retain_used[k]}, ctx.pad_id, 0).to(model->device());
      sum += mean_item_nll(model, one).item<double>();
    }
    if (was_training) model->train();
    auto t = torch::tensor({sum, count}, torch::kDouble);
    if (ctx.comm) all_reduce_host(*ctx.comm, t, ReduceOp::Sum);
    epsilon_ = t[0].item<double>() / std::max(1.0, t[1].item<double>());
    spdlog::info("pdu: epsilon = {:.6f} (the starting model's retain NLL over {} items)", epsilon_,
                 ctx.retain_used.size());
  }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) override {
    auto f = logit_spread_loss(model->forward(forget.input_ids, forget.attention_mask),
                               answer_prediction_mask(forget.labels));
    auto r = mean_item_nll(model, *retain);
    return {wf_ * f + lambda_ * (r - epsilon_),
            {{"pdu_forget", f.item<double>()}, {"retain_nll", r.item<double>()}, {"pdu_lambda", lambda_}}};
  }
  void end_step(int64_t step, const std::map<std::string, double>& parts) override {
    if (step <= warmup_) return;
    lambda_ = std::max(0.0, lambda_ + eta_ * (parts.at("retain_nll") - epsilon_));
  }
  json state() const override { return {{"lambda", lambda_}, {"epsilon", epsilon_}}; }
  void restore(const json& s) override {
    lambda_ = json_get<double>(s, "lambda", "pdu state");
    epsilon_ = json_get<double>(s, "epsilon", "pdu state");
  }
  json describe() const override { return {{"pdu_epsilon", epsilon_}, {"pdu_lambda", lambda_}}; }

 private:
  double wf_, lambda_, eta_, epsilon_;
  int64_t warmup_;
};
}  // namespace

ObjectiveSpec pdu_objective_spec() { return declared_objective("pdu", build<Pdu>); }

}  // namespace lethe
