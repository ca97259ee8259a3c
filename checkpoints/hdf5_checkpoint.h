// lethe's native checkpoint: a directory holding HDF5 files with one dataset per tensor
// (named by its HF name), metadata as JSON-string attributes, bf16/f16 stored as 16-bit
// integers with a `dtype` attribute (HDF5 1.10 has no bf16 type), each dataset contiguous with
// a `hash64b` attribute (common/hash.h hash_blocks of its bytes; files of earlier versions have
// chunked datasets under HDF5's Fletcher32 filter, and still load). Directories are written by common/fs.h's protocol
// (temporary name, fsync, rename, COMPLETE marker last); loading refuses a directory without the marker.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "checkpoints/tensor_index.h"
#include "common/fs.h"
#include "common/json_io.h"

namespace lethe {

// One HDF5 file: tensors as datasets, attrs as JSON-string attributes on the root group.
void write_h5_tensors(const std::string& path, const NamedTensors& tensors, const std::map<std::string, json>& attrs);
// Reads `names` (all when empty). Corruption (checksum, truncation, bad header) -> CorruptError.
TensorMap read_h5_tensors(const std::string& path, const std::vector<std::string>& names = {},
                          std::map<std::string, json>* attrs = nullptr);
// The root group's JSON attributes alone (no tensor data read).
std::map<std::string, json> read_h5_attributes(const std::string& path);
// dtype and shape of every tensor in the file, without reading the data.
struct H5TensorInfo {
  torch::ScalarType dtype;
  std::vector<int64_t> shape;
};
std::map<std::string, H5TensorInfo> h5_tensor_infos(const std::string& path);

// One file opened once for any number of reads (the functions above open it per call). Opening
// checks the bytes against the completion marker's checksum first (verify_written_file) and
// lists the datasets; CorruptError/InputError as above.
class H5Reader {
 public:
  explicit H5Reader(const std::string& path);
  ~H5Reader();
  H5Reader(const H5Reader&) = delete;
  H5Reader& operator=(const H5Reader&) = delete;
  const std::vector<std::string>& names() const { return names_; }
  bool has(const std::string& name) const;
  std::map<std::string, H5TensorInfo> infos() const;
  std::map<std::string, json> attributes() const;  // the root group's JSON attributes
  torch::Tensor read(const std::string& name) const;
  // Straight into `dst` (its dtype and element count, contiguous, on the CPU).
  void read_into(const std::string& name, torch::Tensor dst) const;
  // Where the data of the datasets carrying their own checksum (`hash64b`) lies in the file:
  // what the completion marker's checksum leaves to them (common/fs.h DataRegions).
  DataRegions data_regions() const;

 private:
  torch::Tensor read_dataset(const std::string& name, torch::Tensor dst) const;
  std::string path_;
  int64_t file_ = -1;  // the open file's hid_t
  int fd_ = -1;        // the same file, for read-ahead advice
  std::vector<std::string> names_;
};

// A native checkpoint holds model.h5, or shards listed in this index (HF's index layout:
// {"metadata": {...}, "weight_map": {tensor: file}}), as `lethe merge` and `lethe spunge` write.
constexpr const char* kNativeIndex = "model.h5.index.json";

// Writes a checkpoint directory atomically. `files` maps a file name in the directory to its
// tensors and attributes; `extra_files` are copied in (config.json, tokenizer.json, ...).
struct CheckpointFile {
  NamedTensors tensors;
  std::map<std::string, json> attrs;
};
void write_checkpoint_dir(const std::string& dir, const std::map<std::string, CheckpointFile>& files,
                          const std::map<std::string, std::string>& text_files,
                          const std::vector<std::string>& copy_files);

}  // namespace lethe
