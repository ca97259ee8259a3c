// Flags bound to the fields of the library's config structs. Every flag is named once, next to
// the field it fills: the field's initial value is the flag's default, `check` validates the
// value, and the same list declares the flag for Boost, reads it, validates it (collecting every
// bad or missing option before failing) and writes the effective configuration as JSON, keyed by
// group and flag name. Only the launcher includes Boost.Program_options.
#pragma once
#include <boost/program_options.hpp>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "common/json_io.h"

namespace lethe {

namespace po = boost::program_options;

// "" when `v` is fine, else what is wrong ("must be positive"); the option's name is prefixed.
template <typename T>
using Check = std::function<std::string(const T& v)>;

class OptionSet {
 public:
  // Flags added from now on belong to `group` (the JSON object of the effective configuration).
  OptionSet& group(const std::string& name, const std::string& title = "");

  // int, int64_t, uint64_t, double, std::string, bool (a switch), std::vector<std::string>
  // (repeatable). required: the flag must be given (strings: non-empty).
  template <typename T>
  OptionSet& add(const std::string& name, T* field, const std::string& help, Check<T> check = {},
                 bool required = false);
  template <typename T>
  OptionSet& require(const std::string& name, T* field, const std::string& help, Check<T> check = {}) {
    return add(name, field, help, std::move(check), true);
  }
  // A check across flags, run after every flag is read ("" when fine; the message names them).
  OptionSet& rule(std::function<std::string()> check);
  // Reading, not declaring: `fn` derives fields after the flags are read (errors collected).
  OptionSet& then(std::function<void(const po::variables_map&, std::vector<std::string>& errors)> fn);

  // Adds to the current group's JSON what `fn` writes (values derived from several flags).
  OptionSet& report(std::function<void(json&)> fn);

  // Declares every flag, one po::options_description per group title.
  void declare(po::options_description& d) const;
  // Fills the fields from `vm`; every problem is appended to `errors` (nothing thrown).
  void read(const po::variables_map& vm, std::vector<std::string>& errors) const;
  // {group: {flag: value}} of the groups whose name is not empty.
  json to_json() const;

 private:
  struct Entry {
    std::string group, title;
    std::function<void(po::options_description&)> declare;
    std::function<void(const po::variables_map&, std::vector<std::string>&)> read;
    std::function<void(json&)> to_json;
  };
  std::string group_, title_;
  std::vector<Entry> entries_;
};

// Checks shared by many flags; a floating-point value must also be finite (NaN and Inf fail).
template <typename T>
bool below_infinity(const T& v) {
  if constexpr (std::numeric_limits<T>::has_infinity) return v < std::numeric_limits<T>::infinity();
  return true;
}
template <typename T>
Check<T> positive() {
  return [](const T& v) { return v > T(0) && below_infinity(v) ? "" : "must be positive"; };
}
template <typename T>
Check<T> non_negative() {
  return [](const T& v) { return v >= T(0) && below_infinity(v) ? "" : "must be >= 0"; };
}
Check<double> in_range(double lo, double hi);  // lo <= v <= hi, finite
Check<double> finite();
Check<std::string> one_of(const std::vector<std::string>& allowed);

}  // namespace lethe
