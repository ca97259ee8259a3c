#include "dist/data_parallel.h"

#include <cmath>

#include "common/error.h"

namespace lethe {

std::string block_of(const std::string& name) {
  const std::string layers = "model.layers.";
  if (name.compare(0, layers.size(), layers) == 0) return name.substr(0, name.find('.', layers.size()));
  // model.embed_tokens, model.norm, lm_head: one block each (names unique per block).
  return name.substr(0, name.rfind('.'));
}

DataParallel::DataParallel(CausalLM& model, Communicator& comm, int zero_stage, const OptimizerOptions& opt)
    : model_(model), comm_(comm), stage_(zero_stage) {
  if (stage_ < 0 || stage_ > 2)
    throw InputError("--zero-stage " + std::to_string(stage_) + " is not supported (0, 1, 2; stage 3 is not built yet)");
  const int64_t N = comm_.size();
  torch::NoGradGuard ng;
  for (auto& [name, p] : model_->named_parameters(true).pairs()) {
    if (!p.requires_grad()) continue;
    std::string block = block_of(name);
    if (blocks_.empty() || blocks_.back().name != block) {
      for (auto& b : blocks_) LETHE_CHECK(b.name != block, "parameters of block " + block + " are not contiguous");
      blocks_.push_back(Block{block, {}, {}, 0, 0, 0, {}, {}, {}, {}});
    }
    blocks_.back().params.emplace_back(name, p);
  }
  if (blocks_.empty()) throw InputError("no trainable parameters");
  std::vector<std::pair<std::string, torch::Tensor>> owned;
  for (auto& b : blocks_) {
    for (auto& [n, p] : b.params) {
      b.offsets.push_back(b.numel);
      b.numel += p.numel();
    }
    b.padded = (b.numel + N - 1) / N * N;
    b.shard = b.padded / N;
    auto dtype = b.params[0].second.scalar_type();
    b.flat = torch::zeros({b.padded}, torch::TensorOptions().dtype(dtype));
    for (size_t i = 0; i < b.params.size(); ++i) {
      auto& p = b.params[i].second;
      LETHE_CHECK(p.scalar_type() == dtype, "parameters of one block must share a dtype");
      auto view = b.flat.narrow(0, b.offsets[i], p.numel()).view(p.sizes());
      view.copy_(p);
      p.set_data(view);  // the model now computes with the flat buffer's storage
    }
    b.owned = stage_ == 0 ? b.flat : b.flat.narrow(0, comm_.rank() * b.shard, b.shard);
    owned.emplace_back(b.name, b.owned);
  }
  opt_ = std::make_unique<Optimizer>(owned, opt);
}

void DataParallel::zero_grad() {
  for (auto& b : blocks_) {
    for (auto& [n, p] : b.params) p.mutable_grad() = torch::Tensor();
    b.grad = torch::Tensor();
    b.owned_grad = torch::Tensor();
  }
}

torch::Tensor DataParallel::flat_grad(Block& b) {
  auto g = torch::zeros({b.padded}, torch::kFloat);
  for (size_t i = 0; i < b.params.size(); ++i) {
    auto& p = b.params[i].second;
    if (p.grad().defined()) g.narrow(0, b.offsets[i], p.numel()).copy_(p.grad().reshape(-1));
    p.mutable_grad() = torch::Tensor();
  }
  return g;
}

void DataParallel::reduce_gradients() {
  torch::NoGradGuard ng;
  for (auto& b : blocks_) {
    auto g = flat_grad(b);
    if (stage_ < 2) {
      comm_.all_reduce(g, ReduceOp::Average);
      b.grad = g;
    } else {
      b.grad = torch::empty({b.shard}, torch::kFloat);
      comm_.reduce_scatter(g, b.grad, ReduceOp::Average);
    }  // the full flat gradient `g` is freed here in stage 2
    b.owned_grad = stage_ == 1 ? b.grad.narrow(0, comm_.rank() * b.shard, b.shard) : b.grad;
  }
}

double DataParallel::clip_grad_norm(double max_norm) {
  torch::NoGradGuard ng;
  // Squares of this rank's share (stage 0: every rank holds everything; count it once).
  double sq = 0;
  for (auto& b : blocks_) sq += b.owned_grad.to(torch::kDouble).pow(2).sum().item<double>();
  if (stage_ > 0) {
    auto t = torch::tensor({sq}, torch::kDouble);
    comm_.all_reduce(t, ReduceOp::Sum);
    sq = t.item<double>();
  }
  double norm = std::sqrt(sq);
  if (max_norm > 0 && norm > max_norm) {
    double scale = max_norm / (norm + 1e-6);
    for (auto& b : blocks_) b.owned_grad.mul_(scale);
  }
  return norm;
}

void DataParallel::gather_params(Block& b) {
  if (stage_ == 0) return;
  auto mine = b.owned.clone();
  comm_.all_gather(mine, b.flat);
}

void DataParallel::step(double lr) {
  std::vector<torch::Tensor> grads;
  for (auto& b : blocks_) grads.push_back(b.owned_grad);
  opt_->step(lr, grads);
  torch::NoGradGuard ng;
  for (auto& b : blocks_) gather_params(b);
}

NamedTensors DataParallel::shard_state() const {
  NamedTensors out;
  auto st = opt_->state();
  const int64_t r = comm_.rank();
  for (auto& b : blocks_) {
    // Stage 0 holds everything everywhere: each rank stores its slice so files look alike.
    auto slice = [&](const torch::Tensor& t) { return stage_ == 0 ? t.narrow(0, r * b.shard, b.shard) : t; };
    out.emplace_back(b.name + "/param", slice(b.owned).detach());
    for (auto* what : {"exp_avg", "exp_avg_sq", "master"}) {
      auto it = st.find(b.name + "/" + what);
      if (it != st.end()) out.emplace_back(b.name + "/" + what, slice(it->second));
    }
  }
  out.emplace_back("optimizer_step", st.at("step"));
  return out;
}

json DataParallel::layout() const {
  json blocks = json::array();
  for (auto& b : blocks_) blocks.push_back({{"name", b.name}, {"numel", b.numel}, {"padded", b.padded}, {"shard", b.shard}});
  return {{"world", comm_.size()}, {"zero_stage", stage_}, {"blocks", blocks}};
}

void DataParallel::load_sharded(const std::vector<TensorMap>& shards, const json& layout, const std::string& source) {
  torch::NoGradGuard ng;
  const int old_world = layout.at("world").get<int>();
  if (int(shards.size()) != old_world) throw CorruptError(source + ": expected " + std::to_string(old_world) + " shard files");
  std::map<std::string, torch::Tensor> full_state;
  for (auto& b : blocks_) {
    const json* lb = nullptr;
    for (auto& x : layout.at("blocks"))
      if (x.at("name") == b.name) lb = &x;
    if (!lb || lb->at("numel").get<int64_t>() != b.numel)
      throw InputError(source + ": block '" + b.name + "' does not match this model (different model or LoRA setting?)");
    for (auto* what : {"param", "exp_avg", "exp_avg_sq", "master"}) {
      std::vector<torch::Tensor> parts;
      for (auto& s : shards) {
        auto it = s.find(b.name + "/" + what);
        if (it == s.end()) break;
        parts.push_back(it->second.reshape(-1));
      }
      if (parts.empty()) continue;
      if (int(parts.size()) != old_world) throw CorruptError(source + ": '" + b.name + "/" + what + "' is missing in a shard");
      auto full = torch::cat(parts).narrow(0, 0, b.numel);
      auto padded = torch::zeros({b.padded}, full.options());
      padded.narrow(0, 0, b.numel).copy_(full);
      auto mine = stage_ == 0 ? padded : padded.narrow(0, comm_.rank() * b.shard, b.shard);
      if (std::string(what) == "param") {
        b.owned.copy_(mine);
        if (stage_ > 0) b.flat.copy_(padded.to(b.flat.scalar_type()));
      } else {
        full_state[b.name + "/" + what] = mine.clone();
      }
    }
  }
  full_state["step"] = shards[0].at("optimizer_step");
  opt_->load_state(full_state, source);
}

}  // namespace lethe
