// Hugging Face safetensors, single file and sharded (model.safetensors.index.json).
// Input files are untrusted: the header is size-bounded, every tensor's byte range must lie
// inside the file, match dtype x shape, and not overlap another; only known dtypes load.
// Nothing is ever unpickled.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "checkpoints/tensor_index.h"
#include "common/json_io.h"

namespace lethe {

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
// One tensor's bytes, starting `offset` bytes into the file (the header's data_offsets begin plus
// the data section's start), into dst (contiguous, its dtype and size from the header).
void read_safetensors_tensor_into(const std::string& path, uint64_t offset, const std::string& name,
                                  const torch::Tensor& dst);
void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});
// Tensor by tensor (CheckpointWriter::write_shard_streamed): the header from `layout`, then each
// value(i) written and handed to the disk (start_writeback) before the next is asked for.
void write_safetensors(const std::string& path, const NamedTensors& layout, const TensorSource& value,
                       const std::map<std::string, std::string>& metadata);

// A directory holding model.safetensors or model.safetensors.index.json + shards.
bool has_hf_weights(const std::string& dir);
TensorMap read_hf_weights(const std::string& dir);
std::string safetensors_dtype_name(torch::ScalarType t);

}  // namespace lethe
