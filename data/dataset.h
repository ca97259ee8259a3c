// Question/answer records read from TOFU JSON, KnowUnDo JSON (`text`/`labels`) or JSONL with
// `prompt`, `response` and arbitrary attribute fields (kept for splits and reports).
#pragma once
#include <string>
#include <vector>

#include "common/json_io.h"

namespace lethe {

struct Example {
  Example() = default;
  Example(std::string prompt_, std::string response_, json attrs_ = json::object(), std::string response_prefix_ = "")
      : prompt(std::move(prompt_)), response(std::move(response_)), attrs(std::move(attrs_)),
        response_prefix(std::move(response_prefix_)) {}
  std::string prompt;
  std::string response;
  json attrs = json::object();  // every other field of the record
  // Text the answer's turn starts with, given to the model as part of the prompt (the robustness
  // probe's "Sure, here is the answer:"); empty for data read from files.
  std::string response_prefix;
};

// format: auto | tofu | knowundo | jsonl. Errors name the file and the record (line/index).
std::vector<Example> read_examples(const std::string& path, const std::string& format = "auto");
// Keeps records whose attribute `key` equals `value` for every "key=value" filter.
std::vector<Example> filter_examples(const std::vector<Example>& in, const std::vector<std::string>& filters,
                                     const std::string& what);
void write_examples_jsonl(const std::string& path, const std::vector<Example>& examples);
std::string attr_string(const Example& e, const std::string& key);  // "" when absent

}  // namespace lethe
