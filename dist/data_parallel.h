// Data parallelism within one rank group, over flat, padded per-block buffers (a block = the
// embeddings, one decoder layer, or the final norm + head). The model's trainable parameters
// become views into their block's flat buffer, padded to a multiple of the group size, and
// rank r owns elements [r*S, (r+1)*S) of every block.
//   stage 0: gradients all-reduced, every rank keeps the full optimizer state;
//   stage 1: gradients all-reduced, optimizer state sharded, parameters all-gathered;
//   stage 2: gradients reduce-scattered into shards, optimizer state sharded, parameters
//            gathered; a decoder layer's gradient is reduce-scattered during backward, right
//            after that layer's backward (the full gradient of one layer exists at a time);
//   stage 3: decoder layers keep only their parameter shard; a layer's parameters are
//            all-gathered just before its forward and freed after it, gathered again in
//            backward to recompute the layer (activation recompute) and freed again, and its
//            gradient is reduce-scattered straight into the shard. Embeddings, final norm and
//            lm_head are treated as in stage 2 (replicated parameters; ~4% of a 7B model).
//            A decoder layer with nothing to train (a method that trains a few matrices) is
//            sharded too: gathered around its forward, and around its recompute in backward
//            when a gradient flows through it to trained layers below.
// Gradients are reduced in fp32 whatever the parameter dtype; bf16 parameters get fp32
// master copies of their shard. Global-norm clipping sums squares across shards.
// Activation checkpointing (any stage): a recomputed decoder layer keeps only its input in
// forward and runs again in backward (with the forward's RNG state); `full` recomputes every
// layer, `selective` every second one (layers 0, 2, 4 ...), trading half the activation memory
// for a third of the recompute. ZeRO 3 layers are always recomputed.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "checkpoints/hdf5_checkpoint.h"
#include "checkpoints/tensor_index.h"
#include "dist/communicator.h"
#include "model/llama.h"
#include "optim/optimizer.h"

namespace lethe {

enum class ActivationCheckpointing { kNone, kSelective, kFull };
// "none", "selective", "full" (InputError naming --activation-checkpointing otherwise).
ActivationCheckpointing parse_activation_checkpointing(const std::string& name);
std::string activation_checkpointing_name(ActivationCheckpointing a);

class DataParallel {
 public:
  // `deferred` (ZeRO 3 only): decoder-layer weights the model was loaded without
  // (load_model_without_layers); each rank reads its shard of them from the checkpoint, so no
  // rank holds a layer whole before training.
  DataParallel(CausalLM& model, Communicator& comm, int zero_stage, const OptimizerOptions& opt,
               ActivationCheckpointing checkpointing = ActivationCheckpointing::kNone,
               const DeferredWeights* deferred = nullptr);
  // After the last micro-batch's backward: per-rank gradients (of the rank's mean loss) are
  // averaged across ranks into each rank's share.
  void reduce_gradients();
  double clip_grad_norm(double max_norm);  // returns the global norm before clipping
  // After reduce_gradients(), any stage: fn(name, first, grad) for every trained parameter with
  // elements in this rank's share of its block; grad is the fp32 gradient (averaged across
  // ranks) of elements [first, first + grad.numel()) of the flattened parameter. Over all ranks
  // the slices cover every parameter once (stage 0: each rank has every element).
  void visit_gradient_shards(
      const std::function<void(const std::string& name, int64_t first, const torch::Tensor& grad)>& fn) const;
  void step(double lr);
  void zero_grad();
  // Stage 3: gathers every layer's parameters back into the model (to save or evaluate it
  // whole) and stops sharding them. No-op for stages 0-2.
  void materialize();
  // Collective, any stage: calls fn(parameter, whole value) for the parameters of every block
  // that holds one of `wanted` (the same set on every rank), trained ones first, then a ZeRO 3
  // layer's frozen ones, gathering a ZeRO 3 layer for the calls and releasing it after, so one
  // layer is whole at a time (while fn runs, the whole layer is in the model). Frozen parameters
  // outside ZeRO 3 layers are not visited. The parameter is the model's tensor (its data may be
  // empty).
  void visit_whole_parameters(const std::set<const void*>& wanted,
                              const std::function<void(const torch::Tensor& param, const torch::Tensor& value)>& fn);
  // Collective, stage 3: for each decoder layer kept as shards whose parameters are all frozen
  // (an engine built to evaluate), gathers the layer into the model, calls fn(layer), which may
  // change the layer's parameters in place (whole tensors, views of the gathered buffer), and
  // keeps this rank's shard of what fn left; one layer is whole at a time. Layers with trained parameters are refused
  // (InternalError): their optimizer state would not follow.
  void update_frozen_layers(const std::function<void(int64_t layer)>& fn);
  // A trained parameter's shape (a ZeRO 3 layer's parameters are empty in the model); the
  // tensor's own shape for the others.
  std::vector<int64_t> full_shape(const torch::Tensor& param) const;
  bool sharded() const;  // some layer's parameters exist only as shards
  ~DataParallel();

  // This rank's shard of parameters and optimizer state, keyed "<block>/<what>", plus the
  // layout needed to reshard onto another rank count.
  NamedTensors shard_state() const;
  json layout() const;
  // Loads from the shard files of a checkpoint written with any rank count (one file per rank
  // that wrote it, in rank order), reading only the pieces that overlap this rank's share.
  void load_sharded(const std::vector<std::shared_ptr<const H5Reader>>& shards, const json& layout,
                    const std::string& source);
  int zero_stage() const { return stage_; }
  // Checkpoint selection: keep_params() copies this rank's shard of every block's parameters to
  // host memory (1/N of the trainable parameters per rank, at every stage); restore_kept() (a
  // collective) puts the kept weights back: into the model whole, or for a ZeRO 3 layer not
  // materialized, into its shard alone. The kept
  // shard travels in shard_state() as "<block>/kept" and comes back with load_sharded().
  void keep_params();
  bool has_kept() const { return !kept_.empty(); }
  void restore_kept();
  // This rank's shard of every block's trained parameters (block order, the model's dtype, host
  // memory): 1/N of them per rank at stages 1-3, and the same slice of the whole at stage 0.
  std::vector<torch::Tensor> param_shards() const;
  // Collective: every block's parameters become fn(block, this rank's shard of them) (same
  // shape and dtype), an element-wise function, so the whole model is what applying it to
  // whole tensors gives; the model's whole copies (replicated blocks, stages 0-2) follow.
  void set_param_shards(const std::function<torch::Tensor(size_t block, const torch::Tensor& shard)>& fn);
  // A penalty on whole weight tensors (index among the trainable parameters, value), applied
  // by the engine at every stage (SNAP's regulariser): after backward, rank (index mod N)
  // differentiates the penalty of its share on the whole tensor (gathering a ZeRO 3 layer),
  // and the gradient is reduced with the loss's.
  using WeightPenalty = std::function<torch::Tensor(int64_t index, const torch::Tensor& w)>;
  // ZeRO 3 overlap: while a sharded layer runs, the all-gather of the layer that runs next is
  // already started (forward: the layer above; backward: the one below; two layers whole at a
  // time), and a layer's gradient reduce-scatter runs while the layer below it computes its
  // backward (added to the shard's gradient in the order autograd would add it). On by default
  // where the communicator overlaps compute (NCCL); MPI's collectives progress inside MPI calls,
  // so there it is off unless set. The values, and so the results, are the same either way.
  void set_overlap(bool on) { overlap_ = on; }
  bool overlap() const { return overlap_; }
  void set_weight_penalty(WeightPenalty fn) { penalty_ = std::move(fn); }
  int64_t optimizer_steps() const { return opt_->steps(); }

 private:
  struct Block {
    std::string name;
    int64_t decoder_layer = -1;  // from the model (CausalLMImpl::parameter_block); -1: not a decoder layer
    std::vector<std::pair<std::string, torch::Tensor>> params;
    std::vector<int64_t> offsets, param_numels;
    std::vector<std::vector<int64_t>> param_shapes;
    int64_t numel = 0, padded = 0, shard = 0;
    torch::Tensor flat;           // [padded] all parameters of the block, in the model's dtype
    torch::Tensor grad;           // stage 0/1: [padded] fp32 reduced gradient; stage 2: [shard]
    torch::Tensor owned;          // what the optimizer updates: full flat (stage 0) or this rank's shard
    torch::Tensor owned_grad;     // fp32 gradient of `owned`
    bool sharded_params = false;  // stage 3 decoder layer: only `owned` persists
    // Stage 2 decoder layer: its gradient is reduce-scattered in backward as soon as the
    // layer's backward has run, and accumulated (fp32, [shard]) in grad_sink's .grad.
    bool reduce_in_backward = false;
    bool recompute = false;  // activation checkpointing: the layer runs again in backward
    // Stage 2: the fp32 [shard] whose .grad accumulates the reduced gradient. Stage 0/1
    // recomputed layer: the fp32 [padded] whose .grad accumulates the layer's flat gradient
    // (autograd sums a step's contributions as it would for the parameters themselves), which
    // also keeps the layer on the graph when its input needs no gradient (LoRA).
    torch::Tensor grad_sink;
    int64_t layer = -1;
    int64_t first_param = 0;  // index of the block's first parameter among all trainable ones
    // Stage 3 decoder layer: the layer's frozen parameters (LoRA's base weights, or those a
    // method does not train) are sharded too, in a second flat buffer of their own dtype that
    // no optimizer touches: this rank keeps `frozen_owned` [frozen_shard], gathered with the
    // trained ones around every use of the layer.
    std::vector<std::pair<std::string, torch::Tensor>> frozen;
    std::vector<int64_t> frozen_offsets, frozen_numels;
    std::vector<std::vector<int64_t>> frozen_shapes;
    int64_t frozen_padded = 0, frozen_shard = 0;
    torch::Tensor frozen_owned;
  };

 public:
  // Helpers of the layer autograd functions (ZeRO 2 and 3). gather_into_model returns the
  // gathered buffer of the frozen parameters (undefined when there are none), whose views they
  // now are.
  torch::Tensor gather_into_model(Block& b);
  // gather_into_model for the sharded layer of block k, from its prefetched buffers when they
  // were started for it; then, with prefetch on, starts the gather of the sharded layer at
  // layer + direction (+1 forward, -1 backward) if there is one.
  void gather_layer(size_t k, int direction);
  // The sharded layer k's gradient (its parameters' gradients, flattened): reduce-scattered into
  // its shard's gradient at once, or with overlap on, started now and finished when the next
  // one starts (at most one in flight). Finished ones are summed per backward pass, as autograd
  // sums a leaf's contributions within one, and the sum joins the shard's gradient when the next
  // forward starts or the gradients are reduced (flush_gradients): the same additions in the
  // same order as without overlap. With gradient accumulation that sum is a second fp32 shard
  // of the layers' gradients while a later micro-batch runs backward.
  torch::Tensor reduce_layer_gradient(size_t k, const std::vector<torch::Tensor>& grads);
  void flush_gradients();
  void release_from_model(Block& b);
  // The block's parameter gradients (undefined: zero) as one fp32 [padded] buffer, and that
  // averaged across ranks into this rank's fp32 shard.
  torch::Tensor flatten_grads(Block& b, const std::vector<torch::Tensor>& grads);
  torch::Tensor reduce_scatter_grads(Block& b, const std::vector<torch::Tensor>& grads);
  // Trained blocks first (0 .. blocks_.size() - 1), then the ZeRO 3 layers with nothing to train.
  Block& block(size_t i) { return i < blocks_.size() ? blocks_[i] : frozen_layers_[i - blocks_.size()]; }
  CausalLM& model() { return model_; }

 private:
  torch::Tensor flat_grad(Block& b);                           // [padded] fp32; frees the parameters' .grad
  void fill_shard(Block& b, const DeferredWeights& deferred);  // this rank's shard, from the checkpoint
  // Stage 3: b's frozen parameters become this rank's shard of them (from the checkpoint when
  // they are deferred, else from the model, whose copy is released).
  void shard_frozen(Block& b, std::vector<std::pair<std::string, torch::Tensor>> frozen,
                    const DeferredWeights* deferred);
  // The weight penalty's gradient of this rank's share of b's parameters (index mod N, scaled
  // by N), on the whole parameters (a ZeRO 3 layer is gathered for it): one path, every stage.
  std::vector<torch::Tensor> penalty_grads(Block& b);
  void gather_params(Block& b);

  CausalLM model_;  // shares the caller's module: the engine stays valid when the holder moves
  Communicator& comm_;
  int stage_;
  WeightPenalty penalty_;
  std::vector<Block> blocks_;
  // Stage 3: decoder layers whose parameters are all frozen, as blocks with only the frozen
  // buffer (no optimizer state, no gradient); they follow blocks_ in block(i)'s numbering.
  std::vector<Block> frozen_layers_;
  // Calls fn on every block that holds parameters of the model: the trained ones, then the
  // frozen ZeRO 3 layers.
  template <typename Fn>
  void for_each_block(Fn fn) {
    for (auto& b : blocks_) fn(b);
    for (auto& b : frozen_layers_) fn(b);
  }
  template <typename Fn>
  void for_each_block(Fn fn) const {
    for (auto& b : blocks_) fn(b);
    for (auto& b : frozen_layers_) fn(b);
  }
  std::unique_ptr<Optimizer> opt_;
  std::vector<torch::Tensor> kept_;  // per block: this rank's kept parameter shard (CPU)
  // ZeRO 3 overlap: the block whose gathers are in flight, their buffers and requests; the
  // block whose gradient reduce-scatter is in flight, its shard and request.
  struct Prefetch {
    size_t block = SIZE_MAX;
    torch::Tensor full, frozen;
    std::unique_ptr<PendingCollective> params, frozen_params;
  };
  Prefetch prefetch_;
  struct PendingGradient {
    size_t block = SIZE_MAX;
    torch::Tensor flat, shard;
    std::unique_ptr<PendingCollective> op;
  };
  PendingGradient pending_grad_;
  std::vector<torch::Tensor> backward_sum_;  // per block: this backward pass's finished shard gradients
  void finish_gradient();                    // waits for the one in flight and adds it to backward_sum_
  bool overlap_ = false;
  std::map<int64_t, size_t> sharded_layers_;  // decoder layer -> its ZeRO 3 sharded block
};

// The default CPU generator's state (LoRA dropout draws from it): saved in checkpoints and
// replayed when ZeRO 3 recomputes a layer.
torch::Tensor cpu_rng_state();
void set_cpu_rng_state(const torch::Tensor& t);

}  // namespace lethe
