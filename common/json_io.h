// JSON files in and out with errors that name the file and, for fields, the key.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace lethe {

using json = nlohmann::json;

json read_json_file(const std::string& path);
// JSON text nested deeper than this (arrays and objects) is refused before it is parsed: the
// parser and everything that walks a value recurse, and hostile input must not exhaust the stack.
constexpr int kMaxJsonDepth = 256;
void check_json_depth(const std::string& text, const std::string& what);  // InputError when deeper
// Parses `text` (InputError naming `what` when malformed or nested too deep).
json parse_json_text(const std::string& text, const std::string& what);
void write_json_file(const std::string& path, const json& value);  // atomic: tmp + rename
// JSON text in which invalid UTF-8 in strings (a generation cut inside a multi-byte character,
// a byte-level token) becomes U+FFFD instead of an exception; every writer of text uses it.
std::string json_text(const json& value, int indent = -1);

// Typed field access: throws InputError "<what>: field 'key' ..." when absent or mistyped.
template <typename T>
T json_get(const json& obj, const std::string& key, const std::string& what);
template <typename T>
T json_get_or(const json& obj, const std::string& key, const T& fallback, const std::string& what);

}  // namespace lethe
