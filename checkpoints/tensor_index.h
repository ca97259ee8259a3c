// Format-neutral pieces of a checkpoint directory: the tensor containers, shard planning, shard
// file names and the HF-layout index ({"metadata": {"total_size"}, "weight_map": {tensor: file}})
// that both safetensors and native HDF5 checkpoints use when they are sharded.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/json_io.h"

namespace lethe {

using TensorMap = std::map<std::string, torch::Tensor>;
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;
// Tensor i of a file being written, computed when the writer asks for it (the writers below call
// it once per tensor, in order), so a file's tensors need not all be in memory at once.
using TensorSource = std::function<torch::Tensor(size_t i)>;
// The source of tensors already in memory: tensors[i].second (`tensors` must outlive it).
TensorSource values_of(const NamedTensors& tensors);

// Shards of consecutive items, each at most max_shard_bytes (0: one shard; an item larger than
// the limit gets a shard of its own); indices into `bytes`.
std::vector<std::vector<size_t>> plan_shards(const std::vector<uint64_t>& bytes, uint64_t max_shard_bytes);
// "model.EXT" for a single shard, else HF's "model-0000j-of-0000n.EXT" (j from 0).
std::string shard_file_name(size_t j, size_t n, const std::string& ext);
// Reading returns file -> its tensors, each file a plain name inside `dir` (CorruptError else).
std::map<std::string, std::vector<std::string>> read_weight_index(const std::string& dir,
                                                                  const std::string& index_name);
void write_weight_index(const std::string& dir, const std::string& index_name, const json& weight_map,
                        uint64_t total_bytes);

size_t dtype_size(torch::ScalarType t);
uint64_t tensor_bytes(const torch::Tensor& t);
// value(i), contiguous on the CPU, after checking its dtype and shape against layout[i]
// (InternalError naming `path` and the tensor when they differ).
torch::Tensor source_tensor(const NamedTensors& layout, const TensorSource& value, size_t i, const std::string& path);

}  // namespace lethe
