// A tokenizer read from Hugging Face's tokenizer.json: the BPE model (byte-level as in
// Llama-3 and Qwen, or character-level with byte fallback as in Llama-2), the normalizers and
// pre-tokenizers those files use (data/tokenizer_components.h), added/special tokens, the
// template post-processor and the decoders. Checked token for token against Hugging Face's own JS implementation.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/json_io.h"
#include "data/tokenizer_components.h"
#include "data/unicode.h"

namespace lethe {

// One line of whitespace-separated token ids (`lethe tokenize --decode`); InputError naming
// `where` and the word for anything that is not a decimal integer.
std::vector<int64_t> parse_token_ids(const std::string& line, const std::string& where);

class Tokenizer {
 public:
  static Tokenizer from_file(const std::string& path);
  static Tokenizer from_json(const json& j, const std::string& source);

  // add_special_tokens applies the post-processor template (e.g. Llama-2's leading <s>).
  std::vector<int64_t> encode(const std::string& text, bool add_special_tokens = true) const;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const;

  int64_t token_to_id(const std::string& token) const;  // -1 when absent
  std::string id_to_token(int64_t id) const;            // "" when absent
  int64_t vocab_size() const { return int64_t(id_to_token_.size()); }
  bool is_special(int64_t id) const;

 private:
  struct AddedToken {
    std::string content;
    int64_t id;
    bool special, lstrip, rstrip;
  };

  std::string normalize(const std::string& s) const;
  std::vector<std::string> pre_tokenize(const std::string& s, bool first_segment) const;
  void bpe(const std::string& word, std::vector<int64_t>& out) const;
  std::vector<int64_t> merge_symbols(std::vector<int64_t> ids) const;
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const;

  Normalizers norm_;
  PreTokenizers pre_;
  TokenDecoders dec_;
  std::vector<AddedToken> added_;  // longest content first
  std::unordered_set<int64_t> special_ids_;
  std::vector<std::string> post_single_;  // template: token strings, "$A" for the sequence

  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<uint64_t, std::pair<int64_t, int64_t>> merges_;  // (a, b) -> (rank, merged id)
  int64_t unk_id_ = -1;
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  std::vector<int64_t> byte_ids_;  // <0xXX> ids for byte fallback
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;
  std::string source_;
};

}  // namespace lethe
