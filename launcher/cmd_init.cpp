#include <spdlog/spdlog.h>

#include <filesystem>

#include "checkpoints/model_io.h"
#include "common/error.h"
#include "common/fs.h"
#include "data/bpe_trainer.h"
#include "data/dataset.h"
#include "data/tokenizer.h"
#include "launcher/options.h"

namespace fs = std::filesystem;

namespace lethe {

void add_init_options(po::options_description& d) {
  d.add_options()("model-config", po::value<std::string>(), "HF config.json of the architecture (configs/models/*.json)")(
      "out", po::value<std::string>(), "output HF model directory (must not exist or be empty)")(
      "dtype", po::value<std::string>()->default_value("float32"), "float32 or bfloat16")(
      "tokenizer", po::value<std::string>()->default_value(""), "tokenizer.json to copy into the model")(
      "train-tokenizer", po::value<std::string>()->default_value(""),
      "train a byte-level BPE tokenizer on this data file instead (vocab_size follows it)")(
      "vocab-size", po::value<int64_t>()->default_value(1024), "with --train-tokenizer: vocabulary size");
}

int run_init(const po::variables_map& vm, const json& cfg) {
  std::string cfg_path = require_string(vm, "model-config"), out = require_string(vm, "out");
  ModelConfig c = ModelConfig::from_json(read_json_file(cfg_path), cfg_path);
  std::string dtype = vm["dtype"].as<std::string>();
  parse_dtype(dtype, "--dtype");
  c.torch_dtype = dtype;
  std::string tok_src = vm["tokenizer"].as<std::string>(), train_src = vm["train-tokenizer"].as<std::string>();
  if (!tok_src.empty() && !train_src.empty()) throw InputError("give --tokenizer or --train-tokenizer, not both");
  json tokenizer_json;
  if (!train_src.empty()) {
    std::vector<std::string> texts = {"user", "assistant"};
    for (auto& e : read_examples(train_src)) {
      texts.push_back(e.prompt);
      texts.push_back(e.response);
    }
    BpeTrainOptions bo;
    bo.vocab_size = vm["vocab-size"].as<int64_t>();
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
  model->init_weights(vm["seed"].as<uint64_t>());
  model->to(parse_dtype(dtype, "--dtype"));
  save_model(model, out, "hf", cfg, "");
  if (!tokenizer_json.is_null()) write_json_file((fs::path(out) / "tokenizer.json").string(), tokenizer_json);
  spdlog::info("init: {} ({} parameters, vocab {}) written to {}", c.model_type, c.num_parameters(), c.vocab_size, out);
  return 0;
}

}  // namespace lethe
