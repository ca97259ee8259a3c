// DPO with refusals as the preferred answers (the TOFU "IdkDPO" recipe):
// loss = -(2/beta) E log sigmoid(beta[(logp(y_w) - logp_ref(y_w)) - (logp(y_l) - logp_ref(y_l))]) + w_r NLL(x_r),
// y_w a refusal line, y_l the true answer. Both reference log-probs are cached per item.
#include "unlearn/losses.h"
#include "unlearn/method_support.h"

namespace lethe {

namespace {
class Dpo : public WithRetainTerm {
 public:
  WeightUse weight_use_outside_training() const override { return WeightUse::kSameForwardOnEveryRank; }
  explicit Dpo(const MethodOptions& o)
      : WithRetainTerm(o.number("dpo.retain-weight")), beta_(o.number("dpo.beta")), refusals_(o.text("dpo.refusals")) {}
  void prepare(CausalLM& model, ObjectiveContext& ctx) override {
    pad_ = ctx.pad_id;
    win_ = refusal_items(ctx, *ctx.forget_examples, load_refusals(refusals_, "--dpo.refusals"), kRefusalLines);
    auto logp = [&](const Batch& one) { return summed_logp(model, one); };
    ref_w_ = cache_per_item(model, win_, ctx.forget_used, pad_, 0, logp, "dpo (refusals)", ctx.comm);
    ref_l_ = cache_per_item(model, *ctx.forget, ctx.forget_used, pad_, 0, logp, "dpo (answers)", ctx.comm);
  }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) override {
    ObjectiveResult out = preference_result(model, forget, win_, ref_w_, ref_l_, beta_, pad_, "dpo", "refusal");
    add_retain(out, model, retain);
    return out;
  }
  // The refusal sequences every step also trains on (lethe bench counts their tokens and FLOPs).
  json describe() const override {
    double tokens = 0;
    for (auto& it : win_) tokens += double(it.ids.size());
    return {{"preferred_items", win_.size()},
            {"preferred_mean_tokens", win_.empty() ? 0.0 : tokens / double(win_.size())}};
  }

 private:
  double beta_;
  std::string refusals_;
  int64_t pad_ = 0;
  std::vector<TokenizedItem> win_;
  std::vector<torch::Tensor> ref_w_, ref_l_;
};
}  // namespace

ObjectiveSpec dpo_objective_spec() { return declared_objective("dpo", build<Dpo>); }

}  // namespace lethe
