#include "common/json_io.h"

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "common/fs.h"

namespace lethe {

void check_json_depth(const std::string& text, const std::string& what) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth)
        throw InputError(what + ": JSON nested more than " + std::to_string(kMaxJsonDepth) + " deep");
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
}

json parse_json_text(const std::string& text, const std::string& what) {
  check_json_depth(text, what);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers past double
    throw InputError(what + ": malformed JSON (" + e.what() + ")");
  }
}

json read_json_file(const std::string& path) { return parse_json_text(read_text_file(path), path); }

std::string json_text(const json& value, int indent) {
  return value.dump(indent, ' ', false, json::error_handler_t::replace);
}

void write_json_file(const std::string& path, const json& value) {
  write_file_atomic(path, json_text(value, 2) + "\n");
}

namespace {
// nlohmann converts any number to an integer with a plain cast: undefined for 1e47, silently
// wrapped for 2^64-1. An integer field takes an integer, or a float with an integral value, that
// fits int64.
bool fits_int64(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>() <= uint64_t(INT64_MAX);
  if (v.is_number_integer()) return true;
  if (!v.is_number_float()) return true;  // not a number: get<> reports the wrong type
  const double d = v.get<double>();
  return std::isfinite(d) && std::floor(d) == d && d >= -9.2233720368547748e18 && d < 9.2233720368547748e18;
}
}  // namespace

template <typename T>
T json_get(const json& obj, const std::string& key, const std::string& what) {
  if (!obj.is_object() || !obj.contains(key)) throw InputError(what + ": missing field '" + key + "'");
  if (std::is_same<T, int64_t>::value && !fits_int64(obj.at(key)))
    throw InputError(what + ": field '" + key + "' must be an integer within int64 (" + obj.at(key).dump() + ")");
  try {
    return obj.at(key).get<T>();
  } catch (const json::exception&) {
    throw InputError(what + ": field '" + key + "' has the wrong type (" + obj.at(key).dump() + ")");
  }
}

template <typename T>
T json_get_or(const json& obj, const std::string& key, const T& fallback, const std::string& what) {
  if (!obj.is_object() || !obj.contains(key) || obj.at(key).is_null()) return fallback;
  return json_get<T>(obj, key, what);
}

template std::string json_get<std::string>(const json&, const std::string&, const std::string&);
template int64_t json_get<int64_t>(const json&, const std::string&, const std::string&);
template double json_get<double>(const json&, const std::string&, const std::string&);
template bool json_get<bool>(const json&, const std::string&, const std::string&);
template std::string json_get_or<std::string>(const json&, const std::string&, const std::string&, const std::string&);
template int64_t json_get_or<int64_t>(const json&, const std::string&, const int64_t&, const std::string&);
template double json_get_or<double>(const json&, const std::string&, const double&, const std::string&);
template bool json_get_or<bool>(const json&, const std::string&, const bool&, const std::string&);

}  // namespace lethe
