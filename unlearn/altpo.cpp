// AltPO (alternate preference optimisation) as a recipe of existing pieces: before training, the
// model at theta_0 answers each forget question put as --altpo.prompt (greedy, one item at a time,
// so the answer does not depend on batching or the rank count; items spread over the ranks and
// gathered); that alternative is DPO's preferred answer and the true answer the dispreferred one:
// loss = -(2/beta) E log sigmoid(beta[(logp(y_alt) - logp_ref(y_alt)) - (logp(y) - logp_ref(y))])
//        + w_r NLL(x_r),
// both reference log-probs cached per item. An empty generation falls back to a refusal line.
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "dist/collectives.h"
#include "eval/evaluate.h"
#include "model/generate.h"
#include "unlearn/losses.h"
#include "unlearn/method_support.h"

namespace lethe {

namespace {

std::string trimmed(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

class AltPo : public WithRetainTerm {
 public:
  explicit AltPo(const MethodOptions& o)
      : WithRetainTerm(o.number("altpo.retain-weight")), beta_(o.number("altpo.beta")), prompt_(o.text("altpo.prompt")),
        max_new_(o.integer("altpo.max-new-tokens")) {
    if (prompt_.find("{question}") == std::string::npos)
      throw InputError("--altpo.prompt must contain {question} (where the forget question goes)");
    if (max_new_ <= 0) throw InputError("--altpo.max-new-tokens must be positive");
  }

  WeightUse weight_use_outside_training() const override { return WeightUse::kSameForwardOnEveryRank; }
  void prepare(CausalLM& model, ObjectiveContext& ctx) override {
    pad_ = ctx.pad_id;
    const std::vector<Example>& ex = *ctx.forget_examples;
    // The used items, rank r generating every N-th and gathered rank by rank; or, when the
    // passes gather sharded layers, every rank generating every item (greedy_generate then runs
    // a fixed number of steps, so the ranks' passes pair up).
    const ItemShare share = item_share(model, ctx);
    std::vector<std::string> mine;
    {
      torch::NoGradGuard ng;
      model->eval();
      auto stops = stop_token_ids(model, *ctx.tok, ctx.tmpl);
      for (size_t k = share.first; k < ctx.forget_used.size(); k += share.stride) {
        const Example& e = ex[size_t(ctx.forget_used[k])];
        std::string q = prompt_;
        q.replace(q.find("{question}"), 10, e.prompt);
        TokenizedItem it = tokenize_items(*ctx.tok, ctx.tmpl, {{q, "", json::object()}}, ctx.max_len)[0];
        std::vector<int64_t> prompt(it.ids.begin(), it.ids.begin() + it.prompt_len);
        mine.push_back(trimmed(ctx.tok->decode(greedy_generate(model, prompt, max_new_, stops), true)));
      }
    }
    std::vector<std::string> all = share.split ? all_gather_strided_strings(*ctx.comm, mine) : mine;
    const size_t U = ctx.forget_used.size();
    std::vector<Example> preferred = ex;  // items never drawn keep their answer (unused)
    alternatives_ = json::object();
    int64_t empty = 0;
    for (size_t k = 0; k < U; ++k) {
      std::string alt = all[k];
      if (alt.empty()) {
        alt = "I don't know.";
        ++empty;
      }
      const int64_t i = ctx.forget_used[k];
      preferred[size_t(i)].response = alt;
      alternatives_[std::to_string(i)] = alt;
    }
    if (empty) spdlog::warn("altpo: {} of {} generations were empty; those prefer a refusal", empty, U);
    win_ = tokenize_items(*ctx.tok, ctx.tmpl, preferred, ctx.max_len);
    auto logp = [&](const Batch& one) { return summed_logp(model, one); };
    ref_w_ = cache_per_item(model, win_, ctx.forget_used, pad_, 0, logp, "altpo (alternatives)", ctx.comm);
    ref_l_ = cache_per_item(model, *ctx.forget, ctx.forget_used, pad_, 0, logp, "altpo (answers)", ctx.comm);
  }

  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) override {
    ObjectiveResult out = preference_result(model, forget, win_, ref_w_, ref_l_, beta_, pad_, "altpo", "alternative");
    add_retain(out, model, retain);
    return out;
  }

  json describe() const override { return {{"alternatives", alternatives_}}; }

 private:
  double beta_;
  std::string prompt_;
  int64_t max_new_;
  int64_t pad_ = 0;
  std::vector<TokenizedItem> win_;
  std::vector<torch::Tensor> ref_w_, ref_l_;
  json alternatives_;
};

}  // namespace

ObjectiveSpec altpo_objective_spec() { return declared_objective("altpo", build<AltPo>); }

}  // namespace lethe
