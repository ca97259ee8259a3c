#include "dist/data_parallel.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "dist/collectives.h"

namespace lethe {

torch::Tensor cpu_rng_state() { return at::detail::getDefaultCPUGenerator().get_state(); }
void set_cpu_rng_state(const torch::Tensor& t) {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  gen.set_state(t);
}

namespace {

// autograd::Function arguments are tensors and scalars only, so the engine travels through
// forward() as its address (an int64) and through backward() in saved_data.
DataParallel* engine_of(int64_t addr) { return reinterpret_cast<DataParallel*>(addr); }
DataParallel* engine_of(torch::autograd::AutogradContext* ctx) { return engine_of(ctx->saved_data["dp"].toInt()); }
void save_call(torch::autograd::AutogradContext* ctx, int64_t dp_addr, int64_t block) {
  ctx->saved_data["dp"] = dp_addr;
  ctx->saved_data["block"] = block;
}
size_t saved_block(torch::autograd::AutogradContext* ctx) { return size_t(ctx->saved_data["block"].toInt()); }
// The Functions' gradients: the layer input's, the shard's (or sink's), none for the rest.
// Autograd functions take defined tensors only: no mask (plain causal attention) travels as an
// empty tensor.
torch::Tensor mask_input(const torch::Tensor& mask) { return mask.defined() ? mask : torch::empty({0}); }
torch::Tensor mask_of(const torch::Tensor& input) { return input.numel() ? input : torch::Tensor(); }

torch::autograd::variable_list layer_call_grads(const torch::Tensor& x_grad, const torch::Tensor& shard_grad) {
  return {x_grad, shard_grad, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
}

// A recomputed decoder layer: forward runs it without building a graph and keeps only its
// input; backward runs it again with the forward's RNG state (LoRA dropout) and takes the
// gradients. ZeRO 3: its parameters exist only while it runs (gathered, then freed, in forward
// and again in backward) and their gradient is reduce-scattered straight into the shard, which
// is what autograd accumulates into the shard tensor. ZeRO 2: the gradient is reduce-scattered
// into the block's fp32 sink. ZeRO 0/1 (activation checkpointing): the parameters' gradients
// accumulate in their .grad as without recompute.
class RecomputedLayerFn : public torch::autograd::Function<RecomputedLayerFn> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor handle,
                               int64_t dp_addr, int64_t block, torch::Tensor cos, torch::Tensor sin,
                               torch::Tensor mask) {
    auto* dp = engine_of(dp_addr);
    auto& b = dp->block(size_t(block));
    save_call(ctx, dp_addr, block);
    ctx->saved_data["rng"] = cpu_rng_state();
    ctx->save_for_backward({x, cos, sin, mask});
    if (b.sharded_params) {
      dp->flush_gradients();  // a new forward: the last backward's layer gradients join the shards'
      dp->gather_layer(size_t(block), +1);
    }
    torch::Tensor y;
    {
      torch::NoGradGuard ng;
      y = dp->model()->model->layers[size_t(b.layer)](x, cos, sin, mask_of(mask), nullptr, b.layer);
    }
    if (b.sharded_params) dp->release_from_model(b);
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto* dp = engine_of(ctx);
    auto& b = dp->block(saved_block(ctx));
    auto saved = ctx->get_saved_variables();
    if (b.sharded_params) dp->gather_layer(saved_block(ctx), -1);
    auto now = cpu_rng_state();
    set_cpu_rng_state(ctx->saved_data["rng"].toTensor());
    torch::autograd::variable_list inputs, grads;
    {
      torch::AutoGradMode enable(true);
      auto x = saved[0].detach().requires_grad_(true);
      inputs.push_back(x);
      for (auto& np : b.params) inputs.push_back(np.second);
      auto y = dp->model()->model->layers[size_t(b.layer)](x, saved[1], saved[2], mask_of(saved[3]), nullptr, b.layer);
      grads = torch::autograd::grad({y}, inputs, {grad_out[0]}, false, false, true);
    }
    set_cpu_rng_state(now);
    std::vector<torch::Tensor> param_grads(grads.begin() + 1, grads.end());
    if (b.params.empty()) {  // a layer with nothing to train: only the input's gradient
      dp->release_from_model(b);
      return layer_call_grads(grads[0], torch::Tensor());
    }
    if (b.sharded_params) {
      auto shard_grad = dp->reduce_layer_gradient(saved_block(ctx), param_grads);  // undefined: added later
      dp->release_from_model(b);
      return layer_call_grads(grads[0], shard_grad);
    }
    if (b.reduce_in_backward) return layer_call_grads(grads[0], dp->reduce_scatter_grads(b, param_grads));
    return layer_call_grads(grads[0], dp->flatten_grads(b, param_grads));  // into the [padded] sink
  }
};

// ZeRO 2: one decoder layer with whole parameters whose backward takes the layer's parameter
// gradients itself (they never accumulate in the parameters' .grad) and reduce-scatters them
// into this rank's shard at once; autograd accumulates the shard into the block's grad sink.
// The layer's graph is built in forward (no recompute) and kept alive by the saved tensors.
class ReducingLayerFn : public torch::autograd::Function<ReducingLayerFn> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor sink,
                               int64_t dp_addr, int64_t block, torch::Tensor cos, torch::Tensor sin,
                               torch::Tensor mask) {
    auto* dp = engine_of(dp_addr);
    auto& b = dp->block(size_t(block));
    torch::Tensor xin, y;
    {
      torch::AutoGradMode enable(true);
      xin = x.detach().requires_grad_(true);
      y = dp->model()->model->layers[size_t(b.layer)](xin, cos, sin, mask_of(mask), nullptr, b.layer);
    }
    save_call(ctx, dp_addr, block);
    ctx->saved_data["x"] = xin;
    ctx->saved_data["y"] = y;
    return y.detach();
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto* dp = engine_of(ctx);
    auto& b = dp->block(saved_block(ctx));
    torch::autograd::variable_list inputs = {ctx->saved_data["x"].toTensor()};
    for (auto& np : b.params) inputs.push_back(np.second);
    auto grads = torch::autograd::grad({ctx->saved_data["y"].toTensor()}, inputs, {grad_out[0]}, false, false, true);
    ctx->saved_data.erase("x");  // frees the layer's graph
    ctx->saved_data.erase("y");
    return layer_call_grads(grads[0], dp->reduce_scatter_grads(b, {grads.begin() + 1, grads.end()}));
  }
};

using NamedParams = std::vector<std::pair<std::string, torch::Tensor>>;

// Copies into `shard` (elements [lo, lo + shard.numel()) of a flat buffer laying out `params`
// at `offsets`) the pieces of them that overlap it: a weight loaded as shards from the
// checkpoint, any other from the parameter itself.
void fill_from_pieces(torch::Tensor shard, int64_t lo, const NamedParams& params, const std::vector<int64_t>& offsets,
                      const std::vector<int64_t>& numels, const DeferredWeights* deferred) {
  const int64_t hi = lo + shard.numel();
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t begin = std::max(lo, offsets[i]), end = std::min(hi, offsets[i] + numels[i]);
    if (begin >= end) continue;
    const auto& [name, p] = params[i];
    const int64_t first = begin - offsets[i], count = end - begin;
    shard.narrow(0, begin - lo, count)
        .copy_(deferred && deferred->has(name) ? deferred->read_range(name, first, count)
                                               : p.detach().reshape(-1).narrow(0, first, count));
  }
}

// The parameters become views of a gathered flat buffer.
void view_into(const torch::Tensor& full, NamedParams& params, const std::vector<int64_t>& offsets,
               const std::vector<int64_t>& numels, const std::vector<std::vector<int64_t>>& shapes) {
  for (size_t i = 0; i < params.size(); ++i)
    params[i].second.set_data(full.narrow(0, offsets[i], numels[i]).view(shapes[i]));
}

}  // namespace

ActivationCheckpointing parse_activation_checkpointing(const std::string& name) {
  if (name == "none") return ActivationCheckpointing::kNone;
  if (name == "selective") return ActivationCheckpointing::kSelective;
  if (name == "full") return ActivationCheckpointing::kFull;
  throw InputError("--activation-checkpointing: unknown value '" + name + "' (none, selective, full)");
}

std::string activation_checkpointing_name(ActivationCheckpointing a) {
  return a == ActivationCheckpointing::kFull ? "full" : a == ActivationCheckpointing::kSelective ? "selective" : "none";
}

DataParallel::DataParallel(CausalLM& model, Communicator& comm, int zero_stage, const OptimizerOptions& opt,
                           ActivationCheckpointing checkpointing, const DeferredWeights* deferred)
    : model_(model), comm_(comm), stage_(zero_stage) {
  if (stage_ < 0 || stage_ > 3) throw InputError("--zero-stage " + std::to_string(stage_) + " is not supported (0-3)");
  const int64_t N = comm_.size();
  torch::NoGradGuard ng;
  std::map<std::string, std::vector<std::pair<std::string, torch::Tensor>>> frozen;  // by block, stage 3 layers
  for (auto& [name, p] : model_->named_parameters(true).pairs()) {
    const auto block = CausalLMImpl::parameter_block(name);  // the model's layout, not parsed here
    if (!p.requires_grad()) {
      if (stage_ == 3 && block.layer >= 0) frozen[block.name].emplace_back(name, p);
      continue;
    }
    if (blocks_.empty() || blocks_.back().name != block.name) {
      for (auto& b : blocks_)
        LETHE_CHECK(b.name != block.name, "parameters of block " + block.name + " are not contiguous");
      blocks_.emplace_back();
      blocks_.back().name = block.name;
      blocks_.back().decoder_layer = block.layer;
    }
    blocks_.back().params.emplace_back(name, p);
  }
  // Nothing to train is allowed at stage 3 only where some decoder layer is frozen: an engine
  // that shards a model for evaluation (its layers gathered one at a time in each forward).
  if (blocks_.empty() && (stage_ != 3 || frozen.empty())) throw InputError("no trainable parameters");
  std::vector<std::pair<std::string, torch::Tensor>> owned;
  int64_t param_index = 0;
  for (auto& b : blocks_) {
    b.first_param = param_index;
    param_index += int64_t(b.params.size());
    size_t n_deferred = 0;
    for (auto& [n, p] : b.params) {
      const bool d = deferred && deferred->has(n);
      n_deferred += d;
      b.offsets.push_back(b.numel);
      b.param_shapes.push_back(d ? deferred->shapes.at(n) : p.sizes().vec());
      b.param_numels.push_back(c10::multiply_integers(b.param_shapes.back()));
      b.numel += b.param_numels.back();
    }
    b.padded = (b.numel + N - 1) / N * N;
    b.shard = b.padded / N;
    auto dtype = b.params[0].second.scalar_type();
    if (n_deferred > 0) {  // a ZeRO 3 layer loaded straight into this rank's shard
      LETHE_CHECK(n_deferred == b.params.size() && stage_ == 3 && b.decoder_layer >= 0,
                  "weights loaded as shards must be whole ZeRO 3 decoder layers (" + b.name + ")");
      for (auto& np : b.params)
        LETHE_CHECK(np.second.scalar_type() == dtype, "parameters of one block must share a dtype");
      b.sharded_params = true;
      b.layer = b.decoder_layer;
      fill_shard(b, *deferred);
      shard_frozen(b, std::move(frozen[b.name]), deferred);
      owned.emplace_back(b.name, b.owned);
      continue;
    }
    b.flat = torch::zeros({b.padded}, torch::TensorOptions().dtype(dtype).device(b.params[0].second.device()));
    for (size_t i = 0; i < b.params.size(); ++i) {
      auto& p = b.params[i].second;
      LETHE_CHECK(p.scalar_type() == dtype, "parameters of one block must share a dtype");
      auto view = b.flat.narrow(0, b.offsets[i], p.numel()).view(p.sizes());
      view.copy_(p);
      p.set_data(view);  // the model now computes with the flat buffer's storage
    }
    b.owned = stage_ == 0 ? b.flat : b.flat.narrow(0, comm_.rank() * b.shard, b.shard);
    if (stage_ == 3 && b.decoder_layer >= 0) {
      b.sharded_params = true;
      b.layer = b.decoder_layer;
      b.owned = b.owned.clone().set_requires_grad(true);  // the shard is all this rank keeps
      release_from_model(b);
      b.flat = torch::Tensor();
      shard_frozen(b, std::move(frozen[b.name]), deferred);
    } else if (stage_ == 2 && b.decoder_layer >= 0) {
      b.reduce_in_backward = true;
      b.layer = b.decoder_layer;
      b.grad_sink = torch::zeros({b.shard}, torch::TensorOptions().dtype(torch::kFloat).device(b.flat.device()))
                        .set_requires_grad(true);
    }
    if (b.decoder_layer >= 0 && !b.sharded_params &&
        (checkpointing == ActivationCheckpointing::kFull ||
         (checkpointing == ActivationCheckpointing::kSelective && b.decoder_layer % 2 == 0))) {
      b.recompute = true;
      b.layer = b.decoder_layer;
      if (!b.grad_sink.defined())
        b.grad_sink = torch::zeros({b.padded}, torch::TensorOptions().dtype(torch::kFloat).device(b.flat.device()))
                          .set_requires_grad(true);
    }
    owned.emplace_back(b.name, b.owned);
  }
  // Stage 3: a decoder layer with nothing to train is sharded as well, as a block of frozen
  // parameters alone (in layer order; `frozen` holds only the layers no trained block took).
  for (auto& [name, params] : frozen) {
    if (params.empty()) continue;
    Block b;
    b.name = name;
    b.decoder_layer = b.layer = CausalLMImpl::parameter_block(params[0].first).layer;
    b.sharded_params = true;
    shard_frozen(b, std::move(params), deferred);
    frozen_layers_.push_back(std::move(b));
  }
  std::sort(frozen_layers_.begin(), frozen_layers_.end(),
            [](const Block& a, const Block& b) { return a.layer < b.layer; });
  // Every weight loaded as shards must have found its block.
  if (deferred) {
    std::set<std::string> sharded;
    for_each_block([&](const Block& b) {
      for (auto& np : b.params) sharded.insert(np.first);
      for (auto& np : b.frozen) sharded.insert(np.first);
    });
    for (auto& [name, shape] : deferred->shapes)
      LETHE_CHECK(sharded.count(name), "weight " + name + " was loaded as shards but belongs to no ZeRO 3 layer");
  }
  opt_ = std::make_unique<Optimizer>(owned, opt);
  // Decoder layers run through the engine: ZeRO 2 reduce-scatters their gradient in backward,
  // ZeRO 3 also gathers their parameters around forward and backward, and recomputed layers
  // (activation checkpointing) run again in backward.
  std::map<int64_t, size_t> layer_block;
  for (size_t i = 0; i < blocks_.size() + frozen_layers_.size(); ++i)
    if (block(i).sharded_params || block(i).reduce_in_backward || block(i).recompute) layer_block[block(i).layer] = i;
  for (auto& [layer, k] : layer_block)
    if (block(k).sharded_params) sharded_layers_[layer] = k;
  overlap_ = comm_.overlaps_compute();
  if (!layer_block.empty()) {
    model_->collective_forward = sharded() && comm_.size() > 1;
    model_->layer_runner = [this, layer_block](int64_t layer, const torch::Tensor& x, const torch::Tensor& cos,
                                               const torch::Tensor& sin, const torch::Tensor& mask, KVCache* cache) {
      auto it = layer_block.find(layer);
      auto& module = model_->model->layers[size_t(layer)];
      if (it == layer_block.end()) return module(x, cos, sin, mask, cache, layer);
      Block& b = block(it->second);
      const bool training = torch::GradMode::is_enabled() && !cache;
      const auto dp = reinterpret_cast<int64_t>(this);
      const int64_t bi = int64_t(it->second);
      // A layer with nothing to train takes part in backward only when a gradient flows
      // through it (trained layers below); else it runs as in evaluation.
      const bool frozen_only = b.params.empty();
      if (training && (b.sharded_params || b.recompute) && (!frozen_only || x.requires_grad()))
        return RecomputedLayerFn::apply(x,
                                        frozen_only        ? torch::empty({0})
                                        : b.sharded_params ? b.owned
                                                           : b.grad_sink,
                                        dp, bi, cos, sin, mask_input(mask));
      if (training && b.reduce_in_backward)
        return ReducingLayerFn::apply(x, b.grad_sink, dp, bi, cos, sin, mask_input(mask));
      if (!b.sharded_params) return module(x, cos, sin, mask, cache, layer);
      gather_layer(it->second, +1);  // evaluation, generation
      auto y = module(x, cos, sin, mask, cache, layer);
      release_from_model(b);
      return y;
    };
  }
}

DataParallel::~DataParallel() {
  model_->layer_runner = nullptr;
  model_->collective_forward = false;
}

torch::Tensor DataParallel::gather_into_model(Block& b) {
  torch::NoGradGuard ng;
  if (!b.params.empty()) {
    auto full = torch::empty({b.padded}, b.owned.options().requires_grad(false));
    comm_.all_gather(b.owned.detach(), full);
    view_into(full, b.params, b.offsets, b.param_numels, b.param_shapes);
  }
  if (b.frozen.empty()) return {};
  auto frozen = torch::empty({b.frozen_padded}, b.frozen_owned.options());
  comm_.all_gather(b.frozen_owned, frozen);
  view_into(frozen, b.frozen, b.frozen_offsets, b.frozen_numels, b.frozen_shapes);
  return frozen;
}

void DataParallel::gather_layer(size_t k, int direction) {
  torch::NoGradGuard ng;
  Block& b = block(k);
  if (prefetch_.block == k) {
    if (prefetch_.params) {
      prefetch_.params->wait();
      view_into(prefetch_.full, b.params, b.offsets, b.param_numels, b.param_shapes);
    }
    if (prefetch_.frozen_params) {
      prefetch_.frozen_params->wait();
      view_into(prefetch_.frozen, b.frozen, b.frozen_offsets, b.frozen_numels, b.frozen_shapes);
    }
    prefetch_ = Prefetch();
  } else {
    prefetch_ = Prefetch();  // one started for another layer: finished (every rank started it) and dropped
    gather_into_model(b);
  }
  if (!overlap_ || direction == 0) return;
  auto next = sharded_layers_.find(b.layer + direction);
  if (next == sharded_layers_.end()) return;
  Block& n = block(next->second);
  prefetch_.block = next->second;
  if (!n.params.empty()) {
    prefetch_.full = torch::empty({n.padded}, n.owned.options().requires_grad(false));
    prefetch_.params = comm_.start_all_gather(n.owned.detach(), prefetch_.full);
  }
  if (n.frozen.empty()) return;
  prefetch_.frozen = torch::empty({n.frozen_padded}, n.frozen_owned.options());
  prefetch_.frozen_params = comm_.start_all_gather(n.frozen_owned, prefetch_.frozen);
}

void DataParallel::release_from_model(Block& b) {
  for (auto& np : b.params) np.second.set_data(torch::empty({0}, np.second.options().requires_grad(false)));
  for (auto& np : b.frozen) np.second.set_data(torch::empty({0}, np.second.options()));
}

void DataParallel::shard_frozen(Block& b, std::vector<std::pair<std::string, torch::Tensor>> frozen,
                                const DeferredWeights* deferred) {
  if (frozen.empty()) return;
  torch::NoGradGuard ng;
  const int64_t N = comm_.size();
  b.frozen = std::move(frozen);
  const auto& p0 = b.frozen[0].second;
  int64_t numel = 0;
  for (auto& [n, p] : b.frozen) {
    LETHE_CHECK(p.scalar_type() == p0.scalar_type(), "frozen parameters of one layer must share a dtype (" + n + ")");
    const bool d = deferred && deferred->has(n);
    LETHE_CHECK(d == (p.numel() == 0), "frozen weight " + n + " is neither whole nor loaded as shards");
    b.frozen_offsets.push_back(numel);
    b.frozen_shapes.push_back(d ? deferred->shapes.at(n) : p.sizes().vec());
    b.frozen_numels.push_back(c10::multiply_integers(b.frozen_shapes.back()));
    numel += b.frozen_numels.back();
  }
  b.frozen_padded = (numel + N - 1) / N * N;
  b.frozen_shard = b.frozen_padded / N;
  b.frozen_owned = torch::zeros({b.frozen_shard}, p0.options().requires_grad(false));  // the padding stays zero
  fill_from_pieces(b.frozen_owned, comm_.rank() * b.frozen_shard, b.frozen, b.frozen_offsets, b.frozen_numels,
                   deferred);
  release_from_model(b);
}

void DataParallel::fill_shard(Block& b, const DeferredWeights& deferred) {
  torch::NoGradGuard ng;
  const auto& p0 = b.params[0].second;
  b.owned = torch::zeros({b.shard}, p0.options().requires_grad(false));  // the padding stays zero
  fill_from_pieces(b.owned, comm_.rank() * b.shard, b.params, b.offsets, b.param_numels, &deferred);
  b.owned.set_requires_grad(true);
  release_from_model(b);
}

void DataParallel::visit_whole_parameters(
    const std::set<const void*>& wanted,
    const std::function<void(const torch::Tensor& param, const torch::Tensor& value)>& fn) {
  torch::NoGradGuard ng;
  for_each_block([&](Block& b) {
    bool any = false;
    for (auto& np : b.params) any = any || wanted.count(np.second.unsafeGetTensorImpl());
    for (auto& np : b.frozen) any = any || wanted.count(np.second.unsafeGetTensorImpl());
    if (!any) return;
    const bool gather = b.sharded_params;
    if (gather) gather_into_model(b);
    for (auto& np : b.params) fn(np.second, np.second.detach());
    for (auto& np : b.frozen) fn(np.second, np.second.detach());
    if (gather) release_from_model(b);
  });
}

void DataParallel::update_frozen_layers(const std::function<void(int64_t layer)>& fn) {
  torch::NoGradGuard ng;
  for_each_block([&](Block& b) {
    if (!b.sharded_params) return;
    if (!b.params.empty())
      throw InternalError("update_frozen_layers: decoder layer " + std::to_string(b.layer) + " has trained parameters");
    const torch::Tensor whole = gather_into_model(b);  // the parameters are views of it
    fn(b.layer);
    b.frozen_owned.copy_(whole.narrow(0, comm_.rank() * b.frozen_shard, b.frozen_shard));
    release_from_model(b);
  });
}

std::vector<int64_t> DataParallel::full_shape(const torch::Tensor& param) const {
  const std::vector<int64_t>* shape = nullptr;
  for_each_block([&](const Block& b) {
    for (size_t i = 0; i < b.params.size(); ++i)
      if (b.params[i].second.unsafeGetTensorImpl() == param.unsafeGetTensorImpl()) shape = &b.param_shapes[i];
    for (size_t i = 0; i < b.frozen.size(); ++i)
      if (b.frozen[i].second.unsafeGetTensorImpl() == param.unsafeGetTensorImpl()) shape = &b.frozen_shapes[i];
  });
  return shape ? *shape : param.sizes().vec();
}

bool DataParallel::sharded() const {
  bool any = false;
  for_each_block([&](const Block& b) { any = any || b.sharded_params; });
  return any;
}

torch::Tensor DataParallel::flatten_grads(Block& b, const std::vector<torch::Tensor>& grads) {
  torch::NoGradGuard ng;
  auto flat = torch::zeros({b.padded}, torch::TensorOptions().dtype(torch::kFloat).device(b.owned.device()));
  for (size_t i = 0; i < grads.size(); ++i)
    if (grads[i].defined()) flat.narrow(0, b.offsets[i], b.param_numels[i]).copy_(grads[i].reshape(-1));
  return flat;
}

torch::Tensor DataParallel::reduce_scatter_grads(Block& b, const std::vector<torch::Tensor>& grads) {
  auto flat = flatten_grads(b, grads);
  torch::NoGradGuard ng;
  auto shard = torch::empty({b.shard}, flat.options());
  comm_.reduce_scatter(flat, shard, ReduceOp::Average);
  return shard;
}

torch::Tensor DataParallel::reduce_layer_gradient(size_t k, const std::vector<torch::Tensor>& grads) {
  Block& b = blocks_[k];
  if (!overlap_) return reduce_scatter_grads(b, grads).to(b.owned.scalar_type());
  finish_gradient();
  torch::NoGradGuard ng;
  pending_grad_.block = k;
  pending_grad_.flat = flatten_grads(b, grads);
  pending_grad_.shard = torch::empty({b.shard}, pending_grad_.flat.options());
  pending_grad_.op = comm_.start_reduce_scatter(pending_grad_.flat, pending_grad_.shard, ReduceOp::Average);
  return torch::Tensor();
}

void DataParallel::finish_gradient() {
  if (pending_grad_.block == SIZE_MAX) return;
  torch::NoGradGuard ng;
  pending_grad_.op->wait();
  const size_t k = pending_grad_.block;
  auto g = pending_grad_.shard.to(blocks_[k].owned.scalar_type());
  if (backward_sum_.size() < blocks_.size()) backward_sum_.resize(blocks_.size());
  backward_sum_[k] = backward_sum_[k].defined() ? backward_sum_[k] + g : g;
  pending_grad_ = PendingGradient();
}

void DataParallel::flush_gradients() {
  finish_gradient();
  torch::NoGradGuard ng;
  for (size_t k = 0; k < backward_sum_.size(); ++k) {
    if (!backward_sum_[k].defined()) continue;
    // What autograd does with a leaf's summed contributions: the first becomes .grad, later add.
    auto& owned = blocks_[k].owned;
    if (owned.grad().defined())
      owned.mutable_grad().add_(backward_sum_[k]);
    else
      owned.mutable_grad() = backward_sum_[k];
    backward_sum_[k] = torch::Tensor();
  }
}

void DataParallel::materialize() {
  flush_gradients();
  prefetch_ = Prefetch();
  torch::NoGradGuard ng;
  for (auto& b : blocks_) {
    if (!b.sharded_params) continue;
    gather_into_model(b);  // the parameters keep the gathered buffers alive
    b.sharded_params = false;
    b.frozen.clear();  // whole in the model again
    b.frozen_owned = torch::Tensor();
  }
  for (auto& b : frozen_layers_) gather_into_model(b);
  frozen_layers_.clear();
  sharded_layers_.clear();
  model_->layer_runner = nullptr;
  model_->collective_forward = false;
}

void DataParallel::visit_gradient_shards(
    const std::function<void(const std::string&, int64_t, const torch::Tensor&)>& fn) const {
  for (auto& b : blocks_) {
    if (!b.owned_grad.defined()) continue;
    const int64_t begin = stage_ == 0 ? 0 : comm_.rank() * b.shard, end = begin + b.owned_grad.numel();
    for (size_t i = 0; i < b.params.size(); ++i) {
      const int64_t lo = std::max(begin, b.offsets[i]), hi = std::min(end, b.offsets[i] + b.param_numels[i]);
      if (lo < hi) fn(b.params[i].first, lo - b.offsets[i], b.owned_grad.narrow(0, lo - begin, hi - lo));
    }
  }
}

void DataParallel::zero_grad() {
  for (auto& b : blocks_) {
    for (auto& [n, p] : b.params) p.mutable_grad() = torch::Tensor();
    b.grad = torch::Tensor();
    b.owned_grad = torch::Tensor();
    if (b.sharded_params) b.owned.mutable_grad() = torch::Tensor();
    if (b.grad_sink.defined()) b.grad_sink.mutable_grad() = torch::Tensor();
  }
}

torch::Tensor DataParallel::flat_grad(Block& b) {
  auto g = torch::zeros({b.padded}, torch::TensorOptions().dtype(torch::kFloat).device(b.flat.device()));
  for (size_t i = 0; i < b.params.size(); ++i) {
    auto& p = b.params[i].second;
    if (p.grad().defined()) g.narrow(0, b.offsets[i], p.numel()).copy_(p.grad().reshape(-1));
    p.mutable_grad() = torch::Tensor();
  }
  if (b.recompute && !b.reduce_in_backward && b.grad_sink.grad().defined()) g += b.grad_sink.grad();
  return g;
}

void DataParallel::reduce_gradients() {
  flush_gradients();  // layer gradients still in flight or summed apart (overlap)
  torch::NoGradGuard ng;
  // Stage 2 layers: which blocks' parameters hold gradient from outside the layer (any rank).
  std::vector<double> direct(blocks_.size(), 0.0);
  if (stage_ == 2) {
    for (size_t i = 0; i < blocks_.size(); ++i)
      for (auto& np : blocks_[i].params)
        if (blocks_[i].reduce_in_backward && np.second.grad().defined()) direct[i] = 1;
    auto t = torch::tensor(direct, torch::kDouble);
    all_reduce_host(comm_, t, ReduceOp::Sum);
    for (size_t i = 0; i < blocks_.size(); ++i) direct[i] = t[long(i)].item<double>();
  }
  for (size_t bi = 0; bi < blocks_.size(); ++bi) {
    Block& b = blocks_[bi];
    if (b.sharded_params) {  // reduce-scattered during backward, accumulated by autograd
      b.owned_grad = b.owned.grad().defined() ? b.owned.grad().to(torch::kFloat)
                                              : torch::zeros({b.shard}, b.owned.options().dtype(torch::kFloat));
      if (penalty_) b.owned_grad += reduce_scatter_grads(b, penalty_grads(b));
      continue;
    }
    if (b.reduce_in_backward) {                    // reduce-scattered during backward, accumulated in the sink
      b.owned_grad = b.grad_sink.grad().defined()  // the sink's own buffer: no copy
                         ? b.grad_sink.grad()
                         : torch::zeros({b.shard}, b.grad_sink.options().requires_grad(false));
      // Gradient that reached the parameters by a path outside the layer is reduced here.
      if (direct[bi] > 0) {
        std::vector<torch::Tensor> grads;
        for (auto& np : b.params) grads.push_back(np.second.grad());
        b.owned_grad += reduce_scatter_grads(b, grads);
        for (auto& np : b.params) np.second.mutable_grad() = torch::Tensor();
      }
      if (penalty_) b.owned_grad += reduce_scatter_grads(b, penalty_grads(b));
      continue;
    }
    if (penalty_) {  // whole parameters: the penalty's gradient joins the loss's before the reduction
      auto grads = penalty_grads(b);
      for (size_t i = 0; i < grads.size(); ++i) {
        if (!grads[i].defined()) continue;
        auto& p = b.params[i].second;
        auto g = grads[i].to(p.scalar_type()).view(p.sizes());
        p.mutable_grad() = p.grad().defined() ? p.grad() + g : g;
      }
    }
    auto g = flat_grad(b);
    if (stage_ < 2) {
      comm_.all_reduce(g, ReduceOp::Average);
      b.grad = g;
    } else {
      b.grad = torch::empty({b.shard}, g.options());
      comm_.reduce_scatter(g, b.grad, ReduceOp::Average);
    }  // the full flat gradient `g` is freed here in stage 2
    b.owned_grad = stage_ == 1 ? b.grad.narrow(0, comm_.rank() * b.shard, b.shard) : b.grad;
  }
}

std::vector<torch::Tensor> DataParallel::penalty_grads(Block& b) {
  const int64_t N = comm_.size();
  std::vector<torch::Tensor> grads(b.params.size());
  if (b.sharded_params) gather_into_model(b);
  for (size_t i = 0; i < b.params.size(); ++i) {
    const int64_t index = b.first_param + int64_t(i);
    if (index % N != comm_.rank()) continue;
    torch::AutoGradMode enable(true);
    auto w = b.params[i].second.detach().requires_grad_(true);
    // Scaled by N: the reduction averages over ranks and only this rank has the term.
    grads[i] = torch::autograd::grad({penalty_(index, w)}, {w})[0].to(torch::kFloat) * double(N);
  }
  if (b.sharded_params) release_from_model(b);
  return grads;
}

double DataParallel::clip_grad_norm(double max_norm) {
  torch::NoGradGuard ng;
  // Squares of this rank's share (stage 0: every rank holds everything; count it once).
  double sq = 0;
  for (auto& b : blocks_) sq += b.owned_grad.to(torch::kDouble).pow(2).sum().item<double>();
  if (stage_ > 0) {
    auto t = torch::tensor({sq}, torch::kDouble);
    all_reduce_host(comm_, t, ReduceOp::Sum);
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
  if (stage_ == 0 || b.sharded_params) return;
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
  for (size_t k = 0; k < kept_.size(); ++k) out.emplace_back(blocks_[k].name + "/kept", kept_[k]);
  out.emplace_back("optimizer_step", st.at("step"));
  return out;
}

std::vector<torch::Tensor> DataParallel::param_shards() const {
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> out;
  const int64_t r = comm_.rank();
  for (auto& b : blocks_) {
    auto mine = stage_ == 0 ? b.owned.narrow(0, r * b.shard, b.shard) : b.owned;
    out.push_back(mine.detach().to(torch::kCPU, false, true));
  }
  return out;
}

void DataParallel::keep_params() { kept_ = param_shards(); }

void DataParallel::restore_kept() {
  if (kept_.size() != blocks_.size()) throw InternalError("restore_kept: no kept parameters");
  set_param_shards([this](size_t k, const torch::Tensor&) { return kept_[k]; });
}

void DataParallel::set_param_shards(const std::function<torch::Tensor(size_t, const torch::Tensor&)>& fn) {
  torch::NoGradGuard ng;
  const int64_t r = comm_.rank();
  for (size_t k = 0; k < blocks_.size(); ++k) {
    Block& b = blocks_[k];
    auto mine = stage_ == 0 ? b.owned.narrow(0, r * b.shard, b.shard) : b.owned;
    auto value = fn(k, mine.detach()).to(b.owned.device(), b.owned.scalar_type());
    LETHE_CHECK(value.sizes() == mine.sizes(), "set_param_shards: block " + b.name + " got a shard of another size");
    if (b.sharded_params) {  // a ZeRO 3 layer not materialized: its shard is all there is
      b.owned.detach().copy_(value);
      continue;
    }
    auto full = torch::empty({b.padded}, b.owned.options().requires_grad(false));
    comm_.all_gather(value.contiguous(), full);
    for (size_t i = 0; i < b.params.size(); ++i)
      b.params[i].second.detach().copy_(full.narrow(0, b.offsets[i], b.param_numels[i]).view(b.param_shapes[i]));
    b.owned.detach().copy_(stage_ == 0 ? full : full.narrow(0, r * b.shard, b.shard));
  }
}

json DataParallel::layout() const {
  json blocks = json::array();
  for (auto& b : blocks_)
    blocks.push_back({{"name", b.name}, {"numel", b.numel}, {"padded", b.padded}, {"shard", b.shard}});
  return {{"world", comm_.size()}, {"zero_stage", stage_}, {"blocks", blocks}};
}

void DataParallel::load_sharded(const std::vector<std::shared_ptr<const H5Reader>>& shards, const json& layout,
                                const std::string& source) {
  torch::NoGradGuard ng;
  const int old_world = layout.at("world").get<int>();
  if (int(shards.size()) != old_world)
    throw CorruptError(source + ": expected " + std::to_string(old_world) + " shard files");
  std::map<std::string, torch::Tensor> full_state;
  std::vector<torch::Tensor> kept;
  for (auto& b : blocks_) {
    const json* lb = nullptr;
    for (auto& x : layout.at("blocks"))
      if (x.at("name") == b.name) lb = &x;
    if (!lb || lb->at("numel").get<int64_t>() != b.numel)
      throw InputError(source + ": block '" + b.name +
                       "' does not match this model (different model or LoRA setting?)");
    const int64_t old_shard = lb->at("shard").get<int64_t>();
    if (old_shard < 0 || old_shard * old_world < b.numel)
      throw CorruptError(source + ": block '" + b.name + "' has shards of " + std::to_string(old_shard) + " on " +
                         std::to_string(old_world) + " ranks for " + std::to_string(b.numel) + " elements");
    for (auto* what : {"param", "exp_avg", "exp_avg_sq", "master", "kept"}) {
      const std::string key = b.name + "/" + what;
      int present = 0;
      for (auto& s : shards) present += s->has(key);
      if (present == 0) continue;
      if (present != old_world) throw CorruptError(source + ": '" + key + "' is missing in a shard");
      // Elements [lo, lo + len) of the padded block, from the old ranks' pieces that overlap
      // them: each old rank file's piece is read (and checked) on its own, so a rank holds its
      // share plus one piece, whatever the rank counts.
      auto assemble = [&](int64_t lo, int64_t len) {
        torch::Tensor out;
        for (int q = 0; q < old_world; ++q) {
          const int64_t begin = std::max(lo, q * old_shard);
          const int64_t end = std::min({lo + len, (q + 1) * old_shard, b.numel});
          if (begin >= end) continue;
          auto piece = shards[size_t(q)]->read(key).reshape(-1);
          if (piece.numel() != old_shard)
            throw CorruptError(source + ": '" + key + "' of rank " + std::to_string(q) + " has " +
                               std::to_string(piece.numel()) + " elements, the layout says " +
                               std::to_string(old_shard));
          if (!out.defined()) out = torch::zeros({len}, piece.options());
          out.narrow(0, begin - lo, end - begin).copy_(piece.narrow(0, begin - q * old_shard, end - begin));
        }
        return out.defined() ? out : torch::zeros({len}, b.owned.options().dtype(torch::kFloat));
      };
      const int64_t lo = comm_.rank() * b.shard;
      if (std::string(what) == "kept") {
        kept.push_back(assemble(lo, b.shard));
        continue;
      }
      const bool whole = stage_ == 0 || (std::string(what) == "param" && !b.sharded_params);
      auto mine = whole ? assemble(0, b.padded) : assemble(lo, b.shard);
      if (std::string(what) == "param") {
        if (stage_ > 0 && !b.sharded_params) b.flat.copy_(mine.to(b.flat.scalar_type()));
        b.owned.detach().copy_(whole && stage_ > 0 ? mine.narrow(0, lo, b.shard) : mine);
      } else {
        full_state[key] = mine.to(b.owned.device());
      }
    }
  }
  if (!kept.empty() && kept.size() != blocks_.size())
    throw CorruptError(source + ": kept parameters are missing for some blocks");
  kept_ = std::move(kept);
  full_state["step"] = shards[0]->read("optimizer_step");
  opt_->load_state(full_state, source);
}

}  // namespace lethe
