// Trains a byte-level BPE tokenizer on a corpus and returns it as a Hugging Face
// tokenizer.json document (the Llama-3 split pattern, byte-level alphabet, ChatML special
// tokens). The demo's tiny models use it: a 32k-128k vocabulary would dominate their cost.
#pragma once
#include <string>
#include <vector>

#include "common/json_io.h"

namespace lethe {

struct BpeTrainOptions {
  int64_t vocab_size = 1024;  // including the 256 bytes and the special tokens
  int64_t min_pair_count = 2;
  std::vector<std::string> special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
};

json train_bpe_tokenizer(const std::vector<std::string>& texts, const BpeTrainOptions& opt);

}  // namespace lethe
