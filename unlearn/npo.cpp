// Negative preference optimisation: loss = (2/beta) E log(1 + (pi_theta(y|x_f)/pi_ref(y|x_f))^beta)
// + w_r NLL(x_r), pi the per-sequence probability. pi_ref is cached per forget item at theta_0.
#include "unlearn/losses.h"
#include "unlearn/method_support.h"

namespace lethe {

namespace {
class Npo : public WithRetainTerm {
 public:
  WeightUse weight_use_outside_training() const override { return WeightUse::kSameForwardOnEveryRank; }
  explicit Npo(const MethodOptions& o) : WithRetainTerm(o.number("npo.retain-weight")), beta_(o.number("npo.beta")) {}
  void prepare(CausalLM& model, ObjectiveContext& ctx) override {
    ref_ = cache_per_item(
        model, *ctx.forget, ctx.forget_used, ctx.pad_id, 0, [&](const Batch& one) { return summed_logp(model, one); },
        "npo", ctx.comm);
  }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) override {
    auto lp = summed_logp(model, forget);
    auto f = npo_loss(lp, gather_cached(ref_, forget.index, 0, lp.device()), beta_);
    ObjectiveResult out{f, {{"npo", f.item<double>()}, {"forget_logp", lp.mean().item<double>()}}};
    add_retain(out, model, retain);
    return out;
  }

 private:
  double beta_;
  std::vector<torch::Tensor> ref_;
};
}  // namespace

ObjectiveSpec npo_objective_spec() { return declared_objective("npo", build<Npo>); }

}  // namespace lethe
