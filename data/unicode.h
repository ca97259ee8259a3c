// UTF-8 helpers, the GPT-2 byte <-> printable-character map used by byte-level BPE, Unicode
// normalization (ICU) and a PCRE2 regex wrapper with Unicode classes (\p{L}, \p{N}, \s).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace lethe {

// Splits a UTF-8 string into its characters (invalid bytes become one-byte pieces).
std::vector<std::string> utf8_chars(const std::string& s);
bool utf8_valid(const std::string& s);
std::string codepoint_to_utf8(uint32_t cp);

// GPT-2's reversible map from the 256 byte values to printable Unicode characters.
const std::vector<std::string>& byte_to_unicode();
std::string bytes_to_unicode_string(const std::string& bytes);
// The inverse; characters outside the map keep their own UTF-8 bytes.
std::string unicode_string_to_bytes(const std::string& s);

// mode: "NFC", "NFD", "NFKC", "NFKD"
std::string unicode_normalize(const std::string& s, const std::string& mode);
std::string unicode_lowercase(const std::string& s);

class Regex {
 public:
  // literal: match the pattern as a plain string.
  Regex(const std::string& pattern, bool literal, bool case_insensitive = false);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // [begin, end) byte ranges of successive non-overlapping matches.
  std::vector<std::pair<size_t, size_t>> find_all(const std::string& s) const;
  std::string replace_all(const std::string& s, const std::string& with) const;

 private:
  void* code_ = nullptr;  // pcre2_code*
  std::string pattern_;
};

}  // namespace lethe
