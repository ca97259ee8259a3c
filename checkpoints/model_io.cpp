#include "checkpoints/model_io.h"

#include <filesystem>
#include <set>

#include "checkpoints/hdf5_checkpoint.h"
#include "checkpoints/safetensors.h"
#include "checkpoints/tensor_reader.h"
#include "common/error.h"
#include "common/fs.h"

namespace fs = std::filesystem;

namespace lethe {

std::vector<std::string> side_files(const std::string& dir) {
  std::vector<std::string> out;
  for (auto* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                  "tokenizer.model"})
    if (fs::exists(fs::path(dir) / f)) out.push_back((fs::path(dir) / f).string());
  return out;
}

ModelFiles read_model_files(const std::string& dir) {
  ModelFiles mf;
  mf.format = detect_format(dir);
  if (mf.format == CheckpointFormat::kNative) {
    require_complete(dir);
    std::map<std::string, json> attrs;
    std::string h5 = (fs::path(dir) / "model.h5").string();
    if (fs::exists(h5)) {
      mf.weights = read_h5_tensors(h5, {}, &attrs);
    } else {  // sharded: every file listed in the index carries the same attributes
      TensorReader reader(dir);
      std::set<std::string> files;
      for (auto& [name, info] : reader.tensors()) files.insert(info.file);
      for (auto& f : files) {
        h5 = f;
        for (auto& [name, t] : read_h5_tensors(f, {}, &attrs)) mf.weights.emplace(name, t);
      }
    }
    if (!attrs.count("model_config")) throw CorruptError(h5 + ": missing attribute 'model_config'");
    mf.config = ModelConfig::from_json(attrs["model_config"], h5 + " model_config");
    mf.run_config = attrs.count("run_config") ? attrs["run_config"] : json::object();
  } else {
    std::string cfg = (fs::path(dir) / "config.json").string();
    mf.config = ModelConfig::from_json(read_json_file(cfg), cfg);
    mf.weights = read_hf_weights(dir);
  }
  for (auto& [name, t] : mf.weights) {
    if (!t.is_floating_point())
      throw CorruptError(dir + ": tensor '" + name + "' is " + safetensors_dtype_name(t.scalar_type()) +
                         "; model weights are floating point");
    require_finite(dir, name, t);
  }
  return mf;
}

CausalLM load_model(const std::string& dir, const std::string& dtype) {
  ModelFiles mf = read_model_files(dir);
  auto st = parse_dtype(dtype.empty() ? mf.config.torch_dtype : dtype, "--dtype");
  CausalLM model(mf.config);
  model->to(st);
  model->load_weights(mf.weights, dir);
  model->config.torch_dtype = dtype.empty() ? mf.config.torch_dtype : dtype;
  return model;
}

std::string tokenizer_path(const std::string& dir) {
  fs::path p = fs::path(dir) / "tokenizer.json";
  if (!fs::exists(p)) throw InputError("model '" + dir + "' has no tokenizer.json");
  return p.string();
}

json read_run_config(const std::string& dir) {
  const fs::path hf = fs::path(dir) / "lethe_run_config.json";
  if (fs::exists(hf)) return read_json_file(hf.string());
  TensorReader reader(dir);
  if (reader.tensors().empty()) return json::object();
  const auto& first = *reader.tensors().begin();
  std::map<std::string, json> attrs;
  read_h5_tensors(first.second.file, {first.first}, &attrs);
  return attrs.count("run_config") ? attrs["run_config"] : json::object();
}

void save_model(CausalLM& model, const std::string& dir, CheckpointFormat format, const json& run_config,
                const std::string& source_dir, uint64_t max_shard_bytes,
                const std::map<std::string, std::string>& extra_files) {
  NamedTensors weights;
  for (auto& [name, t] : model->named_weights()) weights.emplace_back(name, t.detach());
  std::vector<std::string> copies;
  if (!source_dir.empty()) copies = side_files(source_dir);
  const json config = model->config.to_json();
  auto writer = make_checkpoint_writer(format);
  write_dir_atomically(
      dir,
      [&](const std::string& tmp) {
        write_model_files(*writer, tmp, weights, config, run_config, copies, max_shard_bytes);
        for (auto& [name, text] : extra_files) write_file_atomic((fs::path(tmp) / name).string(), text);
      },
      "output directory");
}

}  // namespace lethe
