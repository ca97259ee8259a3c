// Chat templates as fixed formats (not Jinja): the prompt part ends where the answer
// begins, so the answer-only loss mask is exact. Special tokens appear as text and are split
// out by the tokenizer's added-token matching. llama3 and qwen3 give the ids transformers'
// apply_chat_template gives with those models' own Jinja templates (tests/data/
// test_chat_template.cpp); llama2 and gemma follow their published formats. `auto` reads the
// model's tokenizer_config.json and takes only a template lethe reproduces exactly.
#pragma once
#include <string>
#include <vector>

namespace lethe {

enum class ChatTemplateKind { Llama2, Llama3, ChatML, Qwen3, Gemma, Plain };

// A template and the system prompt it opens every conversation with ("" for none).
struct ChatTemplate {
  ChatTemplateKind kind = ChatTemplateKind::ChatML;
  std::string system;
  static const ChatTemplate Llama2, Llama3, ChatML, Qwen3, Gemma, Plain;  // without a system prompt
  bool operator==(const ChatTemplate& o) const { return kind == o.kind && system == o.system; }
};
inline const ChatTemplate ChatTemplate::Llama2{ChatTemplateKind::Llama2, ""};
inline const ChatTemplate ChatTemplate::Llama3{ChatTemplateKind::Llama3, ""};
inline const ChatTemplate ChatTemplate::ChatML{ChatTemplateKind::ChatML, ""};
inline const ChatTemplate ChatTemplate::Qwen3{ChatTemplateKind::Qwen3, ""};
inline const ChatTemplate ChatTemplate::Gemma{ChatTemplateKind::Gemma, ""};
inline const ChatTemplate ChatTemplate::Plain{ChatTemplateKind::Plain, ""};

// llama2 | llama3 | chatml | qwen3 | gemma | plain; "auto" needs resolve_chat_template.
ChatTemplate parse_chat_template(const std::string& name);
// `name`, or for "auto" the template that model_dir/tokenizer_config.json declares (its Jinja
// chat_template when lethe reproduces it exactly, else its tokenizer_class for Llama-2 and
// Gemma); InputError naming the template lethe cannot reproduce.
ChatTemplate resolve_chat_template(const std::string& name, const std::string& model_dir);
std::string chat_template_name(const ChatTemplate& t);

struct ChatText {
  std::string prompt;    // everything before the answer
  std::string response;  // the answer and its end-of-turn marker
};
// With t.system: llama2 <<SYS>>, llama3/chatml/qwen3 a system turn; Gemma has no system turn,
// so the system prompt opens the user turn, as Gemma's documentation suggests.
ChatText apply_chat_template(const ChatTemplate& t, const std::string& question, const std::string& answer);
// The token text that ends an assistant turn (stop token for generation).
std::string end_of_turn(const ChatTemplate& t);

}  // namespace lethe
