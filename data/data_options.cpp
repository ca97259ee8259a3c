#include "data/data_options.h"

#include "common/error.h"

namespace lethe {

ChatTemplate chat_template_for(const DataOptions& o, const std::string& model_dir) {
  ChatTemplate t = resolve_chat_template(o.chat_template, model_dir);
  t.system = o.system_prompt;
  return t;
}

std::vector<Example> read_source(const DataSource& src, const std::string& format, const std::string& option) {
  return filter_examples(read_examples(src.path, format), src.filters, option + " " + src.path);
}

NamedExamples read_named_split(const std::string& spec, const std::string& option, const std::string& format) {
  size_t eq = spec.find('=');
  if (eq == std::string::npos || eq == 0) throw InputError(option + " '" + spec + "' is not NAME=PATH");
  return {spec.substr(0, eq), read_examples(spec.substr(eq + 1), format)};
}

}  // namespace lethe
