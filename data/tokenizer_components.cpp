#include "data/tokenizer_components.h"

#include <algorithm>
#include <cctype>

#include "common/error.h"
#include "data/unicode.h"

namespace lethe {

namespace {

// GPT-2's pre-tokenization pattern, used by ByteLevel when use_regex is true.
const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const std::string kMetaspace = "\xE2\x96\x81";  // U+2581
const char* kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::shared_ptr<Regex> pattern_regex(const json& node, const std::string& what) {
  const json* pattern = node.is_object() && node.contains("pattern") ? &node["pattern"] : nullptr;
  if (pattern && pattern->is_object()) {
    if (pattern->contains("Regex") && (*pattern)["Regex"].is_string())
      return std::make_shared<Regex>((*pattern)["Regex"].get<std::string>(), false);
    if (pattern->contains("String") && (*pattern)["String"].is_string())
      return std::make_shared<Regex>((*pattern)["String"].get<std::string>(), true);
  }
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

// ---- Normalizers ----

class UnicodeForm : public Normalizer {  // NFC NFD NFKC NFKD
 public:
  explicit UnicodeForm(std::string form) : form_(std::move(form)) {}
  std::string apply(const std::string& s) const override { return unicode_normalize(s, form_); }

 private:
  std::string form_;
};

class Lowercase : public Normalizer {
 public:
  std::string apply(const std::string& s) const override { return unicode_lowercase(s); }
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string apply(const std::string& s) const override { return s.empty() ? s : prefix_ + s; }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::shared_ptr<Regex> re, std::string content)
      : re_(std::move(re)), content_(std::move(content)) {}
  std::string apply(const std::string& s) const override { return re_->replace_all(s, content_); }

 private:
  std::shared_ptr<Regex> re_;
  std::string content_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  std::string apply(const std::string& s) const override {
    size_t b = 0, e = s.size();
    if (left_)
      while (b < e && is_ws(s[b])) ++b;
    if (right_)
      while (e > b && is_ws(s[e - 1])) --e;
    return s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

// ---- Pre-tokenizers ----

class SplitPre : public PreTokenizer {
 public:
  SplitPre(std::shared_ptr<Regex> re, std::string behavior) : re_(std::move(re)), behavior_(std::move(behavior)) {}
  void apply(const std::string& piece, bool, std::vector<std::string>& out) const override {
    split_pieces(piece, *re_, behavior_, out);
  }

 private:
  std::shared_ptr<Regex> re_;
  std::string behavior_;
};

class ByteLevelPre : public PreTokenizer {
 public:
  ByteLevelPre(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), re_(use_regex ? std::make_shared<Regex>(kGpt2Pattern, false) : nullptr) {}
  void apply(const std::string& piece, bool, std::vector<std::string>& out) const override {
    std::string text = piece;
    if (add_prefix_space_ && !text.empty() && text[0] != ' ') text = " " + text;
    std::vector<std::string> parts;
    if (re_)
      split_pieces(text, *re_, "Isolated", parts);
    else
      parts.push_back(text);
    for (auto& x : parts) out.push_back(bytes_to_unicode_string(x));
  }

 private:
  bool add_prefix_space_;
  std::shared_ptr<Regex> re_;
};

class MetaspacePre : public PreTokenizer {
 public:
  MetaspacePre(std::string replacement, std::string prepend_scheme, bool split)
      : replacement_(std::move(replacement)), prepend_scheme_(std::move(prepend_scheme)), split_(split) {}
  void apply(const std::string& piece, bool first_segment, std::vector<std::string>& out) const override {
    std::string text = replace_all_literal(piece, " ", replacement_);
    bool prepend = prepend_scheme_ == "always" || (prepend_scheme_ == "first" && first_segment);
    if (prepend && text.compare(0, replacement_.size(), replacement_) != 0) text = replacement_ + text;
    if (!split_) {
      out.push_back(text);
      return;
    }
    size_t start = 0, hit;
    while ((hit = text.find(replacement_, start + 1)) != std::string::npos) {
      out.push_back(text.substr(start, hit - start));
      start = hit;
    }
    if (start < text.size()) out.push_back(text.substr(start));
  }

 private:
  std::string replacement_, prepend_scheme_;
  bool split_;
};

// ---- TokenDecoders ----

class ByteLevelDecoder : public TokenDecoder {
 public:
  std::vector<std::string> apply(const std::vector<std::string>& toks) const override {
    std::string bytes;
    for (auto& t : toks) bytes += unicode_string_to_bytes(t);
    std::string lossy;  // bytes that do not form UTF-8 decode to U+FFFD, one per byte
    for (auto& ch : utf8_chars(bytes))
      lossy += (ch.size() == 1 && static_cast<unsigned char>(ch[0]) >= 0x80) ? kReplacementChar : ch;
    return {lossy};
  }
};

class ReplaceDecoder : public TokenDecoder {
 public:
  ReplaceDecoder(std::string from, std::string to) : from_(std::move(from)), to_(std::move(to)) {}
  std::vector<std::string> apply(const std::vector<std::string>& toks) const override {
    std::vector<std::string> out;
    for (auto& t : toks) out.push_back(replace_all_literal(t, from_, to_));
    return out;
  }

 private:
  std::string from_, to_;
};

// <0xXX> tokens become their bytes; a run of them that is not valid UTF-8 becomes one U+FFFD
// per token. "<0x..>" with other than two hex digits is an ordinary token.
class ByteFallbackDecoder : public TokenDecoder {
 public:
  std::vector<std::string> apply(const std::vector<std::string>& toks) const override {
    std::vector<std::string> out;
    std::string pending;
    size_t pending_n = 0;
    auto flush = [&] {
      if (pending_n == 0) return;
      if (utf8_valid(pending))
        out.push_back(pending);
      else
        for (size_t k = 0; k < pending_n; ++k) out.push_back(kReplacementChar);
      pending.clear();
      pending_n = 0;
    };
    for (auto& t : toks) {
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
          std::isxdigit(static_cast<unsigned char>(t[3])) && std::isxdigit(static_cast<unsigned char>(t[4]))) {
        pending += char(std::stoi(t.substr(3, 2), nullptr, 16));
        ++pending_n;
      } else {
        flush();
        out.push_back(t);
      }
    }
    flush();
    return out;
  }
};

class FuseDecoder : public TokenDecoder {
 public:
  std::vector<std::string> apply(const std::vector<std::string>& toks) const override {
    std::string all;
    for (auto& t : toks) all += t;
    return {all};
  }
};

class StripDecoder : public TokenDecoder {
 public:
  StripDecoder(std::string content, int start, int stop) : c_(std::move(content)), start_(start), stop_(stop) {}
  std::vector<std::string> apply(const std::vector<std::string>& toks) const override {
    std::vector<std::string> out;
    for (auto s : toks) {
      for (int k = 0; k < start_ && s.compare(0, c_.size(), c_) == 0; ++k) s.erase(0, c_.size());
      for (int k = 0; k < stop_ && s.size() >= c_.size() && s.compare(s.size() - c_.size(), c_.size(), c_) == 0; ++k)
        s.erase(s.size() - c_.size());
      out.push_back(s);
    }
    return out;
  }

 private:
  std::string c_;
  int start_, stop_;
};

class MetaspaceDecoder : public TokenDecoder {
 public:
  MetaspaceDecoder(std::string replacement, bool prepend) : replacement_(std::move(replacement)), prepend_(prepend) {}
  std::vector<std::string> apply(const std::vector<std::string>& toks) const override {
    std::vector<std::string> out;
    for (size_t k = 0; k < toks.size(); ++k) {
      std::string s = replace_all_literal(toks[k], replacement_, " ");
      if (k == 0 && prepend_ && !s.empty() && s[0] == ' ') s.erase(0, 1);
      out.push_back(s);
    }
    return out;
  }

 private:
  std::string replacement_;
  bool prepend_;
};

// ---- The registries: one row per kind, by its JSON "type" ----

template <class Stage>
struct Kind {
  const char* type;
  // Reads the node's settings; `what` names the node in errors.
  std::function<std::shared_ptr<const Stage>(const json& node, const std::string& what)> parse;
};

template <class Stage, class T>
std::function<std::shared_ptr<const Stage>(const json&, const std::string&)> plain() {
  return [](const json&, const std::string&) { return std::make_shared<const T>(); };
}

const std::vector<Kind<Normalizer>>& normalizer_kinds() {
  auto form = [](const char* name) -> Kind<Normalizer> {
    return {name, [name](const json&, const std::string&) { return std::make_shared<const UnicodeForm>(name); }};
  };
  static const std::vector<Kind<Normalizer>> kinds = {
      form("NFC"),
      form("NFD"),
      form("NFKC"),
      form("NFKD"),
      {"Lowercase", plain<Normalizer, Lowercase>()},
      {"Prepend",
       [](const json& n, const std::string& what) {
         return std::make_shared<const Prepend>(json_get<std::string>(n, "prepend", what));
       }},
      {"Replace",
       [](const json& n, const std::string& what) {
         return std::make_shared<const ReplaceNormalizer>(pattern_regex(n, what),
                                                          json_get<std::string>(n, "content", what));
       }},
      {"Strip",
       [](const json& n, const std::string& what) {
         return std::make_shared<const StripNormalizer>(json_get_or<bool>(n, "strip_left", true, what),
                                                        json_get_or<bool>(n, "strip_right", true, what));
       }},
  };
  return kinds;
}

const std::vector<Kind<PreTokenizer>>& pre_tokenizer_kinds() {
  static const std::vector<Kind<PreTokenizer>> kinds = {
      {"Split",
       [](const json& p, const std::string& what) {
         auto behavior = json_get_or<std::string>(p, "behavior", "Isolated", what);
         if (json_get_or<bool>(p, "invert", false, what)) throw InputError(what + ": invert=true is not supported");
         static const char* kBehaviors[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext"};
         if (std::find(std::begin(kBehaviors), std::end(kBehaviors), behavior) == std::end(kBehaviors))
           throw InputError(what + ": Split behavior '" + behavior +
                            "' is not supported (Isolated, Removed, MergedWithPrevious, MergedWithNext)");
         return std::make_shared<const SplitPre>(pattern_regex(p, what), behavior);
       }},
      {"ByteLevel",
       [](const json& p, const std::string& what) {
         return std::make_shared<const ByteLevelPre>(json_get_or<bool>(p, "add_prefix_space", false, what),
                                                     json_get_or<bool>(p, "use_regex", true, what));
       }},
      {"Metaspace",
       [](const json& p, const std::string& what) {
         bool add_prefix_space = json_get_or<bool>(p, "add_prefix_space", true, what);
         return std::make_shared<const MetaspacePre>(
             json_get_or<std::string>(p, "replacement", kMetaspace, what),
             json_get_or<std::string>(p, "prepend_scheme", add_prefix_space ? "always" : "never", what),
             json_get_or<bool>(p, "split", true, what));
       }},
  };
  return kinds;
}

const std::vector<Kind<TokenDecoder>>& decoder_kinds() {
  static const std::vector<Kind<TokenDecoder>> kinds = {
      {"ByteLevel", plain<TokenDecoder, ByteLevelDecoder>()},
      {"ByteFallback", plain<TokenDecoder, ByteFallbackDecoder>()},
      {"Fuse", plain<TokenDecoder, FuseDecoder>()},
      {"Replace",
       [](const json& d, const std::string& what) {
         const json* pat = d.contains("pattern") ? &d["pattern"] : nullptr;
         if (!pat || !pat->is_object() || !pat->contains("String") || !(*pat)["String"].is_string())
           throw InputError(what + ": Replace decoder supports String patterns only");
         return std::make_shared<const ReplaceDecoder>((*pat)["String"].get<std::string>(),
                                                       json_get<std::string>(d, "content", what));
       }},
      {"Strip",
       [](const json& d, const std::string& what) {
         auto bound = [&](const char* key) {
           int64_t v = json_get_or<int64_t>(d, key, 0, what);
           if (v < 0 || v > 1024) throw InputError(what + ": Strip " + key + " must be in [0, 1024]");
           return int(v);
         };
         return std::make_shared<const StripDecoder>(json_get<std::string>(d, "content", what), bound("start"),
                                                     bound("stop"));
       }},
      {"Metaspace",
       [](const json& d, const std::string& what) {
         return std::make_shared<const MetaspaceDecoder>(
             json_get_or<std::string>(d, "replacement", kMetaspace, what),
             json_get_or<std::string>(d, "prepend_scheme", "always", what) != "never");
       }},
  };
  return kinds;
}

template <class Stage>
std::vector<std::shared_ptr<const Stage>> parse_stage(const json& node, const std::string& list_key,
                                                      const std::vector<Kind<Stage>>& kinds, const std::string& stage,
                                                      const std::string& source) {
  std::vector<std::shared_ptr<const Stage>> steps;
  const std::string what = source + ": " + stage;
  for (const json* leaf : sequence_leaves(node, list_key, what)) {
    std::string type = json_get<std::string>(*leaf, "type", what);
    auto kind = std::find_if(kinds.begin(), kinds.end(), [&](const Kind<Stage>& k) { return type == k.type; });
    if (kind == kinds.end()) {
      std::string known;
      for (auto& k : kinds) known += std::string(known.empty() ? "" : ", ") + k.type;
      throw InputError(what + " '" + type + "' is not supported (" + known + ", Sequence)");
    }
    steps.push_back(kind->parse(*leaf, what + " " + type));
  }
  return steps;
}

}  // namespace

std::vector<const json*> sequence_leaves(const json& node, const std::string& list_key, const std::string& what) {
  std::vector<const json*> leaves;
  std::vector<std::pair<const json*, int>> todo{{&node, 0}};
  while (!todo.empty()) {
    auto [n, depth] = todo.back();
    todo.pop_back();
    if (n->is_null()) continue;
    if (!n->is_object()) throw InputError(what + ": expected an object, found " + std::string(n->type_name()));
    auto type = n->find("type");
    if (type == n->end() || !type->is_string() || *type != "Sequence") {
      leaves.push_back(n);
      continue;
    }
    if (depth >= kMaxSequenceDepth)
      throw InputError(what + ": Sequence nested more than " + std::to_string(kMaxSequenceDepth) + " deep");
    auto list = n->find(list_key);
    if (list == n->end() || !list->is_array()) throw InputError(what + ": Sequence without a '" + list_key + "' array");
    for (auto it = list->rbegin(); it != list->rend(); ++it) todo.push_back({&*it, depth + 1});
  }
  return leaves;
}

Normalizers parse_normalizers(const json& node, const std::string& source) {
  return parse_stage(node, "normalizers", normalizer_kinds(), "normalizer", source);
}

PreTokenizers parse_pre_tokenizers(const json& node, const std::string& source) {
  return parse_stage(node, "pretokenizers", pre_tokenizer_kinds(), "pre-tokenizer", source);
}

TokenDecoders parse_decoders(const json& node, const std::string& source) {
  return parse_stage(node, "decoders", decoder_kinds(), "decoder", source);
}

}  // namespace lethe
