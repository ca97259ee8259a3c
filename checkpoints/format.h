// The checkpoint-format seam. A model directory is either lethe's native checkpoint (HDF5
// shards with the configuration as attributes) or a Hugging Face directory (safetensors shards,
// config.json). Every model writer (save_model, the merge output) plans shards, writes each
// through a CheckpointWriter, then the index and the format's metadata, inside a directory
// that is not yet final; common/fs.h's protocol publishes it. Adding a format is one writer.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "checkpoints/tensor_index.h"

namespace lethe {

enum class CheckpointFormat { kNative, kHf };

const std::vector<std::string>& checkpoint_format_names();  // "native", "hf"
// InputError naming `option` for an unknown value.
CheckpointFormat parse_checkpoint_format(const std::string& value, const std::string& option);
std::string format_name(CheckpointFormat f);
// What `dir` holds: native files (model.h5, its index, or a completion marker without HF
// weights), else HF weights; InputError when neither.
CheckpointFormat detect_format(const std::string& dir);

class CheckpointWriter {
 public:
  virtual ~CheckpointWriter() = default;
  virtual CheckpointFormat format() const = 0;
  virtual std::string shard_extension() const = 0;  // "h5" | "safetensors"
  virtual std::string index_name() const = 0;       // the index of a sharded checkpoint
  // One shard file, written through a temporary name.
  void write_shard(const std::string& path, const NamedTensors& tensors, const json& model_config,
                   const json& run_config) const;
  // The same, tensor by tensor: `layout` gives every tensor's name, dtype and shape (placeholders
  // on the meta device will do) and `value(i)` its values, asked for in order once each; a value
  // whose dtype or shape differs from its layout is an InternalError. Each tensor's bytes are
  // handed to the disk as soon as they are written (start_writeback), so the disk writes while
  // `value` computes the next tensor. An exception from `value` leaves no file behind.
  virtual void write_shard_streamed(const std::string& path, const NamedTensors& layout, const TensorSource& value,
                                    const json& model_config, const json& run_config) const = 0;
  // config.json, and where the shards do not carry it, the run configuration.
  virtual void write_metadata(const std::string& dir, const json& model_config, const json& run_config) const = 0;
};
std::unique_ptr<CheckpointWriter> make_checkpoint_writer(CheckpointFormat f);

// plan_shards -> write_shard each -> the index when sharded -> write_metadata -> the side files
// (tokenizer, generation config) copied in. `dir` exists and is not yet published. Written by
// `parts` processes together: part p writes shards p, p + parts, ...; part 0 also the index,
// metadata and side files (every part plans the same shards from the same tensors).
void write_model_files(const CheckpointWriter& w, const std::string& dir, const NamedTensors& tensors,
                       const json& model_config, const json& run_config, const std::vector<std::string>& side_files,
                       uint64_t max_shard_bytes, int part = 0, int parts = 1);
// The pieces of write_model_files, for writers that get the tensors in parts (a ZeRO 3 model
// saved from its shards): the shards' tensor indices (at least one, maybe empty, shard) and
// the files part 0 writes after them (the index when sharded, metadata, side files). Only the
// tensors' names, shapes and dtypes are read, so they may be placeholders on the meta device.
std::vector<std::vector<size_t>> plan_model_shards(const NamedTensors& tensors, uint64_t max_shard_bytes);
void write_model_metadata_files(const CheckpointWriter& w, const std::string& dir, const NamedTensors& tensors,
                                const std::vector<std::vector<size_t>>& shards, const json& model_config,
                                const json& run_config, const std::vector<std::string>& side_files);

}  // namespace lethe
