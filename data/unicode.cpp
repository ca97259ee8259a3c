#include "data/unicode.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <unordered_map>

#include "common/error.h"

namespace lethe {

std::vector<std::string> utf8_chars(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
    if (i + n > s.size()) n = 1;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) n = 1;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

bool utf8_valid(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0, least = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, least = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, least = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, least = 0x10000;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // no overlong forms, no surrogates, nothing past U+10FFFF
    if (cp < least || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

std::string codepoint_to_utf8(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
  return out;
}

const std::vector<std::string>& byte_to_unicode() {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    std::vector<bool> printable(256, false);
    for (int b = '!'; b <= '~'; ++b) printable[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) t[b] = codepoint_to_utf8(printable[b] ? uint32_t(b) : next++);
    return t;
  }();
  return table;
}

std::string bytes_to_unicode_string(const std::string& bytes) {
  const auto& t = byte_to_unicode();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out += t[b];
  return out;
}

std::string unicode_string_to_bytes(const std::string& s) {
  static const std::unordered_map<std::string, char> inverse = [] {
    std::unordered_map<std::string, char> m;
    const auto& t = byte_to_unicode();
    for (int b = 0; b < 256; ++b) m[t[b]] = char(b);
    return m;
  }();
  std::string out;
  for (auto& ch : utf8_chars(s)) {
    auto it = inverse.find(ch);
    if (it != inverse.end())
      out += it->second;
    else
      out += ch;
  }
  return out;
}

std::string unicode_normalize(const std::string& s, const std::string& mode) {
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* n = mode == "NFC"    ? icu::Normalizer2::getNFCInstance(err)
                              : mode == "NFD"  ? icu::Normalizer2::getNFDInstance(err)
                              : mode == "NFKC" ? icu::Normalizer2::getNFKCInstance(err)
                              : mode == "NFKD" ? icu::Normalizer2::getNFKDInstance(err)
                                               : nullptr;
  if (!n || U_FAILURE(err)) throw InternalError("ICU normalizer " + mode + " unavailable");
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(s);
  icu::UnicodeString r = n->normalize(u, err);
  if (U_FAILURE(err)) throw InternalError("ICU normalization failed");
  std::string out;
  r.toUTF8String(out);
  return out;
}

std::string unicode_lowercase(const std::string& s) {
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(s);
  u.toLower();
  std::string out;
  u.toUTF8String(out);
  return out;
}

Regex::Regex(const std::string& pattern, bool literal, bool case_insensitive) : pattern_(pattern) {
  int err = 0;
  PCRE2_SIZE off = 0;
  uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP) | (case_insensitive ? PCRE2_CASELESS : 0);
  auto* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), opts, &err, &off, nullptr);
  if (!code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof buf);
    throw InputError("tokenizer regex '" + pattern + "' does not compile at offset " + std::to_string(off) + ": " +
                     reinterpret_cast<char*>(buf));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // best effort; the interpreter is the fallback
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

std::vector<std::pair<size_t, size_t>> Regex::find_all(const std::string& s) const {
  auto* code = static_cast<pcre2_code*>(code_);
  std::vector<std::pair<size_t, size_t>> out;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  size_t pos = 0;
  // Invalid UTF-8 in user text must not abort: a UTF error on the first call ends matching (the
  // rest of the string is one gap).
  // The subject is checked for valid UTF-8 by the first call only: checking it again at every
  // match made tokenization quadratic in the line length. Later start offsets are always at
  // character boundaries (a match's end, or one whole character past an empty match).
  uint32_t options = 0;
  while (pos <= s.size()) {
    int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), pos, options, md, nullptr);
    if (rc < 0) break;
    options = PCRE2_NO_UTF_CHECK;
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    size_t b = ov[0], e = ov[1];
    if (e == b) {  // empty match: step one character forward
      if (b >= s.size()) break;
      size_t n = 1;
      while (b + n < s.size() && (static_cast<unsigned char>(s[b + n]) & 0xC0) == 0x80) ++n;
      pos = b + n;
      continue;
    }
    out.emplace_back(b, e);
    pos = e;
  }
  pcre2_match_data_free(md);
  return out;
}

std::string Regex::replace_all(const std::string& s, const std::string& with) const {
  std::string out;
  size_t last = 0;
  for (auto [b, e] : find_all(s)) {
    out.append(s, last, b - last);
    out += with;
    last = e;
  }
  out.append(s, last, std::string::npos);
  return out;
}

}  // namespace lethe
