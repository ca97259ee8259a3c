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
  WeightUse weight_use_outside_training() const override { return WeightUse::kSameForwardOnEveryRank; }
  void prepare(CausalLM& model, ObjectiveContext& ctx) override {
    if (epsilon_ >= 0) return;
    // The starting model's mean retain NLL over the items the loop draws: per item (split over
    // the ranks, with filler passes when they gather sharded layers), summed in item order, so
    // every rank count and load path gives the same epsilon.
    torch::NoGradGuard ng;
    const bool was_training = model->is_training();
    model->eval();
    const ItemShare share = item_share(model, ctx.comm);
    const size_t U = ctx.retain_used.size();
    auto nll = torch::zeros({int64_t(U)}, torch::kDouble);
    auto acc = nll.accessor<double, 1>();
    for (size_t j = 0; j < share.rounds(U); ++j) {
      const size_t k = share.item(j);
      if (k >= U && !share.fillers) break;
      Batch one = collate(*ctx.retain, {ctx.retain_used[k < U ? k : 0]}, ctx.pad_id, 0).to(model->device());
      const double v = mean_item_nll(model, one).item<double>();
      if (k < U) acc[int64_t(k)] = v;
    }
    if (was_training) model->train();
    if (share.split) all_reduce_host(*ctx.comm, nll, ReduceOp::Sum);  // one rank's value + zeros: exact
    double sum = 0;
    for (size_t k = 0; k < U; ++k) sum += acc[int64_t(k)];
    epsilon_ = sum / std::max<double>(1.0, double(U));
    spdlog::info("pdu: epsilon = {:.6f} (the starting model's retain NLL over {} items)", epsilon_, U);
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
