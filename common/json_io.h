// JSON files in and out with errors that name the file and, for fields, the key.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace lethe {

using json = nlohmann::json;

json read_json_file(const std::string& path);
void write_json_file(const std::string& path, const json& value);  // atomic: tmp + rename

// Typed field access: throws InputError "<what>: field 'key' ..." when absent or mistyped.
template <typename T>
T json_get(const json& obj, const std::string& key, const std::string& what);
template <typename T>
T json_get_or(const json& obj, const std::string& key, const T& fallback, const std::string& what);

}  // namespace lethe
