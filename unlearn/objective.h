// The Objective seam: one class per method, one file each. The training loop calls
// compute() and never branches on method names. Each method declares its own options as data
// (with the defaults of docs/METHODS.md) so `lethe unlearn --help` lists them.
//
// Life of an objective: choose_trained() (by parameter name) and prepare() once before
// training, on the model at theta_0 (ref caches, derived items, parameter selection, snapshots); begin_step() before
// each optimizer step; compute() per micro-batch on this rank's slice; end_step() after each step; finish() once after
// training on the whole (LoRA-merged) model.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "common/json_io.h"
#include "data/batching.h"
#include "dist/communicator.h"
#include "model/llama.h"
#include "unlearn/method_options.h"

namespace lethe {

class DataParallel;

struct ObjectiveResult {
  torch::Tensor loss;                   // scalar to minimise
  std::map<std::string, double> parts;  // logged components (forget_nll, retain_nll, ...)
};

// What prepare() may look at, and the item lists it may replace (snap and idk train on
// derived items: the forget questions with refusals, hard positives).
struct ObjectiveContext {
  std::vector<TokenizedItem>* forget = nullptr;  // the primary items
  std::vector<TokenizedItem>* retain = nullptr;  // empty when the method has no retain term
  const std::vector<Example>* forget_examples = nullptr;
  const std::vector<Example>* retain_examples = nullptr;
  // The item indices the training loop will draw (sorted, unique): caches cover these only.
  std::vector<int64_t> forget_used, retain_used;
  const Tokenizer* tok = nullptr;
  ChatTemplate tmpl = ChatTemplate::ChatML;
  int64_t max_len = 256;
  int64_t pad_id = 0;
  uint64_t seed = 0;
  int zero_stage = 0;
  Communicator* comm = nullptr;
  // ZeRO 3 kept sharded: the engine, built before prepare(). Its forward passes gather one
  // layer at a time, so every rank must run the same passes in the same order (no splitting
  // items across ranks); parameter values come through its visitors.
  DataParallel* engine = nullptr;
};

class Objective {
 public:
  virtual ~Objective() = default;
  // Before prepare() and before any data-parallel engine exists: which parameters train
  // (requires_grad), from their names alone (a sharded load's decoder-layer weights are still
  // empty here). Default: the loaded model's choice (all, or the LoRA adapters).
  virtual void choose_trained(CausalLM& /*model*/) {}
  // A method that chooses what trains from gradients at theta_0 (memflex locating its adapters)
  // on a model kept sharded (ZeRO 3): locate_trained() gets, in ctx.engine, an engine over every
  // parameter that trains so far. It runs forward and backward passes through it (every rank the
  // same number), reads their gradients with visit_gradient_shards(), and sets requires_grad on
  // what is to train. That engine then goes, and the engine that trains is built over the
  // choice (make_sharded_engine). On a whole model, prepare() does all of it instead.
  virtual bool locates_trained() const { return false; }
  virtual void locate_trained(CausalLM& /*model*/, ObjectiveContext& /*ctx*/) {}
  virtual void prepare(CausalLM& /*model*/, ObjectiveContext& /*ctx*/) {}
  virtual void begin_step(int64_t /*step*/) {}
  // forget: the primary batch (the data to forget; for finetuning, the data to learn).
  // retain: a retain batch when uses_retain(), else nullptr. Batch::index names the items.
  virtual ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) = 0;
  virtual void finish(CausalLM& /*model*/) {}
  // With LoRA adapters attached: after training, before they are merged into the weights (whole,
  // or one layer at a time as a ZeRO 3 run kept sharded is saved), e.g. to rescale them.
  virtual void finish_adapters(CausalLM& /*model*/) {}
  // After each optimizer step, with the step's logged parts averaged over micro-batches and
  // ranks (the same on every rank): state that follows the run (PDU's dual variable) moves here.
  virtual void end_step(int64_t /*step*/, const std::map<std::string, double>& /*parts*/) {}
  // That state, stored in every training checkpoint and given back on --resume.
  virtual json state() const { return json::object(); }
  virtual void restore(const json& /*state*/) {}
  virtual bool uses_retain() const { return false; }
  // What prepare() and finish() need of the weights. kNone: nothing. kSameForwardOnEveryRank:
  // forward passes (reference values, generations) or whole parameter values visited through
  // ctx.engine, as many in the same order on every rank (cache_per_item shares the items across
  // the ranks, with filler passes), which a ZeRO 3 engine serves by gathering one layer at a
  // time. kShardwise: finish() is an element-wise function of each
  // trained parameter and its value at theta_0 (a task vector), which finish_shards() applies to
  // each rank's shard (with LoRA, finish_adapters() on the adapters instead).
  // kWhole: the weights themselves (a choice of parameters by their values) or passes split
  // across ranks (gradients: see locate_trained). At ZeRO 3
  // a method that does not need kWhole has its decoder layers read straight into each rank's
  // shard and saved from them: no rank holds the model whole at any point.
  enum class WeightUse { kNone, kSameForwardOnEveryRank, kShardwise, kWhole };
  virtual WeightUse weight_use_outside_training() const { return WeightUse::kWhole; }
  // finish() for a run kept sharded (ZeRO 3, not kWhole): only kShardwise methods do anything.
  virtual void finish_shards(DataParallel& /*engine*/) {}
  // A penalty on whole trainable tensors (index among them, value) that the data-parallel
  // engine applies itself to the parameters ZeRO 3 shards (SNAP's regulariser); none by default.
  virtual std::function<torch::Tensor(int64_t, const torch::Tensor&)> weight_penalty() { return {}; }
  // Stored with the output checkpoint's run config (e.g. MemFlex's localization).
  virtual json describe() const { return json::object(); }
};

// A method as data: its name, a one-line summary, its options (name, default, help; the
// launcher turns them into flags), all read from unlearn/<name>.method.json, and its factory. The factory validates the
// options (an InputError naming the option), so a bad value is refused before anything is loaded.
struct ObjectiveSpec {
  std::string name;
  std::string summary;
  std::vector<OptionDecl> options;
  std::function<std::unique_ptr<Objective>(const MethodOptions&)> build;
  // The objective with `given` over the declared defaults (any option not given keeps its default).
  std::unique_ptr<Objective> make(const MethodOptions& given = {}) const {
    return build(MethodOptions(options, given.values()));
  }
};

// The spec of the method declared in unlearn/<name>.method.json, built by `build`.
ObjectiveSpec declared_objective(const std::string& name,
                                 std::function<std::unique_ptr<Objective>(const MethodOptions&)> build);

// ObjectiveSpec::build for a class constructed from its MethodOptions (or from nothing).
template <typename T>
std::unique_ptr<Objective> build(const MethodOptions& o) {
  if constexpr (std::is_constructible_v<T, const MethodOptions&>)
    return std::make_unique<T>(o);
  else
    return std::make_unique<T>();
}

// Every method, in the order `--help` lists them.
const std::vector<ObjectiveSpec>& objective_registry();
const ObjectiveSpec& find_objective(const std::string& name);

// Declared here, defined one per file.
ObjectiveSpec nll_objective_spec();
ObjectiveSpec ga_objective_spec();
ObjectiveSpec gd_objective_spec();
ObjectiveSpec kl_objective_spec();
ObjectiveSpec random_label_objective_spec();
ObjectiveSpec adversarial_objective_spec();
ObjectiveSpec npo_objective_spec();
ObjectiveSpec simnpo_objective_spec();
ObjectiveSpec dpo_objective_spec();
ObjectiveSpec idk_objective_spec();
ObjectiveSpec rmu_objective_spec();
ObjectiveSpec tvn_objective_spec();
ObjectiveSpec memflex_objective_spec();
ObjectiveSpec snap_objective_spec();
ObjectiveSpec undial_objective_spec();
ObjectiveSpec wga_objective_spec();
ObjectiveSpec satimp_objective_spec();
ObjectiveSpec ce_u_objective_spec();
ObjectiveSpec altpo_objective_spec();
ObjectiveSpec pdu_objective_spec();

// Mean over items of the mean answer-token NLL (each item weighs the same).
torch::Tensor mean_item_nll(CausalLM& model, const Batch& b);

}  // namespace lethe
