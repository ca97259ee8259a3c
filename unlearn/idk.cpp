// IDK: finetune the forget questions towards refusals ("I don't know"), keeping the retain set:
// loss = NLL(x_f -> refusal) + w_r NLL(x_r). The refusal for item i is picked by (seed, i).
#include "unlearn/method_support.h"

namespace lethe {

namespace {
class Idk : public Objective {
 public:
  explicit Idk(const MethodOptions& o) : Idk(o.number("idk.retain-weight"), o.text("idk.refusals")) {}
  Idk(double wr, std::string refusals) : wr_(wr), refusals_(std::move(refusals)) {}
  bool uses_retain() const override { return wr_ != 0; }
  void prepare(CausalLM&, ObjectiveContext& ctx) override {
    *ctx.forget = refusal_items(ctx, *ctx.forget_examples, load_refusals(refusals_, "--idk.refusals"), kRefusalLines);
  }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) override {
    auto f = mean_item_nll(model, forget);
    ObjectiveResult out{f, {{"refusal_nll", f.item<double>()}}};
    add_retain_term(out, model, retain, wr_);
    return out;
  }

 private:
  double wr_;
  std::string refusals_;
};
}  // namespace

ObjectiveSpec idk_objective_spec() {
  return {"idk",
          "finetune the forget questions towards refusals, + w_r NLL(x_r)",
          {{"idk.retain-weight", 1.0, "w_r (0: no retain term)"},
           {"idk.refusals", "", "refusal lines, one per line (e.g. TOFU's idontknow.jsonl; default: built-in)"}},
          build<Idk>};
}

}  // namespace lethe
