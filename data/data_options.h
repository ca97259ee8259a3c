// How question/answer data is read and tokenized, and the named data sources of a run: a
// file with key=value filters (--forget, --forget-filter) and NAME=PATH splits.
#pragma once
#include <string>
#include <vector>

#include "data/chat_template.h"
#include "data/dataset.h"

namespace lethe {

struct DataOptions {
  std::string format = "auto";           // --data-format: auto, tofu, knowundo, jsonl
  std::string chat_template = "chatml";  // --template (auto: from the model's tokenizer_config.json)
  std::string system_prompt;             // --system-prompt
  int64_t max_len = 256;                 // --max-len: longest tokenized item (the prompt is cut first)
};
// The template named by `o` (resolved against `model_dir` for auto) with its system prompt.
ChatTemplate chat_template_for(const DataOptions& o, const std::string& model_dir);

// A data file and the key=value filters its records must match.
struct DataSource {
  std::string path;
  std::vector<std::string> filters;
  bool given() const { return !path.empty(); }
};
// The records of `src` in `format`; `option` names the flag in errors ("--forget").
std::vector<Example> read_source(const DataSource& src, const std::string& format, const std::string& option);

struct NamedExamples {
  std::string name;
  std::vector<Example> examples;
};
// NAME=PATH (--eval-split): the records of PATH as split NAME.
NamedExamples read_named_split(const std::string& spec, const std::string& option, const std::string& format);

}  // namespace lethe
