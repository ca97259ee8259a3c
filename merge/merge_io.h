// Writing a merged model, shared by `lethe merge` (from disk) and `lethe spunge` (in memory):
// the output's shards (at most --max-shard-size each) are the unit of work, spread over the ranks
// by size. A rank merges a shard's tensors one at a time (one tensor's K deltas in memory, and
// the shard's merged tensors) and writes the shard file once (temporary name, fsync, rename), so
// an interrupted merge resumes without redoing written shards; then rank 0 writes the index,
// config.json and the tokenizer files, and publishes the directory (common/fs.h's protocol: the
// job description first, the COMPLETE marker last). HF output is a directory transformers loads;
// native output is lethe's HDF5 checkpoint.
#pragma once
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "checkpoints/model_io.h"
#include "checkpoints/tensor_reader.h"
#include "common/json_io.h"
#include "dist/communicator.h"
#include "merge/merge_rules.h"

namespace lethe {

struct MergeOutput {
  std::string out;
  CheckpointFormat format = CheckpointFormat::kNative;
  std::vector<std::string> names;           // every tensor, sorted
  std::vector<int64_t> bytes;               // bytes[i]: size of names[i] (the base's dtype)
  std::vector<std::vector<size_t>> shards;  // indices into names, name order, each <= max_shard_bytes
  json config;                              // the base's config.json, the output's
};

MergeOutput plan_merge_output(const TensorReader& base, const std::string& out, CheckpointFormat format,
                              uint64_t max_shard_bytes);
// Greedy largest-first assignment of items (by bytes) to `parts` parts; deterministic.
std::vector<int> assign_by_size(const std::vector<int64_t>& bytes, int parts);

// Collective. Creates OUT with its job description (lethe_merge.json, written first) and its
// staging folder, or re-opens a merge of the same job (the description must match); true when
// that merge is already complete. A foreign OUT (no description, not empty) is refused.
bool open_merge_output(const MergeOutput& mo, const json& job, Communicator& comm);
bool is_shard_written(const MergeOutput& mo, size_t j);
// Shard j's file, atomically (its writer's temporary name, fsync, rename).
void write_merged_shard(const MergeOutput& mo, size_t j, const NamedTensors& tensors, const json& job);
// The job description both merge commands store ({"method", ..., "format", "max_shard_bytes"}).
json merge_job_json(const MergeOptions& o, CheckpointFormat format, uint64_t max_shard_bytes);
// Collective. Every shard must be written.
void assemble_merge_output(const MergeOutput& mo, const TensorReader& base, const json& job, Communicator& comm);

// `lethe spunge`'s in-memory merge, called by the members of one cross-group merge communicator
// (local rank `shard` of every group; its rank g belongs to group g and holds theta_g whole).
// The output shards are split into `shards` parts by size; this communicator owns part `shard`:
// for each tensor of its shards the members all-gather their deltas (one tensor's K deltas in
// memory at a time), and member (j mod K) merges the part's j-th shard and writes it. Shards
// written by an interrupted run are skipped. assemble_merge_output() follows, over all ranks.
// theta needs only the tensors of the communicator's part: merge_part_names(mo, shard, shards).
void merge_sharded(const TensorReader& base, const std::map<std::string, torch::Tensor>& theta, const MergeMethod& rule,
                   const MergeOutput& mo, const json& job, Communicator& merge_comm, int shard, int shards);
std::set<std::string> merge_part_names(const MergeOutput& mo, int shard, int shards);

// `lethe merge`: each rank merges its share of the output shards from disk (one tensor and its K
// deltas in memory at a time, plus the shard's merged tensors). Stops early, with exit code
// kExitPreempted, at the first shard boundary after `max_tensors` tensors per rank (0: no
// limit), or on a preemption signal (the shard in progress is dropped); rerunning the same
// command resumes from the written shards.
int merge_from_disk(const TensorReader& base, const std::vector<TensorReader>& models, const MergeMethod& rule,
                    const MergeOutput& mo, const json& job, Communicator& comm, int64_t max_tensors);

// `lethe merge` whole: opens and compares every checkpoint (names, dtypes, shapes) before
// anything is written, plans the output, finds an earlier run's finished merge or resumes it,
// and merges. 0, or kExitPreempted when stopped early (max_tensors or a signal).
int merge_checkpoints(const std::string& base, const std::vector<std::string>& models, const MergeOptions& merge,
                      const OutputOptions& output, Communicator& comm, int64_t max_tensors = 0);

}  // namespace lethe
