#include "data/tokenizer.h"

#include <algorithm>
#include <climits>
#include <functional>

#include "common/error.h"

namespace lethe {

namespace {

// GPT-2's pre-tokenization pattern, used by ByteLevel when use_regex is true.
const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const std::string kMetaspace = "\xE2\x96\x81";  // U+2581

uint64_t pair_key(int64_t a, int64_t b) { return (uint64_t(a) << 32) | uint64_t(b); }

std::shared_ptr<Regex> pattern_regex(const json& pattern, const std::string& what) {
  if (pattern.contains("Regex")) return std::make_shared<Regex>(pattern["Regex"].get<std::string>(), false);
  if (pattern.contains("String")) return std::make_shared<Regex>(pattern["String"].get<std::string>(), true);
  throw InputError(what + ": pattern must be {\"Regex\": ...} or {\"String\": ...}");
}

std::string replace_all_literal(const std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  std::string out;
  size_t pos = 0, hit;
  while ((hit = s.find(from, pos)) != std::string::npos) {
    out.append(s, pos, hit - pos);
    out += to;
    pos = hit + from.size();
  }
  out.append(s, pos, std::string::npos);
  return out;
}

// HF's Split behaviours: matches kept as their own pieces (Isolated), dropped (Removed), or
// glued to the piece before (MergedWithPrevious) or after (MergedWithNext).
void split_pieces(const std::string& text, const Regex& re, const std::string& behavior,
                  std::vector<std::string>& out) {
  size_t last = 0;
  std::string carry;  // MergedWithNext: the current match waits for the gap after it
  for (auto [b, e] : re.find_all(text)) {
    std::string gap = text.substr(last, b - last), match = text.substr(b, e - b);
    if (behavior == "MergedWithPrevious") {
      out.push_back(gap + match);
    } else if (behavior == "MergedWithNext") {
      if (!(carry + gap).empty()) out.push_back(carry + gap);
      carry = match;
    } else {
      if (!gap.empty()) out.push_back(gap);
      if (behavior == "Isolated") out.push_back(match);
    }
    last = e;
  }
  std::string rest = carry + text.substr(last);
  if (!rest.empty()) out.push_back(rest);
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
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0)
      throw InputError(source + ": vocab id of '" + it.key() + "' is not a non-negative integer");
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

  // Normalizers.
  std::function<void(const json&)> add_norm = [&](const json& n) {
    if (n.is_null()) return;
    std::string type = json_get<std::string>(n, "type", source + ": normalizer");
    if (type == "Sequence") {
      for (auto& s : n["normalizers"]) add_norm(s);
    } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD" || type == "Lowercase") {
      t.norm_.push_back({type, "", "", nullptr});
    } else if (type == "Prepend") {
      t.norm_.push_back({type, json_get<std::string>(n, "prepend", source), "", nullptr});
    } else if (type == "Replace") {
      NormStep s{type, "", json_get<std::string>(n, "content", source), nullptr};
      s.re = pattern_regex(n["pattern"], source + ": Replace normalizer");
      t.norm_.push_back(s);
    } else if (type == "Strip") {
      NormStep s{type, "", "", nullptr};
      s.left = json_get_or<bool>(n, "strip_left", true, source);
      s.right = json_get_or<bool>(n, "strip_right", true, source);
      t.norm_.push_back(s);
    } else {
      throw InputError(source + ": normalizer '" + type + "' is not supported");
    }
  };
  if (j.contains("normalizer")) add_norm(j["normalizer"]);

  // Pre-tokenizers.
  std::function<void(const json&)> add_pre = [&](const json& p) {
    if (p.is_null()) return;
    std::string type = json_get<std::string>(p, "type", source + ": pre_tokenizer");
    if (type == "Sequence") {
      for (auto& s : p["pretokenizers"]) add_pre(s);
    } else if (type == "Split") {
      PreStep s;
      s.kind = type;
      s.re = pattern_regex(p["pattern"], source + ": Split pre-tokenizer");
      s.behavior = json_get_or<std::string>(p, "behavior", "Isolated", source);
      if (json_get_or<bool>(p, "invert", false, source))
        throw InputError(source + ": Split pre-tokenizer with invert=true is not supported");
      if (s.behavior != "Isolated" && s.behavior != "Removed" && s.behavior != "MergedWithPrevious" &&
          s.behavior != "MergedWithNext")
        throw InputError(source + ": Split behavior '" + s.behavior + "' is not supported");
      t.pre_.push_back(s);
    } else if (type == "ByteLevel") {
      PreStep s;
      s.kind = type;
      s.add_prefix_space = json_get_or<bool>(p, "add_prefix_space", false, source);
      s.use_regex = json_get_or<bool>(p, "use_regex", true, source);
      if (s.use_regex) s.re = std::make_shared<Regex>(kGpt2Pattern, false);
      t.pre_.push_back(s);
    } else if (type == "Metaspace") {
      PreStep s;
      s.kind = type;
      s.replacement = json_get_or<std::string>(p, "replacement", kMetaspace, source);
      s.prepend_scheme = json_get_or<std::string>(
          p, "prepend_scheme", json_get_or<bool>(p, "add_prefix_space", true, source) ? "always" : "never", source);
      s.split = json_get_or<bool>(p, "split", true, source);
      t.pre_.push_back(s);
    } else {
      throw InputError(source + ": pre-tokenizer '" + type + "' is not supported");
    }
  };
  if (j.contains("pre_tokenizer")) add_pre(j["pre_tokenizer"]);

  // Post-processor: the single-sequence template.
  std::function<void(const json&)> add_post = [&](const json& p) {
    if (p.is_null()) return;
    std::string type = json_get<std::string>(p, "type", source + ": post_processor");
    if (type == "Sequence") {
      for (auto& s : p["processors"]) add_post(s);
    } else if (type == "TemplateProcessing") {
      for (auto& item : p["single"]) {
        if (item.contains("SpecialToken")) {
          std::string id = json_get<std::string>(item["SpecialToken"], "id", source + ": TemplateProcessing");
          const json& st = p["special_tokens"];
          if (!st.contains(id)) throw InputError(source + ": template special token '" + id + "' is not defined");
          for (auto& tok : st[id]["tokens"]) t.post_single_.push_back(tok.get<std::string>());
        } else {
          t.post_single_.push_back("$A");
        }
      }
    } else if (type != "ByteLevel") {
      throw InputError(source + ": post-processor '" + type + "' is not supported");
    }
  };
  if (j.contains("post_processor")) add_post(j["post_processor"]);

  // Decoders.
  std::function<void(const json&)> add_dec = [&](const json& d) {
    if (d.is_null()) return;
    std::string type = json_get<std::string>(d, "type", source + ": decoder");
    DecStep s;
    s.kind = type;
    if (type == "Sequence") {
      for (auto& x : d["decoders"]) add_dec(x);
      return;
    } else if (type == "Replace") {
      const json& pat = d["pattern"];
      if (!pat.contains("String")) throw InputError(source + ": Replace decoder supports String patterns only");
      s.a = pat["String"].get<std::string>();
      s.b = json_get<std::string>(d, "content", source);
    } else if (type == "Strip") {
      s.a = json_get<std::string>(d, "content", source);
      s.start = int(json_get_or<int64_t>(d, "start", 0, source));
      s.stop = int(json_get_or<int64_t>(d, "stop", 0, source));
    } else if (type == "Metaspace") {
      s.a = json_get_or<std::string>(d, "replacement", kMetaspace, source);
      s.prepend = json_get_or<std::string>(d, "prepend_scheme", "always", source) != "never";
    } else if (type != "ByteLevel" && type != "ByteFallback" && type != "Fuse") {
      throw InputError(source + ": decoder '" + type + "' is not supported");
    }
    t.dec_.push_back(s);
  };
  if (j.contains("decoder")) add_dec(j["decoder"]);
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
  for (auto& n : norm_) {
    if (n.kind == "Lowercase")
      s = unicode_lowercase(s);
    else if (n.kind == "Prepend")
      s = s.empty() ? s : n.a + s;
    else if (n.kind == "Replace")
      s = n.re->replace_all(s, n.b);
    else if (n.kind == "Strip") {
      size_t b = 0, e = s.size();
      if (n.left)
        while (b < e && is_ws(s[b])) ++b;
      if (n.right)
        while (e > b && is_ws(s[e - 1])) --e;
      s = s.substr(b, e - b);
    } else
      s = unicode_normalize(s, n.kind);
  }
  return s;
}

std::vector<std::string> Tokenizer::pre_tokenize(const std::string& s, bool first_segment) const {
  std::vector<std::string> pieces{s};
  for (auto& p : pre_) {
    std::vector<std::string> next;
    for (auto& piece : pieces) {
      if (p.kind == "Split") {
        split_pieces(piece, *p.re, p.behavior, next);
      } else if (p.kind == "ByteLevel") {
        std::string text = piece;
        if (p.add_prefix_space && !text.empty() && text[0] != ' ') text = " " + text;
        std::vector<std::string> parts;
        if (p.use_regex)
          split_pieces(text, *p.re, "Isolated", parts);
        else
          parts.push_back(text);
        for (auto& x : parts) next.push_back(bytes_to_unicode_string(x));
      } else if (p.kind == "Metaspace") {
        std::string text = replace_all_literal(piece, " ", p.replacement);
        bool prepend = p.prepend_scheme == "always" || (p.prepend_scheme == "first" && first_segment);
        if (prepend && text.compare(0, p.replacement.size(), p.replacement) != 0) text = p.replacement + text;
        if (!p.split) {
          next.push_back(text);
        } else {
          size_t start = 0, hit;
          while ((hit = text.find(p.replacement, start + 1)) != std::string::npos) {
            next.push_back(text.substr(start, hit - start));
            start = hit;
          }
          if (start < text.size()) next.push_back(text.substr(start));
        }
      }
    }
    pieces.swap(next);
  }
  pieces.erase(std::remove(pieces.begin(), pieces.end(), std::string()), pieces.end());
  return pieces;
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
    // Repeatedly merge the adjacent pair of lowest rank (leftmost on ties), as HF does.
    while (sym.size() > 1) {
      int64_t best_rank = INT64_MAX, best_id = -1;
      size_t best_pos = 0;
      for (size_t i = 0; i + 1 < sym.size(); ++i) {
        auto it = merges_.find(pair_key(sym[i], sym[i + 1]));
        if (it != merges_.end() && it->second.first < best_rank) {
          best_rank = it->second.first;
          best_id = it->second.second;
          best_pos = i;
        }
      }
      if (best_id < 0) break;
      sym[best_pos] = best_id;
      sym.erase(sym.begin() + long(best_pos) + 1);
    }
  }
  if (cache_.size() < 200000) cache_.emplace(word, sym);
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
  while (i < text.size()) {
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
  for (auto& d : dec_) {
    std::vector<std::string> next;
    if (d.kind == "ByteLevel") {
      std::string bytes;
      for (auto& t : toks) {
        std::string b = unicode_string_to_bytes(t);
        bytes += b;
      }
      std::string lossy;
      for (auto& ch : utf8_chars(bytes))
        lossy += (ch.size() == 1 && static_cast<unsigned char>(ch[0]) >= 0x80) ? "\xEF\xBF\xBD" : ch;
      next.push_back(lossy);
    } else if (d.kind == "Replace") {
      for (auto& t : toks) next.push_back(replace_all_literal(t, d.a, d.b));
    } else if (d.kind == "ByteFallback") {
      std::string pending;
      size_t pending_n = 0;
      auto flush = [&] {
        if (pending_n == 0) return;
        if (utf8_valid(pending))
          next.push_back(pending);
        else
          for (size_t k = 0; k < pending_n; ++k) next.push_back("\xEF\xBF\xBD");
        pending.clear();
        pending_n = 0;
      };
      for (auto& t : toks) {
        if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
          pending += char(std::stoi(t.substr(3, 2), nullptr, 16));
          ++pending_n;
        } else {
          flush();
          next.push_back(t);
        }
      }
      flush();
    } else if (d.kind == "Fuse") {
      std::string all;
      for (auto& t : toks) all += t;
      next.push_back(all);
    } else if (d.kind == "Strip") {
      for (auto& t : toks) {
        std::string s = t;
        for (int k = 0; k < d.start && s.compare(0, d.a.size(), d.a) == 0; ++k) s.erase(0, d.a.size());
        for (int k = 0; k < d.stop && s.size() >= d.a.size() && s.compare(s.size() - d.a.size(), d.a.size(), d.a) == 0;
             ++k)
          s.erase(s.size() - d.a.size());
        next.push_back(s);
      }
    } else if (d.kind == "Metaspace") {
      for (size_t k = 0; k < toks.size(); ++k) {
        std::string s = replace_all_literal(toks[k], d.a, " ");
        if (k == 0 && d.prepend && !s.empty() && s[0] == ' ') s.erase(0, 1);
        next.push_back(s);
      }
    }
    toks.swap(next);
  }
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
