// `lethe bench checkpoint` and `lethe bench merge`: the bandwidth of writing and reading a model
// checkpoint and the throughput of a merge, measured on the real code paths (save_model with
// its fsyncs and completion marker, load_model with its checks, merge_checkpoints), each into a
// scratch directory that is removed afterwards. Before every cold read the files' pages are
// dropped from the page cache (posix_fadvise DONTNEED on each file: no root needed).
#pragma once
#include <string>
#include <vector>

#include "checkpoints/model_io.h"
#include "common/json_io.h"
#include "dist/communicator.h"
#include "merge/merge_rules.h"

namespace lethe {

// Bytes of the regular files below `path` (or of the file itself).
uint64_t bytes_on_disk(const std::string& path);
// Drops the cached pages of every regular file below `path` (or of the file itself).
void evict_page_cache(const std::string& path);

struct CheckpointBenchOptions {
  std::string model_config;  // HF config.json of a random model
  std::string dtype;         // "": the config's torch_dtype
  CheckpointFormat format = CheckpointFormat::kNative;
  uint64_t max_shard_bytes = 5000000000ULL;
  std::string dir;  // an existing directory for the scratch checkpoints
  int64_t repeats = 3;
};
// write_s, read_cold_s, read_warm_s (medians) and their MB/s (1 MB = 1e6 bytes), bytes.
json bench_checkpoint(const CheckpointBenchOptions& o);

struct MergeBenchOptions {
  std::string base;
  std::vector<std::string> models;
  MergeOptions merge;
  CheckpointFormat format = CheckpointFormat::kNative;
  uint64_t max_shard_bytes = 5000000000ULL;
  std::string dir;  // an existing directory for the scratch outputs
  int64_t repeats = 3;
  bool cold = true;  // drop the inputs' cached pages before every run
};
// merge_s (median), output bytes and MB/s, input bytes, over `comm`.
json bench_merge(const MergeBenchOptions& o, Communicator& comm);

}  // namespace lethe
