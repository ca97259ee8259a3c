// The pipeline stages of a Hugging Face tokenizer.json that lethe runs: normalizers,
// pre-tokenizers and decoders. Each kind ("NFC", "Split", "ByteFallback", ...) is one class
// holding its settings, with its parse from JSON and its apply side by side, registered in one
// table per stage (data/tokenizer_components.cpp) by its JSON "type"; the "not supported" error
// lists the table. `Sequence` nodes are flattened without recursion, to a bounded depth.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/json_io.h"

namespace lethe {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string apply(const std::string& s) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits (or rewrites) one piece into `out`; `first_segment`: the piece starts the text.
  virtual void apply(const std::string& piece, bool first_segment, std::vector<std::string>& out) const = 0;
};

class TokenDecoder {
 public:
  virtual ~TokenDecoder() = default;
  virtual std::vector<std::string> apply(const std::vector<std::string>& tokens) const = 0;
};

using Normalizers = std::vector<std::shared_ptr<const Normalizer>>;
using PreTokenizers = std::vector<std::shared_ptr<const PreTokenizer>>;
using TokenDecoders = std::vector<std::shared_ptr<const TokenDecoder>>;

// Each reads the tokenizer.json node ("normalizer", "pre_tokenizer", "decoder"; null: none).
Normalizers parse_normalizers(const json& node, const std::string& source);
PreTokenizers parse_pre_tokenizers(const json& node, const std::string& source);
TokenDecoders parse_decoders(const json& node, const std::string& source);

// The leaves of a possibly nested `Sequence` node in order (`list_key`: "normalizers",
// "pretokenizers", "processors" or "decoders"); null nodes are skipped. Deeper nesting than
// kMaxSequenceDepth is an InputError naming `what`.
constexpr int kMaxSequenceDepth = 64;
std::vector<const json*> sequence_leaves(const json& node, const std::string& list_key, const std::string& what);

}  // namespace lethe
