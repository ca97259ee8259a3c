// MemFlex: (1) gradient information of every LoRA matrix on random-label copies of the forget
// and the retain items; (2) localization: matrices whose forget and retain gradients point in
// different directions (cos < mu) and whose forget gradient is large (mean |G| > sigma);
// (3) L = -w_f NLL(x_f) + w_r NLL(x_r) on the located matrices only (the others are frozen).
// The localization is saved as JSON and reused when --memflex.localization names an existing file.
#include "unlearn/memflex.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <set>

#include "common/error.h"
#include "dist/collectives.h"
#include "common/rng.h"
#include "unlearn/method_support.h"

namespace lethe {

std::vector<MemflexMatrix> memflex_localize(const NamedGrads& g_forget, const NamedGrads& g_retain, double mu,
                                            double sigma) {
  LETHE_CHECK(g_forget.size() == g_retain.size(), "memflex: forget and retain gradients differ in matrices");
  std::vector<MemflexMatrix> out;
  for (size_t k = 0; k < g_forget.size(); ++k) {
    LETHE_CHECK(g_forget[k].first == g_retain[k].first, "memflex: matrix order differs");
    auto a = g_forget[k].second.flatten().to(torch::kDouble), b = g_retain[k].second.flatten().to(torch::kDouble);
    MemflexMatrix m;
    m.name = g_forget[k].first;
    double na = a.norm().item<double>(), nb = b.norm().item<double>();
    m.cos = (na > 0 && nb > 0) ? (a * b).sum().item<double>() / (na * nb) : 0.0;
    m.mag = a.abs().mean().item<double>();
    m.selected = m.cos < mu && m.mag > sigma;
    out.push_back(m);
  }
  return out;
}

namespace {
bool is_lora_matrix(const std::string& name) {
  return name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos;
}
}  // namespace

NamedGrads memflex_gradient_information(CausalLM& model, const std::vector<TokenizedItem>& items, int64_t max_items,
                                        int64_t copies, uint64_t seed, uint64_t stream, int64_t vocab, int64_t pad_id,
                                        Communicator* comm) {
  std::vector<std::string> names;
  std::vector<torch::Tensor> params;
  for (auto& [name, p] : model->named_parameters(true).pairs())
    if (p.requires_grad() && is_lora_matrix(name)) {
      names.push_back(name);
      params.push_back(p);
    }
  if (params.empty())
    throw InputError(
        "--method memflex needs LoRA adapters (KnowUnDo: --lora-rank 8 --lora-alpha 16 --lora-dropout 0.1)");
  const bool was_training = model->is_training();
  model->eval();
  const int64_t n = max_items > 0 ? std::min<int64_t>(max_items, int64_t(items.size())) : int64_t(items.size());
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->size() : 1;
  std::vector<torch::Tensor> sums;
  for (auto& p : params) sums.push_back(torch::zeros(p.sizes(), p.options().dtype(torch::kFloat)));
  for (int64_t i = rank; i < n; i += world) {
    Batch one = collate(items, {i}, pad_id).to(model->device());
    auto base = one.labels.to(torch::kCPU);
    std::vector<int64_t> answer;
    for (int64_t t = 0; t < base.size(1); ++t)
      if (base[0][t].item<int64_t>() != -100) answer.push_back(t);
    for (int64_t c = 0; c < copies; ++c) {
      auto labels = base.clone();
      SplitMix64 r(item_seed(seed, stream, i * 1000 + c));
      for (size_t k = 0; k < answer.size() / 2; ++k)
        labels[0][answer[r.below(answer.size())]] = int64_t(r.below(uint64_t(vocab)));
      auto loss = mean_item_nll(model, with_labels(one, labels.to(one.labels.device())));
      auto grads = torch::autograd::grad({loss}, params, {}, false, false, true);
      for (size_t k = 0; k < params.size(); ++k)
        if (grads[k].defined()) sums[k] += grads[k].to(torch::kFloat);
    }
  }
  // One all-reduce for every matrix, then the average over items x copies.
  std::vector<torch::Tensor> flat;
  for (auto& s : sums) flat.push_back(s.flatten().to(torch::kCPU));
  auto all = torch::cat(flat);
  if (comm && world > 1) all_reduce_host(*comm, all, ReduceOp::Sum);
  all /= double(std::max<int64_t>(n * copies, 1));
  NamedGrads out;
  int64_t off = 0;
  for (size_t k = 0; k < params.size(); ++k) {
    out.emplace_back(names[k], all.narrow(0, off, sums[k].numel()).view(sums[k].sizes()).clone());
    off += sums[k].numel();
  }
  if (was_training) model->train();
  return out;
}

namespace {
class MemFlex : public Objective {
 public:
  explicit MemFlex(const MethodOptions& o)
      : wf_(o.number("memflex.forget-weight")), wr_(o.number("memflex.retain-weight")), mu_(o.number("memflex.mu")),
        sigma_(o.number("memflex.sigma")), copies_(o.integer("memflex.copies")),
        max_items_(o.integer("memflex.max-items")), path_(o.text("memflex.localization")) {
    if (copies_ <= 0) throw InputError("--memflex.copies must be positive");
    if (max_items_ < 0) throw InputError("--memflex.max-items must be >= 0");
  }
  bool uses_retain() const override { return true; }
  // A saved localization names the matrices that train: chosen by name, nothing read of the
  // weights (so at ZeRO 3 the model stays sharded). Locating them takes gradients of the whole
  // model, split across the ranks.
  WeightUse weight_use_outside_training() const override { return reused_ ? WeightUse::kNone : WeightUse::kWhole; }
  void choose_trained(CausalLM& model) override {
    if (!reused_) return;
    localization_ = read_json_file(path_);
    std::set<std::string> selected;
    try {
      for (auto& s : localization_.at("selected")) selected.insert(s.get<std::string>());
    } catch (const std::exception& e) {
      throw InputError("--memflex.localization '" + path_ + "': no list of names under \"selected\" (" + e.what() +
                       ")");
    }
    spdlog::info("memflex: reusing the localization in {} ({} matrices)", path_, selected.size());
    train_only(model, selected);
  }
  void prepare(CausalLM& model, ObjectiveContext& ctx) override {
    if (reused_) return;  // chosen in choose_trained()
    std::set<std::string> selected;
    {
      const int64_t vocab = std::min<int64_t>(ctx.tok->vocab_size(), model->config.vocab_size);
      auto g_ul = memflex_gradient_information(model, *ctx.forget, max_items_, copies_, ctx.seed, kMemflexForgetLabels,
                                               vocab, ctx.pad_id, ctx.comm);
      auto g_rt = memflex_gradient_information(model, *ctx.retain, max_items_, copies_, ctx.seed, kMemflexRetainLabels,
                                               vocab, ctx.pad_id, ctx.comm);
      json matrices = json::object();
      double min_cos = 1e9, max_mag = 0;
      for (auto& m : memflex_localize(g_ul, g_rt, mu_, sigma_)) {
        matrices[m.name] = {{"cos", m.cos}, {"mag", m.mag}, {"selected", m.selected}};
        if (m.selected) selected.insert(m.name);
        min_cos = std::min(min_cos, m.cos);
        max_mag = std::max(max_mag, m.mag);
      }
      localization_ = {
          {"mu", mu_}, {"sigma", sigma_}, {"copies", copies_}, {"selected", selected}, {"matrices", matrices}};
      spdlog::info(
          "memflex: {} of {} LoRA matrices located (cos < {} and mean|G| > {}; smallest cos {:.4f}, largest mean|G| "
          "{:.3g})",
          selected.size(), matrices.size(), mu_, sigma_, min_cos, max_mag);
      if (!path_.empty() && (!ctx.comm || ctx.comm->rank() == 0)) {
        write_json_file(path_, localization_);
        spdlog::info("memflex: localization written to {}", path_);
      }
      if (selected.empty())
        throw InputError("memflex: no LoRA matrix has cos < " + std::to_string(mu_) + " and mean|G_UL| > " +
                         std::to_string(sigma_) + " (smallest cos " + std::to_string(min_cos) +
                         ", largest mean|G_UL| " + std::to_string(max_mag) +
                         "); raise --memflex.mu or lower --memflex.sigma");
    }
    train_only(model, selected);
  }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) override {
    auto f = mean_item_nll(model, forget);
    auto r = mean_item_nll(model, *retain);
    return {-wf_ * f + wr_ * r, {{"forget_nll", f.item<double>()}, {"retain_nll", r.item<double>()}}};
  }
  json describe() const override { return {{"memflex_localization", localization_}}; }

 private:
  // Of the LoRA matrices, exactly `selected` train.
  static void train_only(CausalLM& model, const std::set<std::string>& selected) {
    std::set<std::string> known;
    for (auto& [name, p] : model->named_parameters(true).pairs()) {
      if (!is_lora_matrix(name)) continue;
      known.insert(name);
      p.set_requires_grad(selected.count(name) > 0);
    }
    for (auto& s : selected)
      if (!known.count(s))
        throw InputError("memflex localization names '" + s + "', which is not a LoRA matrix of this model");
  }
  double wf_, wr_, mu_, sigma_;
  int64_t copies_, max_items_;
  std::string path_;
  bool reused_ = !path_.empty() && std::filesystem::exists(path_);  // decided before any model is loaded
  json localization_;
};
}  // namespace

ObjectiveSpec memflex_objective_spec() { return declared_objective("memflex", build<MemFlex>); }

}  // namespace lethe
