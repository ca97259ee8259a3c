#include "unlearn/method_options.h"

#include "common/error.h"

namespace lethe {

MethodDeclaration method_declaration(const std::string& name) {
  const auto& texts = method_declaration_texts();
  auto it = texts.find(name);
  LETHE_CHECK(it != texts.end(), "no unlearn/" + name + ".method.json was embedded");
  const std::string what = "unlearn/" + name + ".method.json";
  json j;
  try {
    j = json::parse(it->second);
  } catch (const json::parse_error& e) {
    throw InternalError(what + ": " + e.what());
  }
  MethodDeclaration d{json_get<std::string>(j, "name", what), json_get<std::string>(j, "summary", what), {}};
  LETHE_CHECK(d.name == name, what + " declares method '" + d.name + "'");
  LETHE_CHECK(j.contains("options") && j["options"].is_array(), what + ": 'options' must be an array");
  for (auto& o : j["options"]) {
    OptionDecl decl{json_get<std::string>(o, "name", what), o.value("default", json()),
                    json_get<std::string>(o, "help", what)};
    const json& v = decl.default_value;
    LETHE_CHECK(v.is_number() || v.is_string() || v.is_boolean(),
                what + ": option '" + decl.name + "' needs a number, string or boolean default");
    LETHE_CHECK(decl.name.rfind(name + ".", 0) == 0,
                what + ": option '" + decl.name + "' must start with '" + name + ".'");
    d.options.push_back(decl);
  }
  return d;
}

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
