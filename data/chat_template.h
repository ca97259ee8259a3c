// Chat templates as fixed formats (not Jinja): the prompt part ends where the answer
// begins, so the answer-only loss mask is exact. Special tokens appear as text and are split
// out by the tokenizer's added-token matching.
#pragma once
#include <string>
#include <vector>

namespace lethe {

enum class ChatTemplate { Llama2, Llama3, ChatML, Plain };

ChatTemplate parse_chat_template(const std::string& name);  // llama2 | llama3 | chatml | plain
std::string chat_template_name(ChatTemplate t);

struct ChatText {
  std::string prompt;    // everything before the answer
  std::string response;  // the answer and its end-of-turn marker
};
ChatText apply_chat_template(ChatTemplate t, const std::string& question, const std::string& answer);
// The token text that ends an assistant turn (stop token for generation).
std::string end_of_turn(ChatTemplate t);

}  // namespace lethe
