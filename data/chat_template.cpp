#include "data/chat_template.h"

#include "common/error.h"
#include "common/hash.h"
#include "common/json_io.h"

namespace lethe {

namespace {

const char* kNames = "llama2, llama3, chatml, qwen3, gemma, plain, auto";

// One row per format: its name and the token text that ends an assistant turn.
struct TemplateRow {
  ChatTemplateKind kind;
  const char* name;
  const char* end_of_turn;
};
const TemplateRow kTemplates[] = {
    {ChatTemplateKind::Llama2, "llama2", "</s>"},        {ChatTemplateKind::Llama3, "llama3", "<|eot_id|>"},
    {ChatTemplateKind::ChatML, "chatml", "<|im_end|>"},  {ChatTemplateKind::Qwen3, "qwen3", "<|im_end|>"},
    {ChatTemplateKind::Gemma, "gemma", "<end_of_turn>"}, {ChatTemplateKind::Plain, "plain", "<|endoftext|>"},
};

const TemplateRow& row_of(ChatTemplateKind kind) {
  for (auto& row : kTemplates)
    if (row.kind == kind) return row;
  throw InternalError("chat template kind without a row");
}

// Jinja's `trim` (Python's str.strip()).
std::string trim(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::string lstrip_newlines(const std::string& s) {
  size_t b = s.find_first_not_of('\n');
  return b == std::string::npos ? "" : s.substr(b);
}

// FNV-1a of a chat_template text: how `auto` recognises the Jinja templates that lethe's fixed
// formats reproduce (checked token for token against apply_chat_template in the tests).
uint64_t fingerprint(const std::string& s) { return fnv1a(s); }

}  // namespace

ChatTemplate parse_chat_template(const std::string& name) {
  if (name == "qwen" || name == "qwen2") return ChatTemplate::ChatML;
  for (auto& row : kTemplates)
    if (name == row.name) return {row.kind, ""};
  if (name == "auto") throw InputError("--template auto needs the model directory (resolve_chat_template)");
  throw InputError("--template: unknown chat template '" + name + "' (" + kNames + ")");
}

std::string chat_template_name(const ChatTemplate& t) { return row_of(t.kind).name; }

ChatTemplate resolve_chat_template(const std::string& name, const std::string& model_dir) {
  if (name != "auto") return parse_chat_template(name);
  const std::string path = model_dir + "/tokenizer_config.json";
  json cfg;
  try {
    cfg = read_json_file(path);
  } catch (const InputError& e) {
    throw InputError("--template auto: " + std::string(e.what()) + " (or name the template: " + kNames + ")");
  }
  if (!cfg.is_object()) throw InputError("--template auto: " + path + " is not a JSON object");
  if (cfg.contains("chat_template") && !cfg["chat_template"].is_null()) {
    const json& ct = cfg["chat_template"];
    if (!ct.is_string())
      throw InputError("--template auto: " + path + " holds several named chat templates; name one (" + kNames + ")");
    const std::string text = ct.get<std::string>();
    static const std::vector<std::pair<uint64_t, ChatTemplate>> known = {
        {0xc3542f32ae2ce9d0ULL, ChatTemplate::Llama3},  // Meta Llama-3 Instruct
        {0x5dd4244f5f466bc0ULL, ChatTemplate::Qwen3},   // Qwen3 (answers without thinking)
    };
    const uint64_t fp = fingerprint(text);
    for (auto& [h, t] : known)
      if (h == fp) return t;
    std::string head = text.substr(0, 60);
    for (auto& c : head)
      if (c == '\n') c = ' ';
    throw InputError("--template auto: the chat_template of " + path + " (fingerprint " + std::to_string(fp) +
                     ", starting \"" + head + "...\") is not one lethe reproduces exactly; name a template (" + kNames +
                     ")");
  }
  const std::string cls = json_get_or<std::string>(cfg, "tokenizer_class", "", path);
  if (cls == "LlamaTokenizer" || cls == "LlamaTokenizerFast") return ChatTemplate::Llama2;
  if (cls == "GemmaTokenizer" || cls == "GemmaTokenizerFast") return ChatTemplate::Gemma;
  throw InputError("--template auto: " + path + " has no chat_template and its tokenizer_class '" + cls +
                   "' names no known format; name a template (" + kNames + ")");
}

ChatText apply_chat_template(const ChatTemplate& t, const std::string& q, const std::string& a) {
  const std::string& sys = t.system;
  switch (t.kind) {
    case ChatTemplateKind::Llama2:  // <s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nq [/INST] a </s>
      return {"<s>[INST] " + (sys.empty() ? "" : "<<SYS>>\n" + sys + "\n<</SYS>>\n\n") + q + " [/INST]",
              " " + a + " </s>"};
    case ChatTemplateKind::Llama3:
      return {"<|begin_of_text|>" +
                  (sys.empty() ? "" : "<|start_header_id|>system<|end_header_id|>\n\n" + trim(sys) + "<|eot_id|>") +
                  "<|start_header_id|>user<|end_header_id|>\n\n" + trim(q) +
                  "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
              trim(a) + "<|eot_id|>"};
    case ChatTemplateKind::ChatML:
      return {(sys.empty() ? "" : "<|im_start|>system\n" + sys + "<|im_end|>\n") + "<|im_start|>user\n" + q +
                  "<|im_end|>\n<|im_start|>assistant\n",
              a + "<|im_end|>"};
    case ChatTemplateKind::Qwen3:  // the final answer carries an empty thinking block
      return {(sys.empty() ? "" : "<|im_start|>system\n" + sys + "<|im_end|>\n") + "<|im_start|>user\n" + q +
                  "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
              lstrip_newlines(a) + "<|im_end|>\n"};
    case ChatTemplateKind::Gemma:
      return {"<bos><start_of_turn>user\n" + (sys.empty() ? "" : trim(sys) + "\n\n") + trim(q) +
                  "<end_of_turn>\n<start_of_turn>model\n",
              trim(a) + "<end_of_turn>\n"};
    case ChatTemplateKind::Plain:
      return {(sys.empty() ? "" : sys + "\n") + "Question: " + q + "\nAnswer:", " " + a + "<|endoftext|>"};
  }
  return {};
}

std::string end_of_turn(const ChatTemplate& t) { return row_of(t.kind).end_of_turn; }

}  // namespace lethe
