// IDK: finetune the forget questions towards refusals ("I don't know"), keeping the retain set:
// loss = NLL(x_f -> refusal) + w_r NLL(x_r). The refusal for item i is picked by (seed, i).
#include "unlearn/method_support.h"

namespace lethe {

namespace {
class Idk : public Objective {
 public:
  Idk(double wr, std::string refusals) : wr_(wr), refusals_(std::move(refusals)) {}
  bool uses_retain() const override { return wr_ != 0; }
  void prepare(CausalLM&, ObjectiveContext& ctx) override {
    *ctx.forget = refusal_items(ctx, *ctx.forget_examples, load_refusals(refusals_, "--idk.refusals"), 31);
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
  return {"idk", "finetune the forget questions towards refusals, + w_r NLL(x_r)",
          [](po::options_description& d) {
            d.add_options()("idk.retain-weight", po::value<double>()->default_value(1.0), "w_r (0: no retain term)")(
                "idk.refusals", po::value<std::string>()->default_value(""),
                "refusal lines, one per line (e.g. ../shared/data/tofu/idontknow.jsonl; default: built-in)");
          },
          [](const po::variables_map& vm) {
            return std::make_unique<Idk>(vm["idk.retain-weight"].as<double>(), vm["idk.refusals"].as<std::string>());
          }};
}

}  // namespace lethe
