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
    // The used items, rank r generating every N-th and gathered rank by rank. When the passes
    // gather sharded layers, greedy_generate runs a fixed number of steps and a rank past the
    // end generates a filler, so the ranks' passes pair up; the steps then stop where the
    // longest prompt of all reaches the context limit (every rank tokenizes every prompt).
    const ItemShare share = item_share(model, ctx.comm);
    const size_t U = ctx.forget_used.size();
    std::vector<std::vector<int64_t>> prompts(U);
    for (size_t k = 0; k < U; ++k) {
      if (!share.fillers && k % share.ranks != share.rank) continue;
      std::string q = prompt_;
      q.replace(q.find("{question}"), 10, ex[size_t(ctx.forget_used[k])].prompt);
      TokenizedItem it = tokenize_items(*ctx.tok, ctx.tmpl, {{q, "", json::object()}}, ctx.max_len)[0];
      prompts[k].assign(it.ids.begin(), it.ids.begin() + it.prompt_len);
    }
    int64_t steps = max_new_;
    if (share.fillers)
      for (auto& p : prompts)
        steps = std::min(steps, std::max<int64_t>(0, model->config.max_position_embeddings - int64_t(p.size()) + 1));
    std::vector<std::string> mine;
    {
      torch::NoGradGuard ng;
      model->eval();
      auto stops = stop_token_ids(model, *ctx.tok, ctx.tmpl);
      for (size_t j = 0; j < share.rounds(U); ++j) {
        const size_t k = share.item(j);
        if (k >= U && !share.fillers) break;
        // An empty prompt decodes nothing, a pass fewer: with fillers a pad token stands in.
        const std::vector<int64_t>& p = prompts[k < U ? k : 0];
        const bool none = p.empty();
        auto out = greedy_generate(model, none && share.fillers ? std::vector<int64_t>{pad_} : p, steps, stops);
        if (k < U) mine.push_back(none ? std::string() : trimmed(ctx.tok->decode(out, true)));
      }
    }
    std::vector<std::string> all = share.split ? all_gather_strided_strings(*ctx.comm, mine) : mine;
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
