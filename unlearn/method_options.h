// Method options as data: each method lists its options (name, default, help) next to its
// class; the launcher turns the list into flags, and the method reads its values from a
// MethodOptions (the defaults overlaid with what was given). The default's JSON type is the
// option's type: a float is a number, an integer a count, a string text, a boolean a switch.
#pragma once
#include <string>
#include <vector>

#include "common/json_io.h"

namespace lethe {

struct OptionDecl {
  std::string name;  // "npo.beta": the flag --npo.beta
  json default_value;
  std::string help;
};

class MethodOptions {
 public:
  MethodOptions() = default;
  // `given` overrides the defaults of `decls`; a name not declared is an InputError.
  MethodOptions(const std::vector<OptionDecl>& decls, const json& given = json::object());

  double number(const std::string& name) const;
  int64_t integer(const std::string& name) const;
  const std::string& text(const std::string& name) const;
  bool flag(const std::string& name) const;
  const json& values() const { return values_; }  // {name: value}, every declared option

 private:
  const json& at(const std::string& name) const;
  json values_ = json::object();
};

}  // namespace lethe
