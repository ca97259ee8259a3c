#include <spdlog/spdlog.h>

#include <filesystem>

#include "checkpoints/model_io.h"
#include "common/error.h"
#include "common/fs.h"
#include "data/bpe_trainer.h"
#include "data/dataset.h"
#include "data/tokenizer.h"
#include "launcher/command.h"
#include "launcher/option_groups.h"

namespace fs = std::filesystem;

namespace lethe {

namespace {

struct InitFlags {
  std::string model_config, out, dtype, tokenizer, train_tokenizer;
  int64_t vocab_size = 1024;
};

int run_init(const InitFlags& f, const Runtime& rt, const json& cfg) {
  const uint64_t seed = rt.options.seed;
  const std::string& cfg_path = f.model_config;
  const std::string& out = f.out;
  ModelConfig c = ModelConfig::from_json(read_json_file(cfg_path), cfg_path);
  std::string dtype = f.dtype.empty() ? c.torch_dtype : f.dtype;
  parse_dtype(dtype, "--dtype");
  c.torch_dtype = dtype;
  const std::string& tok_src = f.tokenizer;
  const std::string& train_src = f.train_tokenizer;
  json tokenizer_json;
  if (!train_src.empty()) {
    std::vector<std::string> texts = {"user", "assistant"};
    for (auto& e : read_examples(train_src)) {
      texts.push_back(e.prompt);
      texts.push_back(e.response);
    }
    BpeTrainOptions bo;
    bo.vocab_size = f.vocab_size;
    tokenizer_json = train_bpe_tokenizer(texts, bo);
    Tokenizer tok = Tokenizer::from_json(tokenizer_json, "trained tokenizer");
    c.vocab_size = tok.vocab_size();
    c.eos_token_ids = {tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")};
    c.bos_token_id = -1;
  } else if (!tok_src.empty()) {
    tokenizer_json = read_json_file(tok_src);
    Tokenizer tok = Tokenizer::from_json(tokenizer_json, tok_src);
    if (tok.vocab_size() > c.vocab_size)
      throw InputError(cfg_path + ": vocab_size " + std::to_string(c.vocab_size) + " is smaller than the tokenizer's " +
                       std::to_string(tok.vocab_size()));
  }
  CausalLM model(c);
  model->init_weights(seed);
  model->to(parse_dtype(dtype, "--dtype"));
  // An HF directory (transformers and mergekit read it), with its tokenizer.
  std::map<std::string, std::string> extra;
  if (!tokenizer_json.is_null()) extra["tokenizer.json"] = json_text(tokenizer_json, 2) + "\n";
  save_model(model, out, CheckpointFormat::kHf, cfg, "", 0, extra);
  spdlog::info("init: {} ({} parameters, vocab {}) written to {}", c.model_type, c.num_parameters(), c.vocab_size, out);
  return 0;
}

void declare_init(OptionSet& o, InitFlags& f, const RuntimeOptions&) {
  o.group("init", "Model");
  o.require("model-config", &f.model_config, "HF config.json of the architecture (configs/models/*.json)");
  o.add("tokenizer", &f.tokenizer, "tokenizer.json to copy into the model");
  o.add("train-tokenizer", &f.train_tokenizer,
        "train a byte-level BPE tokenizer on this data file instead (vocab_size follows it)");
  o.add("vocab-size", &f.vocab_size, "with --train-tokenizer: vocabulary size", positive<int64_t>());
  o.rule([&f] {
    return f.tokenizer.empty() || f.train_tokenizer.empty() ? "" : "give --tokenizer or --train-tokenizer, not both";
  });
  bind_dtype(o, f.dtype);
  bind_out_dir(o, f.out, "output HF model directory (must not exist or be empty)");
}

}  // namespace

Command init_command() {
  return make_command<InitFlags>("init", "write a randomly initialised model (HF directory) from an HF config.json",
                                 false, false, declare_init, run_init);
}

}  // namespace lethe
