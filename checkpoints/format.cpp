#include "checkpoints/format.h"

#include <filesystem>

#include "checkpoints/hdf5_checkpoint.h"
#include "checkpoints/safetensors.h"
#include "common/error.h"
#include "common/fs.h"

namespace fs = std::filesystem;

namespace lethe {

const std::vector<std::string>& checkpoint_format_names() {
  static const std::vector<std::string> names = {"native", "hf"};
  return names;
}

CheckpointFormat parse_checkpoint_format(const std::string& value, const std::string& option) {
  if (value == "native") return CheckpointFormat::kNative;
  if (value == "hf") return CheckpointFormat::kHf;
  throw InputError(option + ": unknown checkpoint format '" + value + "' (native, hf)");
}

std::string format_name(CheckpointFormat f) { return f == CheckpointFormat::kNative ? "native" : "hf"; }

CheckpointFormat detect_format(const std::string& dir) {
  if (!fs::exists(dir)) throw InputError("model '" + dir + "': no such directory");
  if (!fs::is_directory(dir)) throw InputError("model '" + dir + "' is not a directory");
  if (fs::exists(fs::path(dir) / "model.h5") || fs::exists(fs::path(dir) / kNativeIndex))
    return CheckpointFormat::kNative;
  if (has_hf_weights(dir)) return CheckpointFormat::kHf;
  if (is_complete_dir(dir)) return CheckpointFormat::kNative;  // a native checkpoint that lost its data
  throw InputError("model '" + dir + "' holds no weights (model.safetensors[.index.json] or a native checkpoint)");
}

namespace {

class NativeWriter : public CheckpointWriter {
 public:
  CheckpointFormat format() const override { return CheckpointFormat::kNative; }
  std::string shard_extension() const override { return "h5"; }
  std::string index_name() const override { return kNativeIndex; }
  void write_shard_streamed(const std::string& path, const NamedTensors& layout, const TensorSource& value,
                            const json& model_config, const json& run_config) const override {
    write_file_via_temp(path, [&](const std::string& tmp) {
      write_h5_tensors(tmp, layout, value,
                       {{"model_config", model_config}, {"run_config", run_config}, {"format_version", 1}});
    });
  }
  void write_metadata(const std::string& dir, const json& model_config, const json&) const override {
    write_json_file((fs::path(dir) / "config.json").string(), model_config);  // run_config: in every shard
  }
};

class HfWriter : public CheckpointWriter {
 public:
  CheckpointFormat format() const override { return CheckpointFormat::kHf; }
  std::string shard_extension() const override { return "safetensors"; }
  std::string index_name() const override { return "model.safetensors.index.json"; }
  void write_shard_streamed(const std::string& path, const NamedTensors& layout, const TensorSource& value, const json&,
                            const json&) const override {
    write_file_via_temp(path, [&](const std::string& tmp) {
      write_safetensors(tmp, layout, value, {{"format", "pt"}});
    });
  }
  void write_metadata(const std::string& dir, const json& model_config, const json& run_config) const override {
    write_json_file((fs::path(dir) / "config.json").string(), model_config);
    write_json_file((fs::path(dir) / "lethe_run_config.json").string(), run_config);
  }
};

}  // namespace

void CheckpointWriter::write_shard(const std::string& path, const NamedTensors& tensors, const json& model_config,
                                   const json& run_config) const {
  write_shard_streamed(path, tensors, values_of(tensors), model_config, run_config);
}

std::unique_ptr<CheckpointWriter> make_checkpoint_writer(CheckpointFormat f) {
  if (f == CheckpointFormat::kNative) return std::make_unique<NativeWriter>();
  return std::make_unique<HfWriter>();
}

std::vector<std::vector<size_t>> plan_model_shards(const NamedTensors& tensors, uint64_t max_shard_bytes) {
  std::vector<uint64_t> bytes;
  for (auto& nt : tensors) bytes.push_back(tensor_bytes(nt.second));
  auto shards = plan_shards(bytes, max_shard_bytes);
  if (shards.empty()) shards.emplace_back();  // no tensors: still one (empty) file
  return shards;
}

void write_model_metadata_files(const CheckpointWriter& w, const std::string& dir, const NamedTensors& tensors,
                                const std::vector<std::vector<size_t>>& shards, const json& model_config,
                                const json& run_config, const std::vector<std::string>& side_files) {
  if (shards.size() > 1) {
    json weight_map = json::object();
    uint64_t total = 0;
    for (size_t j = 0; j < shards.size(); ++j)
      for (size_t i : shards[j]) {
        weight_map[tensors[i].first] = shard_file_name(j, shards.size(), w.shard_extension());
        total += tensor_bytes(tensors[i].second);
      }
    write_weight_index(dir, w.index_name(), weight_map, total);
  }
  w.write_metadata(dir, model_config, run_config);
  for (auto& c : side_files) copy_file_checked(c, (fs::path(dir) / fs::path(c).filename()).string());
}

void write_model_files(const CheckpointWriter& w, const std::string& dir, const NamedTensors& tensors,
                       const json& model_config, const json& run_config, const std::vector<std::string>& side_files,
                       uint64_t max_shard_bytes, int part, int parts) {
  const auto shards = plan_model_shards(tensors, max_shard_bytes);
  for (size_t j = 0; j < shards.size(); ++j) {
    if (int(j % size_t(parts)) != part) continue;
    NamedTensors shard;
    for (size_t i : shards[j]) shard.push_back(tensors[i]);
    w.write_shard((fs::path(dir) / shard_file_name(j, shards.size(), w.shard_extension())).string(), shard,
                  model_config, run_config);
  }
  if (part == 0) write_model_metadata_files(w, dir, tensors, shards, model_config, run_config, side_files);
}

}  // namespace lethe
