#include "data/dataset.h"

#include <sstream>

#include "common/error.h"
#include "common/fs.h"

namespace lethe {

namespace {

Example from_record(const json& r, const std::string& format, const std::string& what) {
  if (!r.is_object()) throw InputError(what + ": expected a JSON object");
  std::string qk, ak;
  if (format == "tofu")
    qk = "question", ak = "answer";
  else if (format == "knowundo")
    qk = "text", ak = "labels";
  else if (format == "jsonl")
    qk = "prompt", ak = "response";
  else if (r.contains("prompt"))
    qk = "prompt", ak = "response";
  else if (r.contains("question"))
    qk = "question", ak = "answer";
  else if (r.contains("text"))
    qk = "text", ak = "labels";
  else
    throw InputError(what + ": no prompt/response, question/answer or text/labels fields");
  Example e;
  e.prompt = json_get<std::string>(r, qk, what);
  e.response = json_get<std::string>(r, ak, what);
  for (auto it = r.begin(); it != r.end(); ++it)
    if (it.key() != qk && it.key() != ak) e.attrs[it.key()] = it.value();
  return e;
}

}  // namespace

std::vector<Example> read_examples(const std::string& path, const std::string& format) {
  if (format != "auto" && format != "tofu" && format != "knowundo" && format != "jsonl")
    throw InputError("--format: unknown data format '" + format + "' (auto, tofu, knowundo, jsonl)");
  std::string text = read_text_file(path);
  std::vector<Example> out;
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) throw InputError(path + ": empty data file");
  if (text[first] == '[') {
    json arr = parse_json_text(text, path);
    for (size_t i = 0; i < arr.size(); ++i)
      out.push_back(from_record(arr[i], format, path + ": record " + std::to_string(i)));
  } else {
    std::istringstream in(text);
    std::string line;
    for (int64_t n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json r = parse_json_text(line, path + ":" + std::to_string(n));
      out.push_back(from_record(r, format, path + ":" + std::to_string(n)));
    }
  }
  if (out.empty()) throw InputError(path + ": no records");
  return out;
}

std::vector<Example> filter_examples(const std::vector<Example>& in, const std::vector<std::string>& filters,
                                     const std::string& what) {
  std::vector<Example> out;
  for (auto& e : in) {
    bool keep = true;
    for (auto& f : filters) {
      size_t eq = f.find('=');
      if (eq == std::string::npos || eq == 0) throw InputError(what + ": filter '" + f + "' is not key=value");
      keep = keep && attr_string(e, f.substr(0, eq)) == f.substr(eq + 1);
    }
    if (keep) out.push_back(e);
  }
  if (out.empty() && !filters.empty()) throw InputError(what + ": no record matches the filter");
  return out;
}

std::string attr_string(const Example& e, const std::string& key) {
  if (!e.attrs.contains(key)) return "";
  const json& v = e.attrs[key];
  return v.is_string() ? v.get<std::string>() : v.dump();
}

void write_examples_jsonl(const std::string& path, const std::vector<Example>& examples) {
  std::string text;
  for (auto& e : examples) {
    json r = {{"prompt", e.prompt}, {"response", e.response}};
    for (auto it = e.attrs.begin(); it != e.attrs.end(); ++it) r[it.key()] = it.value();
    text += json_text(r) + "\n";
  }
  write_file_atomic(path, text);
}

}  // namespace lethe
