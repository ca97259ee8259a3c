// IDK: finetune the forget questions towards refusals ("I don't know"), keeping the retain set:
// loss = NLL(x_f -> refusal) + w_r NLL(x_r). The refusal for item i is picked by (seed, i).
#include "unlearn/method_support.h"

namespace lethe {

namespace {
class Idk : public WithRetainTerm {
 public:
  WeightUse weight_use_outside_training() const override { return WeightUse::kNone; }
  explicit Idk(const MethodOptions& o)
      : WithRetainTerm(o.number("idk.retain-weight")), refusals_(o.text("idk.refusals")) {}
  void prepare(CausalLM&, ObjectiveContext& ctx) override {
    *ctx.forget = refusal_items(ctx, *ctx.forget_examples, load_refusals(refusals_, "--idk.refusals"), kRefusalLines);
  }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) override {
    auto f = mean_item_nll(model, forget);
    ObjectiveResult out{f, {{"refusal_nll", f.item<double>()}}};
    add_retain(out, model, retain);
    return out;
  }

 private:
  std::string refusals_;
};
}  // namespace

ObjectiveSpec idk_objective_spec() { return declared_objective("idk", build<Idk>); }

}  // namespace lethe
