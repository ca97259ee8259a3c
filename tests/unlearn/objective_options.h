// A method's options from command-line style arguments ("--npo.beta", "0.2"; a switch alone),
// typed by the method's declarations, for the objective tests.
#pragma once
#include <string>
#include <vector>

#include "unlearn/objective.h"

namespace lethe::test {

inline MethodOptions objective_options(const ObjectiveSpec& spec, const std::vector<std::string>& args) {
  json given = json::object();
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string name = args[i].substr(2);
    const OptionDecl* decl = nullptr;
    for (auto& d : spec.options)
      if (d.name == name) decl = &d;
    if (!decl) throw InputError("--" + name + ": not an option of " + spec.name);
    const json& def = decl->default_value;
    if (def.is_boolean())
      given[name] = true;
    else if (def.is_number_integer())
      given[name] = std::stoll(args[++i]);
    else if (def.is_number())
      given[name] = std::stod(args[++i]);
    else
      given[name] = args[++i];
  }
  return MethodOptions(spec.options, given);
}

}  // namespace lethe::test
