// SNAP: negative instructions (questions about the forget targets) trained towards obliterated
// responses (refusals), hard positives (retain items about the same entities) trained with
// their normal answers, and a sliced-Wasserstein regulariser that keeps every trainable weight
// matrix close to its initial value:
//   loss = NLL(negative -> refusal) + NLL(hard positives) + lambda sum_W SWD(W, W0).
// The negative instructions are the forget questions plus templated questions about each
// entity (generated here from the items; no external model). The regulariser has one path at
// every ZeRO stage: the data-parallel engine applies weight_penalty() after backward, rank
// (m mod N) differentiating matrix m on the whole tensor (a ZeRO 3 layer gathered for it); the
// directions depend only on (seed, step, m), so any rank count draws the same ones. Each rank
// keeps theta_0 of its own matrices only, so at ZeRO 3 the run stays sharded.
#include <spdlog/spdlog.h>

#include <map>
#include <set>

#include "common/error.h"
#include "common/rng.h"
#include "dist/data_parallel.h"
#include "unlearn/losses.h"
#include "unlearn/method_support.h"

namespace lethe {

namespace {
const char* const kEntityQuestions[] = {"What can you tell me about {}?", "What do you know about {}'s private life?",
                                        "Tell me everything you know about {}.", "Who is {}?"};

std::string entity_of(const Example& e, const std::string& key) {
  if (!key.empty()) return attr_string(e, key);
  for (const char* k : {"entity", "subject", "author", "person"})
    if (!attr_string(e, k).empty()) return attr_string(e, k);
  return "";
}

class Snap : public Objective {
 public:
  explicit Snap(const MethodOptions& o)
      : lambda_(o.number("snap.lambda")), k_(o.integer("snap.projections")),
        entity_questions_(o.integer("snap.entity-questions")), entity_key_(o.text("snap.entity-key")),
        refusals_(o.text("snap.refusals")) {
    if (k_ <= 0) throw InputError("--snap.projections must be positive");
    if (entity_questions_ < 0 || entity_questions_ > 4) throw InputError("--snap.entity-questions must be in 0..4");
  }
  bool uses_retain() const override { return true; }
  WeightUse weight_use_outside_training() const override { return WeightUse::kSameForwardOnEveryRank; }
  void prepare(CausalLM& model, ObjectiveContext& ctx) override {
    seed_ = ctx.seed;
    rank_ = ctx.comm ? ctx.comm->rank() : 0;
    world_ = ctx.comm ? ctx.comm->size() : 1;
    // Negative instructions: every forget question, then templated questions per entity.
    std::vector<Example> negative;
    std::vector<std::string> entities;
    std::set<std::string> seen;
    for (auto& e : *ctx.forget_examples) {
      negative.push_back({e.prompt, "", e.attrs});
      std::string ent = entity_of(e, entity_key_);
      if (!ent.empty() && seen.insert(ent).second) entities.push_back(ent);
    }
    for (auto& ent : entities)
      for (int64_t q = 0; q < entity_questions_; ++q) {
        std::string text = kEntityQuestions[q];
        text.replace(text.find("{}"), 2, ent);
        negative.push_back({text, "", json::object()});
      }
    *ctx.forget = refusal_items(ctx, negative, load_refusals(refusals_, "--snap.refusals"), kSnapRefusalLines);
    // Hard positives: retain items about the forget entities, else the whole retain set.
    std::vector<Example> positives;
    for (auto& e : *ctx.retain_examples)
      if (seen.count(entity_of(e, entity_key_))) positives.push_back(e);
    spdlog::info(
        "snap: {} negative instructions ({} forget questions, {} entities x {} templates), {} hard positives{}",
        ctx.forget->size(), ctx.forget_examples->size(), entities.size(), entity_questions_,
        positives.empty() ? ctx.retain_examples->size() : positives.size(),
        positives.empty() ? " (no retain item names a forget entity: the whole retain set)" : " (same entities)");
    if (!positives.empty()) *ctx.retain = tokenize_items(*ctx.tok, ctx.tmpl, positives, ctx.max_len);
    // theta_0 of the matrices this rank regularises (index m mod N, the engine's share): whole
    // from the model, or gathered one layer at a time through a ZeRO 3 engine kept sharded.
    std::map<const void*, size_t> index;
    for (auto& [name, p] : model->named_parameters(true).pairs())
      if (p.requires_grad()) {
        index[p.unsafeGetTensorImpl()] = params_.size();
        params_.push_back(p);
      }
    initial_.assign(params_.size(), torch::Tensor());
    auto keep = [&](const torch::Tensor& p, const torch::Tensor& value) {
      auto it = index.find(p.unsafeGetTensorImpl());
      if (it != index.end() && int(it->second % size_t(world_)) == rank_) initial_[it->second] = value.detach().clone();
    };
    torch::NoGradGuard ng;
    if (ctx.engine) {
      std::set<const void*> all;
      for (auto& [impl, m] : index) all.insert(impl);
      ctx.engine->visit_whole_parameters(all, keep);
    } else {
      for (auto& p : params_) keep(p, p);
    }
  }
  void begin_step(int64_t step) override { step_ = step; }
  std::function<torch::Tensor(int64_t, const torch::Tensor&)> weight_penalty() override {
    return [this](int64_t m, const torch::Tensor& w) { return lambda_ * swd_term(m, w); };
  }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) override {
    auto neg = mean_item_nll(model, forget);
    auto pos = mean_item_nll(model, *retain);
    // The SWD's gradient comes from the engine (weight_penalty(), every ZeRO stage); here only
    // its value, for the log: this rank's share of the matrices whole in memory, x N so the
    // average over ranks is the sum (ZeRO 3's sharded layers are left out of the logged value).
    double swd = 0;
    {
      torch::NoGradGuard ng;
      for (size_t m = size_t(rank_); m < params_.size(); m += size_t(world_))
        if (params_[m].numel() > 0) swd += swd_term(int64_t(m), params_[m]).item<double>();
      swd *= double(world_);
    }
    return {neg + pos + lambda_ * swd,
            {{"refusal_nll", neg.item<double>()}, {"positive_nll", pos.item<double>()}, {"swd", swd}}};
  }

 private:
  // SWD of trainable tensor m against its initial value, along directions drawn from (seed, step, m).
  torch::Tensor swd_term(int64_t m, const torch::Tensor& w) const {
    const auto& w0 = initial_[size_t(m)];
    int64_t d = w0.dim() == 1 ? w0.numel() : w0.numel() / w0.size(0);
    auto dirs = random_directions(d, k_, item_seed(seed_, kSnapDirections, step_ * 1000003 + m));
    return sliced_wasserstein(w.view(w0.sizes()), w0, dirs);
  }
  double lambda_;
  int64_t k_, entity_questions_;
  std::string entity_key_, refusals_;
  uint64_t seed_ = 0;
  int rank_ = 0, world_ = 1;
  int64_t step_ = 0;
  std::vector<torch::Tensor> params_, initial_;
};
}  // namespace

ObjectiveSpec snap_objective_spec() { return declared_objective("snap", build<Snap>); }

}  // namespace lethe
