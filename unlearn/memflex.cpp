// MemFlex: (1) gradient information of every LoRA matrix on random-label copies of the forget
// and the retain items; (2) localization: matrices whose forget and retain gradients point in
// different directions (cos < mu) and whose forget gradient is large (mean |G| > sigma);
// (3) L = -w_f NLL(x_f) + w_r NLL(x_r) on the located matrices only (the others are frozen).
// The localization is saved as JSON and reused when --memflex.localization names an existing file.
#include "unlearn/memflex.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "common/error.h"
#include "dist/collectives.h"
#include "dist/data_parallel.h"
#include "common/rng.h"
#include "unlearn/method_support.h"

namespace lethe {

namespace {
// What the localization needs of one matrix's two gradients a (forget) and b (retain): sums
// over its elements, so slices of it (ZeRO 3 shards) add up to the whole matrix's.
struct GradSums {
  double dot = 0, aa = 0, bb = 0, abs_a = 0;
};

GradSums grad_sums(const torch::Tensor& g_forget, const torch::Tensor& g_retain) {
  auto a = g_forget.flatten().to(torch::kDouble), b = g_retain.flatten().to(torch::kDouble);
  return {(a * b).sum().item<double>(), (a * a).sum().item<double>(), (b * b).sum().item<double>(),
          a.abs().sum().item<double>()};
}

MemflexMatrix located(const std::string& name, const GradSums& s, int64_t numel, double mu, double sigma) {
  MemflexMatrix m;
  m.name = name;
  m.cos = (s.aa > 0 && s.bb > 0) ? s.dot / (std::sqrt(s.aa) * std::sqrt(s.bb)) : 0.0;
  m.mag = numel > 0 ? s.abs_a / double(numel) : 0.0;
  m.selected = m.cos < mu && m.mag > sigma;
  return m;
}

bool is_lora_matrix(const std::string& name) {
  return name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos;
}

void require_adapters(bool any) {
  if (!any)
    throw InputError(
        "--method memflex needs LoRA adapters (KnowUnDo: --lora-rank 8 --lora-alpha 16 --lora-dropout 0.1)");
}

// The answer positions (labels other than -100) of a one-item batch, in order.
std::vector<int64_t> answer_positions(const Batch& one) {
  auto pos = one.labels[0].ne(-100).nonzero().view({-1}).to(torch::kCPU).contiguous();
  return {pos.data_ptr<int64_t>(), pos.data_ptr<int64_t>() + pos.numel()};
}

// Item i's copy c (`one`, its `answer` positions): half of the answer positions (drawn with
// replacement) carry uniform random labels, from the item's own stream (the same on any rank
// count).
Batch random_label_copy(const Batch& one, const std::vector<int64_t>& answer, int64_t i, int64_t c, uint64_t seed,
                        uint64_t stream, int64_t vocab) {
  auto labels = one.labels.to(torch::kCPU).clone();
  SplitMix64 r(item_seed(seed, stream, i * 1000 + c));
  for (size_t k = 0; k < answer.size() / 2; ++k)
    labels[0][answer[r.below(answer.size())]] = int64_t(r.below(uint64_t(vocab)));
  return with_labels(one, labels.to(one.labels.device()));
}

int64_t items_used(const std::vector<TokenizedItem>& items, int64_t max_items) {
  return max_items > 0 ? std::min<int64_t>(max_items, int64_t(items.size())) : int64_t(items.size());
}
}  // namespace

std::vector<MemflexMatrix> memflex_localize(const NamedGrads& g_forget, const NamedGrads& g_retain, double mu,
                                            double sigma) {
  LETHE_CHECK(g_forget.size() == g_retain.size(), "memflex: forget and retain gradients differ in matrices");
  std::vector<MemflexMatrix> out;
  for (size_t k = 0; k < g_forget.size(); ++k) {
    LETHE_CHECK(g_forget[k].first == g_retain[k].first, "memflex: matrix order differs");
    out.push_back(located(g_forget[k].first, grad_sums(g_forget[k].second, g_retain[k].second),
                          g_forget[k].second.numel(), mu, sigma));
  }
  return out;
}

std::vector<MemflexMatrix> memflex_localize_shards(const GradientShards& g_forget, const GradientShards& g_retain,
                                                   const std::map<std::string, int64_t>& numels, double mu,
                                                   double sigma, Communicator& comm) {
  LETHE_CHECK(g_forget.size() == g_retain.size(), "memflex: forget and retain gradients differ in matrices");
  // Four sums per matrix from this rank's slices, then one all-reduce over all of them.
  auto all = torch::zeros({int64_t(numels.size()), 4}, torch::kDouble);
  int64_t k = 0;
  for (auto& [name, numel] : numels) {
    auto a = g_forget.find(name), b = g_retain.find(name);
    if (a != g_forget.end() && b != g_retain.end()) {
      LETHE_CHECK(a->second.first == b->second.first, "memflex: gradient slices differ for " + name);
      const GradSums s = grad_sums(a->second.second, b->second.second);
      all[k] = torch::tensor({s.dot, s.aa, s.bb, s.abs_a}, torch::kDouble);
    }
    ++k;
  }
  all_reduce_host(comm, all, ReduceOp::Sum);
  std::vector<MemflexMatrix> out;
  k = 0;
  for (auto& [name, numel] : numels) {
    auto row = all[k++];
    out.push_back(located(name,
                          {row[0].item<double>(), row[1].item<double>(), row[2].item<double>(), row[3].item<double>()},
                          numel, mu, sigma));
  }
  return out;
}

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
  require_adapters(!params.empty());
  const bool was_training = model->is_training();
  model->eval();
  const int64_t n = items_used(items, max_items);
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->size() : 1;
  std::vector<torch::Tensor> sums;
  for (auto& p : params) sums.push_back(torch::zeros(p.sizes(), p.options().dtype(torch::kFloat)));
  for (int64_t i = rank; i < n; i += world) {
    Batch one = collate(items, {i}, pad_id).to(model->device());
    const auto answer = answer_positions(one);
    for (int64_t c = 0; c < copies; ++c) {
      auto loss = mean_item_nll(model, random_label_copy(one, answer, i, c, seed, stream, vocab));
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

GradientShards memflex_gradient_shards(CausalLM& model, DataParallel& engine, const std::vector<TokenizedItem>& items,
                                       int64_t max_items, int64_t copies, uint64_t seed, uint64_t stream, int64_t vocab,
                                       int64_t pad_id, Communicator& comm) {
  GradientShards sums;
  const bool was_training = model->is_training();
  model->eval();
  const int64_t n = items_used(items, max_items), world = comm.size();
  for (int64_t round = 0; round * world < n; ++round) {
    const int64_t i = round * world + comm.rank();
    const bool mine = i < n;  // else item 0 at weight 0: the same passes on every rank
    Batch one = collate(items, {mine ? i : 0}, pad_id).to(model->device());
    const auto answer = answer_positions(one);
    for (int64_t c = 0; c < copies; ++c) {
      engine.zero_grad();
      auto loss = mean_item_nll(model, random_label_copy(one, answer, mine ? i : 0, c, seed, stream, vocab));
      (mine ? loss : loss * 0.0).backward();
      engine.reduce_gradients();  // this pass's gradient, averaged across ranks
      engine.visit_gradient_shards([&](const std::string& name, int64_t first, const torch::Tensor& g) {
        if (!is_lora_matrix(name)) return;
        auto it = sums.try_emplace(name, first, torch::zeros_like(g)).first;
        it->second.second += g;
      });
    }
  }
  engine.zero_grad();
  // The engine averaged each pass over the ranks: the sum over the items is `world` times that.
  for (auto& [name, s] : sums) s.second *= double(world) / double(std::max<int64_t>(n * copies, 1));
  if (was_training) model->train();
  return sums;
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
  // weights. Locating them takes gradients at theta_0: on a whole model split across the ranks
  // (prepare), on one kept sharded (ZeRO 3) through the engine (locate_trained). Either way the
  // model can stay sharded.
  WeightUse weight_use_outside_training() const override { return WeightUse::kNone; }
  bool locates_trained() const override { return !reused_; }
  void choose_trained(CausalLM& model) override {
    bool adapters = false;
    for (auto& [name, p] : model->named_parameters(true).pairs()) adapters = adapters || is_lora_matrix(name);
    require_adapters(adapters);
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
  void locate_trained(CausalLM& model, ObjectiveContext& ctx) override {
    LETHE_CHECK(ctx.engine && ctx.comm, "memflex: locate_trained needs the engine");
    DataParallel& engine = *ctx.engine;
    std::map<std::string, int64_t> numels;
    for (auto& [name, p] : model->named_parameters(true).pairs())
      if (p.requires_grad() && is_lora_matrix(name)) numels[name] = c10::multiply_integers(engine.full_shape(p));
    const int64_t vocab = std::min<int64_t>(ctx.tok->vocab_size(), model->config.vocab_size);
    auto g_ul = memflex_gradient_shards(model, engine, *ctx.forget, max_items_, copies_, ctx.seed, kMemflexForgetLabels,
                                        vocab, ctx.pad_id, *ctx.comm);
    auto g_rt = memflex_gradient_shards(model, engine, *ctx.retain, max_items_, copies_, ctx.seed, kMemflexRetainLabels,
                                        vocab, ctx.pad_id, *ctx.comm);
    choose(model, memflex_localize_shards(g_ul, g_rt, numels, mu_, sigma_, *ctx.comm), ctx);
    located_ = true;
  }
  void prepare(CausalLM& model, ObjectiveContext& ctx) override {
    if (reused_ || located_) return;  // chosen in choose_trained() or locate_trained()
    const int64_t vocab = std::min<int64_t>(ctx.tok->vocab_size(), model->config.vocab_size);
    auto g_ul = memflex_gradient_information(model, *ctx.forget, max_items_, copies_, ctx.seed, kMemflexForgetLabels,
                                             vocab, ctx.pad_id, ctx.comm);
    auto g_rt = memflex_gradient_information(model, *ctx.retain, max_items_, copies_, ctx.seed, kMemflexRetainLabels,
                                             vocab, ctx.pad_id, ctx.comm);
    choose(model, memflex_localize(g_ul, g_rt, mu_, sigma_), ctx);
  }
  ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) override {
    auto f = mean_item_nll(model, forget);
    auto r = mean_item_nll(model, *retain);
    return {-wf_ * f + wr_ * r, {{"forget_nll", f.item<double>()}, {"retain_nll", r.item<double>()}}};
  }
  json describe() const override { return {{"memflex_localization", localization_}}; }

 private:
  // The located matrices train: recorded (and written to --memflex.localization), logged.
  void choose(CausalLM& model, const std::vector<MemflexMatrix>& located, const ObjectiveContext& ctx) {
    std::set<std::string> selected;
    {
      json matrices = json::object();
      double min_cos = 1e9, max_mag = 0;
      for (auto& m : located) {
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
  bool located_ = false;                                            // by locate_trained()
  json localization_;
};
}  // namespace

ObjectiveSpec memflex_objective_spec() { return declared_objective("memflex", build<MemFlex>); }

}  // namespace lethe
