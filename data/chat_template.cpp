#include "data/chat_template.h"

#include "common/error.h"

namespace lethe {

ChatTemplate parse_chat_template(const std::string& name) {
  if (name == "llama2") return ChatTemplate::Llama2;
  if (name == "llama3") return ChatTemplate::Llama3;
  if (name == "chatml" || name == "qwen") return ChatTemplate::ChatML;
  if (name == "plain") return ChatTemplate::Plain;
  throw InputError("--template: unknown chat template '" + name + "' (llama2, llama3, chatml, plain)");
}

std::string chat_template_name(ChatTemplate t) {
  switch (t) {
    case ChatTemplate::Llama2: return "llama2";
    case ChatTemplate::Llama3: return "llama3";
    case ChatTemplate::ChatML: return "chatml";
    case ChatTemplate::Plain: return "plain";
  }
  return "";
}

ChatText apply_chat_template(ChatTemplate t, const std::string& q, const std::string& a) {
  switch (t) {
    case ChatTemplate::Llama2:  // <s>[INST] q [/INST] a </s>
      return {"<s>[INST] " + q + " [/INST]", " " + a + " </s>"};
    case ChatTemplate::Llama3:
      return {"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n" + q +
                  "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
              a + "<|eot_id|>"};
    case ChatTemplate::ChatML:
      return {"<|im_start|>user\n" + q + "<|im_end|>\n<|im_start|>assistant\n", a + "<|im_end|>"};
    case ChatTemplate::Plain:
      return {"Question: " + q + "\nAnswer:", " " + a + "<|endoftext|>"};
  }
  return {};
}

std::string end_of_turn(ChatTemplate t) {
  switch (t) {
    case ChatTemplate::Llama2: return "</s>";
    case ChatTemplate::Llama3: return "<|eot_id|>";
    case ChatTemplate::ChatML: return "<|im_end|>";
    case ChatTemplate::Plain: return "<|endoftext|>";
  }
  return "";
}

}  // namespace lethe
