// Method options as data: each method's file unlearn/<name>.method.json, next to its class,
// declares its summary and options (name, default, help); the launcher turns them into flags,
// and the method reads its values from a MethodOptions (the defaults overlaid with what was
// given). The default's JSON type is the option's type: a float (1.0) is a number, an integer
// a count, a string text, a boolean a switch.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "common/json_io.h"

namespace lethe {

struct OptionDecl {
  std::string name;  // "npo.beta": the flag --npo.beta
  json default_value;
  std::string help;
};

struct MethodDeclaration {
  std::string name, summary;
  std::vector<OptionDecl> options;
};
// The declaration of method `name` from its embedded unlearn/<name>.method.json.
MethodDeclaration method_declaration(const std::string& name);
// Every unlearn/<name>.method.json as embedded at build time: name -> text (generated code).
const std::map<std::string, std::string>& method_declaration_texts();

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
