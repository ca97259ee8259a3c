#include "data/bpe_trainer.h"

#include <map>
#include <unordered_map>

#include "common/error.h"
#include "data/unicode.h"

namespace lethe {

namespace {
const char* kSplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
}

json train_bpe_tokenizer(const std::vector<std::string>& texts, const BpeTrainOptions& opt) {
  const int64_t n_special = int64_t(opt.special_tokens.size());
  if (opt.vocab_size < 256 + n_special) throw InputError("--vocab-size must be at least 256 + special tokens");
  Regex split(kSplitPattern, false);
  // Word frequencies over byte-level pieces (std::map: deterministic order).
  std::map<std::string, int64_t> word_freq;
  for (auto& t : texts) {
    size_t last = 0;
    for (auto [b, e] : split.find_all(t)) {
      if (b > last) word_freq[bytes_to_unicode_string(t.substr(last, b - last))]++;
      word_freq[bytes_to_unicode_string(t.substr(b, e - b))]++;
      last = e;
    }
    if (last < t.size()) word_freq[bytes_to_unicode_string(t.substr(last))]++;
  }
  std::vector<std::string> id_to_tok;
  std::unordered_map<std::string, int64_t> vocab;
  for (auto& ch : byte_to_unicode()) {
    vocab[ch] = int64_t(id_to_tok.size());
    id_to_tok.push_back(ch);
  }
  std::vector<std::vector<int64_t>> words;
  std::vector<int64_t> freqs;
  for (auto& [w, f] : word_freq) {
    std::vector<int64_t> sym;
    for (auto& ch : utf8_chars(w)) sym.push_back(vocab.at(ch));
    words.push_back(sym);
    freqs.push_back(f);
  }
  json merges = json::array();
  while (int64_t(id_to_tok.size()) < opt.vocab_size - n_special) {
    std::map<std::pair<int64_t, int64_t>, int64_t> counts;
    for (size_t w = 0; w < words.size(); ++w)
      for (size_t i = 0; i + 1 < words[w].size(); ++i) counts[{words[w][i], words[w][i + 1]}] += freqs[w];
    // Most frequent pair; ties broken by the merged string, so training is deterministic.
    std::pair<int64_t, int64_t> best{-1, -1};
    int64_t best_count = 0;
    std::string best_str;
    for (auto& [pr, c] : counts) {
      std::string s = id_to_tok[pr.first] + id_to_tok[pr.second];
      if (c > best_count || (c == best_count && s < best_str)) {
        best = pr;
        best_count = c;
        best_str = s;
      }
    }
    if (best_count < opt.min_pair_count) break;
    int64_t new_id;
    auto existing = vocab.find(best_str);
    if (existing != vocab.end()) {
      new_id = existing->second;
    } else {
      new_id = int64_t(id_to_tok.size());
      vocab[best_str] = new_id;
      id_to_tok.push_back(best_str);
    }
    merges.push_back(json::array({id_to_tok[best.first], id_to_tok[best.second]}));
    for (auto& w : words)
      for (size_t i = 0; i + 1 < w.size(); ++i)
        if (w[i] == best.first && w[i + 1] == best.second) {
          w[i] = new_id;
          w.erase(w.begin() + long(i) + 1);
        }
  }
  json vocab_json = json::object();
  for (size_t i = 0; i < id_to_tok.size(); ++i) vocab_json[id_to_tok[i]] = int64_t(i);
  json added = json::array();
  for (auto& sp : opt.special_tokens)
    added.push_back({{"id", int64_t(id_to_tok.size() + added.size())},
                     {"content", sp},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         json::array(
             {{{"type", "Split"}, {"pattern", {{"Regex", kSplitPattern}}}, {"behavior", "Isolated"}, {"invert", false}},
              byte_level})}}},
      {"post_processor", byte_level},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab_json},
        {"merges", merges}}}};
}

}  // namespace lethe
