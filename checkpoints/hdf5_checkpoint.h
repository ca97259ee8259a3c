// lethe's native checkpoint: a directory holding HDF5 files with one dataset per tensor
// (named by its HF name), metadata as JSON-string attributes, bf16/f16 stored as 16-bit
// integers with a `dtype` attribute (HDF5 1.10 has no bf16 type), each dataset contiguous with
// a `hash64b` attribute (common/hash.h hash_blocks of its bytes) and, above 1 MiB, the per-block
// hashes it folds (`hash64b_blocks`), so a range of it can be read and checked alone (files of
// earlier versions have chunked datasets under HDF5's Fletcher32 filter, or no block hashes, and
// still load). Directories are written by common/fs.h's protocol
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
// Tensor by tensor (CheckpointWriter::write_shard_streamed): dataset i from value(i), checked
// against layout[i], handed to the disk (start_writeback) before the next value is asked for.
void write_h5_tensors(const std::string& path, const NamedTensors& layout, const TensorSource& value,
                      const std::map<std::string, json>& attrs);
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
  // Elements [first, first + count) of the flattened tensor. A dataset written with its block
  // hashes (`hash64b_blocks`) is read only in the 1 MiB blocks that cover the range, each checked
  // against its hash (and the list against `hash64b`); other datasets are read whole (checked).
  torch::Tensor read_range(const std::string& name, int64_t first, int64_t count) const;
  // The elements at `index` of the flattened tensor, read in place from a contiguous dataset
  // without checking them against its checksum (a sample, such as the run identity, of a tensor
  // whose blocks the shard reads check); other datasets are read whole (checked).
  torch::Tensor read_elements(const std::string& name, const std::vector<int64_t>& index) const;
  // Where the data of the datasets carrying their own checksum (`hash64b`) lies in the file:
  // what the completion marker's checksum leaves to them (common/fs.h DataRegions).
  DataRegions data_regions() const;

 private:
  torch::Tensor read_dataset(const std::string& name, torch::Tensor dst) const;
  // Where a dataset's bytes lie when they can be read in place (contiguous, little-endian, and
  // a file descriptor open): offset 0 otherwise.
  struct InPlace {
    torch::ScalarType dtype;
    int64_t numel = 0;
    uint64_t offset = 0;
    std::string hash64b;
    std::vector<uint64_t> blocks;  // hash64b_blocks, when written
  };
  InPlace in_place(const std::string& name) const;
  std::string path_;
  int64_t file_ = -1;  // the open file's hid_t
  int fd_ = -1;        // the same file: read-ahead advice, and reads in place (read_range)
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
