#include "data/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <functional>
#include <queue>

#include "common/error.h"

namespace lethe {

std::vector<int64_t> parse_token_ids(const std::string& line, const std::string& where) {
  std::vector<int64_t> ids;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    if (i == line.size()) break;
    size_t j = i;
    while (j < line.size() && !std::isspace(static_cast<unsigned char>(line[j]))) ++j;
    const std::string w = line.substr(i, j - i);
    size_t k = (w[0] == '-' || w[0] == '+') ? 1 : 0;
    bool digits = k < w.size() && w.size() - k <= 18;
    for (size_t c = k; digits && c < w.size(); ++c) digits = std::isdigit(static_cast<unsigned char>(w[c])) != 0;
    if (!digits) throw InputError(where + ": '" + w.substr(0, 64) + "' is not a token id");
    ids.push_back(std::stoll(w));
    i = j;
  }
  return ids;
}

namespace {

// Token ids index dense tables; real vocabularies stay far below 2^24 (Gemma: 256k).
constexpr int64_t kMaxTokenId = int64_t(1) << 24;

uint64_t pair_key(int64_t a, int64_t b) { return (uint64_t(a) << 32) | uint64_t(b); }

// The node under `key`, or null when absent (a reference into `j`, never a temporary).
const json& node_of(const json& j, const char* key) {
  static const json kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

}  // namespace

Tokenizer Tokenizer::from_file(const std::string& path) { return from_json(read_json_file(path), path); }

Tokenizer Tokenizer::from_json(const json& j, const std::string& source) {
  Tokenizer t;
  t.source_ = source;
  if (!j.is_object() || !j.contains("model")) throw InputError(source + ": not a tokenizer.json (no 'model')");
  const json& m = j["model"];
  std::string mtype = json_get_or<std::string>(m, "type", "BPE", source + ": model");
  if (mtype != "BPE") throw InputError(source + ": model type '" + mtype + "' is not supported (BPE)");
  if (!m.contains("vocab") || !m["vocab"].is_object()) throw InputError(source + ": model.vocab must be an object");
  for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 || it.value().get<int64_t>() >= kMaxTokenId)
      throw InputError(source + ": vocab id of '" + it.key() + "' is not an integer in [0, 2^24)");
    t.vocab_[it.key()] = it.value().get<int64_t>();
  }
  // Added tokens may carry ids beyond the BPE vocabulary.
  if (j.contains("added_tokens") && j["added_tokens"].is_array())
    for (auto& a : j["added_tokens"]) {
      std::string what = source + ": added_tokens";
      AddedToken at{json_get<std::string>(a, "content", what), json_get<int64_t>(a, "id", what),
                    json_get_or<bool>(a, "special", false, what), json_get_or<bool>(a, "lstrip", false, what),
                    json_get_or<bool>(a, "rstrip", false, what)};
      if (at.content.empty()) throw InputError(what + ": empty token content");
      if (at.id < 0 || at.id >= kMaxTokenId)
        throw InputError(what + ": id " + std::to_string(at.id) + " of '" + at.content + "' is not in [0, 2^24)");
      t.vocab_[at.content] = at.id;
      if (at.special) t.special_ids_.insert(at.id);
      t.added_.push_back(at);
    }
  std::sort(t.added_.begin(), t.added_.end(),
            [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  int64_t max_id = -1;
  for (auto& [tok, id] : t.vocab_) max_id = std::max(max_id, id);
  t.id_to_token_.assign(size_t(max_id + 1), "");
  for (auto& [tok, id] : t.vocab_) t.id_to_token_[size_t(id)] = tok;

  auto prefix = json_get_or<std::string>(m, "continuing_subword_prefix", "", source);
  auto suffix = json_get_or<std::string>(m, "end_of_word_suffix", "", source);
  if (!prefix.empty() || !suffix.empty())
    throw InputError(source + ": BPE continuing_subword_prefix/end_of_word_suffix are not supported");
  t.byte_fallback_ = json_get_or<bool>(m, "byte_fallback", false, source);
  t.fuse_unk_ = json_get_or<bool>(m, "fuse_unk", false, source);
  t.ignore_merges_ = json_get_or<bool>(m, "ignore_merges", false, source);
  std::string unk = json_get_or<std::string>(m, "unk_token", "", source);
  if (!unk.empty()) t.unk_id_ = t.token_to_id(unk);
  t.byte_ids_.assign(256, -1);
  if (t.byte_fallback_)
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      t.byte_ids_[b] = t.token_to_id(buf);
    }
  if (!m.contains("merges") || !m["merges"].is_array()) throw InputError(source + ": model.merges must be an array");
  int64_t rank = 0;
  for (auto& mg : m["merges"]) {
    std::string a, b;
    if (mg.is_string()) {
      std::string s = mg.get<std::string>();
      size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) throw InputError(source + ": malformed merge '" + s + "'");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
      a = mg[0].get<std::string>();
      b = mg[1].get<std::string>();
    } else {
      throw InputError(source + ": malformed merge entry " + mg.dump());
    }
    int64_t ia = t.token_to_id(a), ib = t.token_to_id(b), im = t.token_to_id(a + b);
    if (ia < 0 || ib < 0 || im < 0)
      throw InputError(source + ": merge '" + a + " " + b + "' uses a token not in the vocab");
    t.merges_.emplace(pair_key(ia, ib), std::make_pair(rank++, im));
  }

  t.norm_ = parse_normalizers(node_of(j, "normalizer"), source);
  t.pre_ = parse_pre_tokenizers(node_of(j, "pre_tokenizer"), source);

  // Post-processor: the single-sequence template.
  const std::string post_what = source + ": post-processor";
  for (const json* p : sequence_leaves(node_of(j, "post_processor"), "processors", post_what)) {
    std::string type = json_get<std::string>(*p, "type", post_what);
    if (type == "TemplateProcessing") {
      const json& single = p->contains("single") ? (*p)["single"] : json::array();
      if (!single.is_array()) throw InputError(post_what + ": TemplateProcessing 'single' must be an array");
      for (auto& item : single) {
        if (item.is_object() && item.contains("SpecialToken")) {
          std::string id = json_get<std::string>(item["SpecialToken"], "id", post_what + " TemplateProcessing");
          const json& st = p->contains("special_tokens") ? (*p)["special_tokens"] : json::object();
          if (!st.is_object() || !st.contains(id) || !st[id].is_object() || !st[id].contains("tokens") ||
              !st[id]["tokens"].is_array())
            throw InputError(source + ": template special token '" + id + "' is not defined");
          for (auto& tok : st[id]["tokens"]) {
            if (!tok.is_string())
              throw InputError(source + ": template special token '" + id + "' has a non-string token");
            t.post_single_.push_back(tok.get<std::string>());
          }
        } else {
          t.post_single_.push_back("$A");
        }
      }
    } else if (type != "ByteLevel") {
      throw InputError(post_what + " '" + type + "' is not supported (TemplateProcessing, ByteLevel, Sequence)");
    }
  }

  t.dec_ = parse_decoders(node_of(j, "decoder"), source);
  return t;
}

int64_t Tokenizer::token_to_id(const std::string& token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

std::string Tokenizer::id_to_token(int64_t id) const {
  return id >= 0 && id < int64_t(id_to_token_.size()) ? id_to_token_[size_t(id)] : "";
}

bool Tokenizer::is_special(int64_t id) const { return special_ids_.count(id) > 0; }

std::string Tokenizer::normalize(const std::string& s0) const {
  std::string s = s0;
  for (auto& n : norm_) s = n->apply(s);
  return s;
}

std::vector<std::string> Tokenizer::pre_tokenize(const std::string& s, bool first_segment) const {
  std::vector<std::string> pieces{s};
  for (auto& p : pre_) {
    std::vector<std::string> next;
    for (auto& piece : pieces) p->apply(piece, first_segment, next);
    pieces.swap(next);
  }
  pieces.erase(std::remove(pieces.begin(), pieces.end(), std::string()), pieces.end());
  return pieces;
}

// Repeatedly merges the adjacent pair of lowest rank (leftmost on ties), as HF does, in
// O(n log n): the symbols form a linked list and the candidate pairs a min-heap ordered by
// (rank, position); a popped pair whose symbols changed since it was pushed is skipped.
std::vector<int64_t> Tokenizer::merge_symbols(std::vector<int64_t> ids) const {
  const int64_t n = int64_t(ids.size());
  if (n < 2) return ids;
  std::vector<int64_t> next(static_cast<size_t>(n)), prev(static_cast<size_t>(n));
  std::vector<char> alive(size_t(n), 1);
  for (int64_t i = 0; i < n; ++i) {
    next[size_t(i)] = i + 1 < n ? i + 1 : -1;
    prev[size_t(i)] = i - 1;
  }
  struct Candidate {
    int64_t rank, pos, left, right;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto push = [&](int64_t i) {
    const int64_t j = next[size_t(i)];
    if (j < 0) return;
    auto it = merges_.find(pair_key(ids[size_t(i)], ids[size_t(j)]));
    if (it != merges_.end()) heap.push({it->second.first, i, ids[size_t(i)], ids[size_t(j)]});
  };
  for (int64_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    const int64_t j = next[size_t(c.pos)];
    if (!alive[size_t(c.pos)] || j < 0 || ids[size_t(c.pos)] != c.left || ids[size_t(j)] != c.right) continue;
    ids[size_t(c.pos)] = merges_.at(pair_key(c.left, c.right)).second;
    alive[size_t(j)] = 0;
    next[size_t(c.pos)] = next[size_t(j)];
    if (next[size_t(j)] >= 0) prev[size_t(next[size_t(j)])] = c.pos;
    if (prev[size_t(c.pos)] >= 0) push(prev[size_t(c.pos)]);
    push(c.pos);
  }
  std::vector<int64_t> out;
  for (int64_t i = 0; i >= 0; i = next[size_t(i)]) out.push_back(ids[size_t(i)]);
  return out;
}

void Tokenizer::bpe(const std::string& word, std::vector<int64_t>& out) const {
  auto hit = cache_.find(word);
  if (hit != cache_.end()) {
    out.insert(out.end(), hit->second.begin(), hit->second.end());
    return;
  }
  std::vector<int64_t> sym;
  int64_t whole = ignore_merges_ ? token_to_id(word) : -1;
  if (whole >= 0) {
    sym.push_back(whole);
  } else {
    for (auto& ch : utf8_chars(word)) {
      int64_t id = token_to_id(ch);
      if (id >= 0) {
        sym.push_back(id);
        continue;
      }
      bool bytes_ok = byte_fallback_;
      for (unsigned char b : ch) bytes_ok = bytes_ok && byte_ids_[b] >= 0;
      if (bytes_ok) {
        for (unsigned char b : ch) sym.push_back(byte_ids_[b]);
      } else if (unk_id_ >= 0) {
        if (!(fuse_unk_ && !sym.empty() && sym.back() == unk_id_)) sym.push_back(unk_id_);
      }
    }
    sym = merge_symbols(std::move(sym));
  }
  if (cache_.size() < 200000 && word.size() <= 256) cache_.emplace(word, sym);
  out.insert(out.end(), sym.begin(), sym.end());
}

std::vector<int64_t> Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  std::vector<int64_t> ids;
  // Split out added tokens (leftmost, then longest), honouring lstrip/rstrip.
  size_t seg_start = 0, i = 0;
  auto flush = [&](size_t end) {
    if (end > seg_start) {
      std::string seg = text.substr(seg_start, end - seg_start);
      for (auto& piece : pre_tokenize(normalize(seg), seg_start == 0)) bpe(piece, ids);
    }
  };
  bool first_byte[256] = {};  // only positions starting with one of these can hold an added token
  for (auto& a : added_) first_byte[static_cast<unsigned char>(a.content[0])] = true;
  while (i < text.size()) {
    if (!first_byte[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    const AddedToken* found = nullptr;
    for (auto& a : added_)
      if (text.compare(i, a.content.size(), a.content) == 0) {
        found = &a;
        break;
      }
    if (!found) {
      ++i;
      continue;
    }
    size_t end_prev = i, next = i + found->content.size();
    if (found->lstrip)
      while (end_prev > seg_start && is_ws(text[end_prev - 1])) --end_prev;
    if (found->rstrip)
      while (next < text.size() && is_ws(text[next])) ++next;
    flush(end_prev);
    ids.push_back(found->id);
    seg_start = i = next;
  }
  flush(text.size());
  if (!add_special_tokens || post_single_.empty()) return ids;
  std::vector<int64_t> out;
  for (auto& item : post_single_) {
    if (item == "$A")
      out.insert(out.end(), ids.begin(), ids.end());
    else
      out.push_back(token_to_id(item));
  }
  return out;
}

std::vector<std::string> Tokenizer::decode_chain(std::vector<std::string> toks) const {
  for (auto& d : dec_) toks = d->apply(toks);
  return toks;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> toks;
  for (auto id : ids) {
    if (skip_special_tokens && is_special(id)) continue;
    toks.push_back(id_to_token(id));
  }
  std::string out;
  for (auto& t : decode_chain(toks)) out += t;
  return out;
}

}  // namespace lethe
