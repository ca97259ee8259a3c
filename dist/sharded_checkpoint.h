// Resumable training checkpoints, one file per rank plus a manifest (chosen over parallel
// HDF5: see docs/DISTRIBUTED.md). Layout of <root>/step-00000010/:
//   rank-00000.h5 ... rank-0000N.h5   this rank's parameter and optimizer-state shards, its RNG
//   manifest.json                     step, layout (world, ZeRO stage, blocks), data cursors,
//                                     run configuration
//   COMPLETE                          written last, after every rank's file is fsynced
// Written into a hidden temporary directory and renamed; only complete checkpoints are
// loaded; the two newest are kept. Loading onto another rank count reshards.
#pragma once
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "checkpoints/hdf5_checkpoint.h"
#include "checkpoints/model_io.h"
#include "dist/communicator.h"
#include "dist/data_parallel.h"

namespace lethe {

// Collective over `comm`. `shard` is this rank's tensors; `manifest` comes from rank 0.
void save_sharded_checkpoint(const std::string& root, int64_t step, Communicator& comm, const NamedTensors& shard,
                             const json& manifest, int keep = 2);
// Collective: save_model with every rank writing its share of the output's shards in parallel
// (shard j on rank j mod N; rank 0 also the index, config and tokenizer files) into one
// temporary directory that rank 0 then publishes (common/fs.h's protocol). Every rank holds the
// whole model and passes the same arguments; the files are those save_model writes. One rank
// failing fails all of them with its message, and nothing is left behind.
void save_model_on_ranks(CausalLM& model, const std::string& dir, CheckpointFormat format, const json& run_config,
                         const std::string& source_dir, uint64_t max_shard_bytes, Communicator& comm);

// The same for a ZeRO 3 run whose layers are still shards (train_loop's sharded engine): the
// output's shards are written in rounds, rank r writing shard k*N + r of round k, and each
// round gathers only the layers of its shards, one at a time, every rank keeping the tensors of
// its own shard. A rank's peak: one layer whole plus one output shard (--max-shard-size).
// LoRA adapters are merged into their weights as they are gathered (the output is the merged
// model, as after CausalLM::merge_lora).
void save_model_from_engine(DataParallel& engine, const std::string& dir, CheckpointFormat format,
                            const json& run_config, const std::string& source_dir, uint64_t max_shard_bytes,
                            Communicator& comm);

// Collective over the engine's ranks: fn(name, whole value) for every weight of the trained model
// named in `wanted` (named_weights' names), gathering one ZeRO 3 layer at a time (the value is
// valid during the call only). A LoRA-adapted weight comes merged, bit for bit as merge_lora
// leaves it, and the adapters' own parameters are never visited. Weights that no engine block
// holds are whole in the model and visited last.
void visit_trained_weights(DataParallel& engine, const std::set<std::string>& wanted,
                           const std::function<void(const std::string&, const torch::Tensor&)>& fn);
// The same without merging: fn(name, parameter, whole value) for each parameter named in `wanted`
// (named_weights' names, adapters' own included) that an engine block holds.
void visit_whole_named(DataParallel& engine, const std::set<std::string>& wanted,
                       const std::function<void(const std::string&, const torch::Tensor&, const torch::Tensor&)>& fn);

// The newest complete step-* directory under root, or "" when there is none.
std::string latest_complete_checkpoint(const std::string& root);

struct ShardedCheckpoint {
  json manifest;
  // One per rank that wrote the checkpoint, opened and checked against its marker but not
  // read: a resuming rank reads only the pieces it needs (DataParallel::load_sharded).
  std::vector<std::shared_ptr<const H5Reader>> shards;
};
ShardedCheckpoint load_sharded_checkpoint(const std::string& dir);

}  // namespace lethe
