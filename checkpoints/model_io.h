// Loading and saving whole models in either format, chosen by what the directory holds:
// a native checkpoint (model.h5 + COMPLETE) or a Hugging Face directory (config.json +
// safetensors). Tokenizer and generation files travel along with the weights.
#pragma once
#include <map>
#include <string>

#include "checkpoints/format.h"
#include "checkpoints/hdf5_checkpoint.h"
#include "checkpoints/safetensors.h"
#include "model/llama.h"

namespace lethe {

// Which model a command reads, and how.
struct ModelLoadOptions {
  std::string dir;      // --model: an HF directory or a native checkpoint
  std::string dtype;    // --dtype: float32 or bfloat16 ("": the model's torch_dtype)
  std::string adapter;  // --adapter: a peft LoRA adapter applied to the model
};

// Where a command writes its model.
struct OutputOptions {
  std::string out;                                      // --out: must not exist
  CheckpointFormat format = CheckpointFormat::kNative;  // --format
  uint64_t max_shard_bytes = 5000000000ULL;             // --max-shard-size (HF's default, 5GB)
  std::string adapter_out;                              // --adapter-out: the trained LoRA adapter, for peft
};

// Builds the model in `dtype` (the config's torch_dtype when empty) and streams the weights in
// one tensor at a time (peak memory: the model plus its largest tensor), after checking every
// name, shape and dtype against the headers.
CausalLM load_model(const std::string& dir, const std::string& dtype = "");
// The same without the decoder layers' weights (ZeRO 3): their parameters stay empty and
// `deferred` receives their shapes and a reader of the checkpoint for the engine to fill each
// rank's shard from (the checkpoint stays open while `deferred` lives).
CausalLM load_model_without_layers(const std::string& dir, const std::string& dtype, DeferredWeights& deferred);
// The run configuration stored with a saved model (without reading its weights).
json read_run_config(const std::string& dir);
// The tokenizer and generation files of a model directory that travel with its weights.
std::vector<std::string> side_files(const std::string& dir);
// Path of dir/tokenizer.json, or InputError naming the directory.
std::string tokenizer_path(const std::string& dir);

// Writes `model` as a checkpoint directory in `format` through common/fs.h's directory protocol,
// sharded at max_shard_bytes (0: one file). Tokenizer files of `source_dir` are copied along.
// Refuses an existing `dir`.
// `extra_files` (name -> text) are written into the directory too.
void save_model(CausalLM& model, const std::string& dir, CheckpointFormat format, const json& run_config,
                const std::string& source_dir, uint64_t max_shard_bytes = 0,
                const std::map<std::string, std::string>& extra_files = {});

}  // namespace lethe
