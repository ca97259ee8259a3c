// Loading and saving whole models in either format, chosen by what the directory holds:
// a native checkpoint (model.h5 + COMPLETE) or a Hugging Face directory (config.json +
// safetensors). Tokenizer and generation files travel along with the weights.
#pragma once
#include <string>

#include "checkpoints/hdf5_checkpoint.h"
#include "model/llama.h"

namespace lethe {

struct ModelFiles {
  ModelConfig config;
  TensorMap weights;
  json run_config;    // native checkpoints only: the configuration that produced it
  std::string format;  // "native" | "hf"
};

ModelFiles read_model_files(const std::string& dir);
// Builds the model in `dtype` (the config's torch_dtype when empty) and loads the weights.
CausalLM load_model(const std::string& dir, const std::string& dtype = "");
// The tokenizer and generation files of a model directory that travel with its weights.
std::vector<std::string> side_files(const std::string& dir);
// Path of dir/tokenizer.json, or InputError naming the directory.
std::string tokenizer_path(const std::string& dir);

// Writes `model` as a checkpoint directory in `format` ("native" | "hf"). Tokenizer files of
// `source_dir` are copied along. Refuses an existing `dir`.
void save_model(CausalLM& model, const std::string& dir, const std::string& format, const json& run_config,
                const std::string& source_dir, uint64_t max_shard_bytes = 0);

}  // namespace lethe
