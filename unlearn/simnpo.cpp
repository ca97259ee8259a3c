// SimNPO: reference-free NPO on the length-normalised NLL:
// loss = w_f * -(2/beta) E log sigmoid(beta (NLL_sum(y)/|y| - delta)) + w_r NLL(x_r).
#include "unlearn/losses.h"
#include "unlearn/method_support.h"

namespace lethe {

namespace {
class SimNpo : public Objective {
 public:
  SimNpo(double beta, double delta, double wf, double wr) : beta_(beta), delta_(delta), wf_(wf), wr_(wr) {}
  bool uses_retain() const override { return wr_ != 0; }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) override {
    auto nll = item_mean_nll(token_loss(model->forward(forget.input_ids, forget.attention_mask), forget.labels));
    auto f = simnpo_loss(nll, beta_, delta_);
    ObjectiveResult out{wf_ * f, {{"simnpo", f.item<double>()}, {"forget_nll", nll.mean().item<double>()}}};
    add_retain_term(out, model, retain, wr_);
    return out;
  }

 private:
  double beta_, delta_, wf_, wr_;
};
}  // namespace

ObjectiveSpec simnpo_objective_spec() {
  return {"simnpo", "SimNPO: reference-free, length-normalised NPO, + w_r NLL(x_r)",
          [](po::options_description& d) {
            d.add_options()("simnpo.beta", po::value<double>()->default_value(4.5), "beta")(
                "simnpo.delta", po::value<double>()->default_value(0.0), "delta (margin)")(
                "simnpo.forget-weight", po::value<double>()->default_value(0.125), "weight of the forget term")(
                "simnpo.retain-weight", po::value<double>()->default_value(1.0), "w_r (0: no retain term)");
          },
          [](const po::variables_map& vm) {
            return std::make_unique<SimNpo>(vm["simnpo.beta"].as<double>(), vm["simnpo.delta"].as<double>(),
                                            vm["simnpo.forget-weight"].as<double>(),
                                            vm["simnpo.retain-weight"].as<double>());
          }};
}

}  // namespace lethe
