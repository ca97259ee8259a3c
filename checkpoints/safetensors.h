// Hugging Face safetensors, single file and sharded (model.safetensors.index.json).
// Input files are untrusted: the header is size-bounded, every tensor's byte range must lie
// inside the file, match dtype x shape, and not overlap another; only known dtypes load.
// Nothing is ever unpickled.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "common/json_io.h"

namespace lethe {

using TensorMap = std::map<std::string, torch::Tensor>;
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

struct SafetensorsEntry {
  std::string name;
  torch::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // relative to the data section
};

// Parses and validates the header only. Throws CorruptError naming the file and the problem.
std::vector<SafetensorsEntry> read_safetensors_header(const std::string& path, uint64_t* data_offset = nullptr,
                                                      std::map<std::string, std::string>* metadata = nullptr);
TensorMap read_safetensors(const std::string& path);
// Reads only `names` (all when empty): bounded memory for out-of-core work.
TensorMap read_safetensors_subset(const std::string& path, const std::vector<std::string>& names);
void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// A directory holding model.safetensors or model.safetensors.index.json + shards.
bool has_hf_weights(const std::string& dir);
TensorMap read_hf_weights(const std::string& dir);
// Splits into shards of at most max_shard_bytes (0: one file) and writes the index when sharded.
void write_hf_weights(const std::string& dir, const NamedTensors& tensors, uint64_t max_shard_bytes = 0);

// Shards of consecutive items, each at most max_shard_bytes (0: one shard; an item larger than
// the limit gets a shard of its own); indices into `bytes`.
std::vector<std::vector<size_t>> plan_shards(const std::vector<uint64_t>& bytes, uint64_t max_shard_bytes);
// "model.EXT" for a single shard, else HF's "model-0000j-of-0000n.EXT" (j from 0).
std::string shard_file_name(size_t j, size_t n, const std::string& ext);
// An index file in HF's layout ({"metadata": {"total_size"}, "weight_map": {tensor: file}}):
// reading returns file -> its tensors, each file a plain name inside `dir` (CorruptError else).
std::map<std::string, std::vector<std::string>> read_weight_index(const std::string& dir, const std::string& index_name);
void write_weight_index(const std::string& dir, const std::string& index_name, const json& weight_map, uint64_t total_bytes);

std::string safetensors_dtype_name(torch::ScalarType t);
size_t dtype_size(torch::ScalarType t);

}  // namespace lethe
