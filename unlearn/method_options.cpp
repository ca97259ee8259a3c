#include "unlearn/method_options.h"

#include "common/error.h"

namespace lethe {

MethodOptions::MethodOptions(const std::vector<OptionDecl>& decls, const json& given) {
  for (auto& d : decls) values_[d.name] = d.default_value;
  for (auto& [k, v] : given.items()) {
    if (!values_.contains(k)) throw InputError("--" + k + ": not an option of this method");
    const json& def = values_[k];
    const bool same = (def.is_number_float() && v.is_number()) || (def.is_number_integer() && v.is_number_integer()) ||
                      (def.is_string() && v.is_string()) || (def.is_boolean() && v.is_boolean());
    if (!same) throw InputError("--" + k + ": '" + v.dump() + "' has the wrong type (default " + def.dump() + ")");
    values_[k] = def.is_number_float() ? json(v.get<double>()) : v;
  }
}

const json& MethodOptions::at(const std::string& name) const {
  LETHE_CHECK(values_.contains(name), "method option '" + name + "' is not declared");
  return values_[name];
}

double MethodOptions::number(const std::string& name) const { return at(name).get<double>(); }
int64_t MethodOptions::integer(const std::string& name) const { return at(name).get<int64_t>(); }
const std::string& MethodOptions::text(const std::string& name) const { return at(name).get_ref<const std::string&>(); }
bool MethodOptions::flag(const std::string& name) const { return at(name).get<bool>(); }

}  // namespace lethe
