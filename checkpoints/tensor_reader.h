// Tensor-by-tensor access to a model checkpoint directory without loading it whole: Hugging
// Face safetensors (model.safetensors or an index with shards) and native HDF5 (model.h5 or
// model.h5.index.json with shards). Names, dtypes and shapes come from the headers alone, so
// checkpoints can be compared before any data is read; read() loads one tensor.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "checkpoints/format.h"

namespace lethe {

class H5Reader;

struct TensorInfo {
  torch::ScalarType dtype;
  std::vector<int64_t> shape;
  std::string file;          // full path of the file that holds it
  uint64_t file_offset = 0;  // safetensors: where its bytes start in `file`
  int64_t numel() const;
  int64_t bytes() const;
};

class TensorReader {
 public:
  explicit TensorReader(const std::string& dir);  // InputError/CorruptError naming the problem
  const std::string& dir() const { return dir_; }
  CheckpointFormat format() const { return format_; }
  const std::map<std::string, TensorInfo>& tensors() const { return infos_; }
  // The tensor; a floating-point one holding NaN or Inf is a CorruptError naming it.
  torch::Tensor read(const std::string& name) const;
  // The same into `dst` without a temporary when dst is a contiguous CPU tensor of the stored
  // dtype and element count (else read + copy).
  void read_into(const std::string& name, torch::Tensor dst) const;
  // Elements [first, first + count) of the flattened tensor, in the stored dtype, checked
  // finite. Safetensors: only those bytes are read. Native: the dataset is read whole (its
  // checksum covers the whole dataset) and the range kept, so one tensor is held at a time.
  torch::Tensor read_range(const std::string& name, int64_t first, int64_t count) const;
  // The elements at `index` (ascending) of the flattened tensor, in the stored dtype.
  torch::Tensor read_elements(const std::string& name, const std::vector<int64_t>& index) const;

 private:
  const TensorInfo& info(const std::string& name) const;  // InputError naming an absent tensor
  void fill(const std::string& name, const TensorInfo& info, const torch::Tensor& dst) const;
  std::string dir_;
  CheckpointFormat format_ = CheckpointFormat::kNative;
  std::map<std::string, TensorInfo> infos_;
  std::map<std::string, std::shared_ptr<const H5Reader>> h5_;  // native: each file opened once
};

// Loaded weights must be finite: a NaN or Inf in a floating-point tensor is a CorruptError
// naming the tensor and `where` (the checkpoint), so a broken model is never trained, merged or
// scored as if it were a model.
void require_finite(const std::string& where, const std::string& name, const torch::Tensor& t);

// InputError naming the first tensor whose name, dtype or shape differs between `a` and `b`.
void require_same_tensors(const TensorReader& a, const TensorReader& b);

}  // namespace lethe
