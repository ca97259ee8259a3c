#include "data/split.h"

#include <cctype>
#include <set>

#include "common/error.h"
#include "common/text.h"

namespace lethe {

namespace {

// The attribute value of record i: a field (strings as they are, other JSON values dumped), or
// with a block size N the block i / N (TOFU's forget files hold 20 rows per author).
std::string attribute_value(const Example& e, size_t i, const std::string& attr, int64_t block) {
  if (block > 0) return std::to_string(int64_t(i) / block);
  if (e.attrs.contains(attr) && e.attrs[attr].is_null()) return "";  // null counts as missing
  return attr_string(e, attr);
}

}  // namespace

std::string validate(const SplitOptions& o) {
  if (o.by.empty() == (o.block <= 0)) return "give exactly one of --split-by ATTRIBUTE and --split-block N";
  return "";
}

std::map<std::string, std::string> read_split_map(const std::string& spec) {
  std::map<std::string, std::string> m;
  if (spec.empty()) return m;
  if (spec[0] == '@') {
    json j = read_json_file(spec.substr(1));
    if (!j.is_object()) throw InputError("--split-map " + spec + ": expected a JSON object {\"value\": \"subset\"}");
    for (auto& [k, v] : j.items()) {
      if (!v.is_string()) throw InputError("--split-map " + spec + ": the subset of '" + k + "' is not a string");
      m[k] = v.get<std::string>();
    }
    return m;
  }
  for (auto& item : split_commas(spec)) {
    size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size())
      throw InputError("--split-map: '" + item + "' is not VALUE=SUBSET");
    m[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return m;
}

std::vector<NamedExamples> split_by_attribute(const std::vector<Example>& forget, const SplitOptions& o) {
  std::string bad = validate(o);
  if (!bad.empty()) throw InputError(bad);
  const std::string what = o.block > 0 ? "--split-block " + std::to_string(o.block) : "--split-by " + o.by;
  auto map = read_split_map(o.map);
  std::map<std::string, std::vector<Example>> by_name;
  std::set<std::string> seen_values;
  for (size_t i = 0; i < forget.size(); ++i) {
    std::string v = attribute_value(forget[i], i, o.by, o.block);
    if (v.empty())
      throw InputError(what + ": forget record " + std::to_string(i + 1) + " has no attribute '" + o.by +
                       "' (every record needs one; filter them with --forget-filter or use --split-map)");
    seen_values.insert(v);
    auto it = map.find(v);
    by_name[it == map.end() ? v : it->second].push_back(forget[i]);
  }
  for (auto& [value, subset] : map)
    if (!seen_values.count(value))
      throw InputError("--split-map: value '" + value + "' (subset '" + subset +
                       "') matches no forget record: the "
                       "subset would be empty");
  std::vector<NamedExamples> out;
  for (auto& [name, ex] : by_name) {
    for (char c : name)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
        throw InputError(what + ": subset name '" + name +
                         "' may only hold letters, digits, '-', '_' and '.' (name it "
                         "with --split-map VALUE=NAME)");
    out.push_back({name, ex});
  }
  if (out.size() < 2)
    throw InputError(what + ": the forget set has " + std::to_string(out.size()) +
                     " subset(s); SPUNGE needs two or more (use `lethe unlearn` for one)");
  return out;
}

}  // namespace lethe
