// Chat templates against transformers' apply_chat_template with the models' own Jinja templates
// (../shared/data/tokenizers/{llama3,qwen3}/tokenizer_config.json,
// tests/reference/chat_template_reference.py): on TOFU questions and answers, with and without a
// system prompt, the ids lethe trains on and the prompt length (where the answer mask starts)
// equal what transformers gives. llama2 and gemma against their published formats; `auto`.
#include "common/error.h"
#include "data/batching.h"
#include "tests/test_util.h"

namespace lethe {
namespace {

const std::string kDir = test::shared_data_dir() + "/tokenizers";

std::vector<Example> tofu_examples(size_t n) {
  std::vector<Example> out;
  for (auto& rec : json::parse(test::slurp(test::shared_data_dir() + "/tofu/forget10.json"))) {
    if (out.size() >= n) break;
    out.push_back({rec["question"].get<std::string>(), rec["answer"].get<std::string>(), json::object()});
  }
  return out;
}

class HfChatTemplate : public ::testing::TestWithParam<std::string> {};

TEST_P(HfChatTemplate, IdsEqualApplyChatTemplate) {
  LETHE_REQUIRE_REFERENCE("transformers, jinja2");
  const std::string dir = kDir + "/" + GetParam();
  ChatTemplate tmpl = resolve_chat_template("auto", dir);  // the fingerprint of the model's own template
  EXPECT_EQ(chat_template_name(tmpl), GetParam());
  Tokenizer tok = Tokenizer::from_file(dir + "/tokenizer.json");
  auto examples = tofu_examples(60);
  examples.push_back({"  Question with spaces around it?  ", "\nAn answer after a newline.", json::object()});
  const std::vector<std::string> systems = {"", "You are a helpful assistant. Answer briefly."};
  json cases = json::array();
  for (auto& sys : systems)
    for (auto& e : examples) cases.push_back({{"system", sys}, {"question", e.prompt}, {"answer", e.response}});
  test::TempDir tmp;
  test::spit(tmp / "cases.json", cases.dump());
  ASSERT_EQ(
      test::run_reference("chat_template_reference.py", dir + " " + (tmp / "cases.json") + " " + (tmp / "out.json")),
      0);
  json ref = json::parse(test::slurp(tmp / "out.json"));
  ASSERT_EQ(ref.size(), cases.size());
  int mismatches = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    ChatTemplate t = tmpl;
    t.system = cases[i]["system"].get<std::string>();
    Example e{cases[i]["question"].get<std::string>(), cases[i]["answer"].get<std::string>(), json::object()};
    TokenizedItem it = tokenize_item(tok, t, e, 100000);
    auto full = ref[i]["full"].get<std::vector<int64_t>>();
    auto prompt = ref[i]["prompt"].get<std::vector<int64_t>>();
    bool ok = it.ids == full && it.prompt_len == int64_t(prompt.size()) &&
              std::equal(prompt.begin(), prompt.end(), it.ids.begin());
    if (!ok && ++mismatches <= 3) {
      ChatText ct = apply_chat_template(t, e.prompt, e.response);
      ADD_FAILURE() << GetParam() << " case " << i << "\n  lethe: " << json(ct.prompt + ct.response).dump()
                    << "\n  hf:    " << ref[i]["text"].dump() << "\n  prompt tokens " << it.prompt_len << " vs "
                    << prompt.size();
    }
  }
  EXPECT_EQ(mismatches, 0) << "of " << cases.size();
  std::cout << "[ reference ] apply_chat_template parity " << GetParam() << ": " << cases.size()
            << " conversations (with and without a system prompt), ids and answer mask identical\n";
}

INSTANTIATE_TEST_SUITE_P(Shared, HfChatTemplate, ::testing::Values("llama3", "qwen3"));

TEST(ChatTemplates, Llama2AndGemmaFollowTheirPublishedFormats) {
  ChatText l = apply_chat_template(ChatTemplate::Llama2, "Who?", "Me.");
  EXPECT_EQ(l.prompt + l.response, "<s>[INST] Who? [/INST] Me. </s>");
  ChatTemplate ls = ChatTemplate::Llama2;
  ls.system = "Be terse.";
  ChatText l2 = apply_chat_template(ls, "Who?", "Me.");
  EXPECT_EQ(l2.prompt, "<s>[INST] <<SYS>>\nBe terse.\n<</SYS>>\n\nWho? [/INST]");
  ChatText g = apply_chat_template(ChatTemplate::Gemma, "knock knock", "who is there");
  EXPECT_EQ(g.prompt, "<bos><start_of_turn>user\nknock knock<end_of_turn>\n<start_of_turn>model\n");
  EXPECT_EQ(g.response, "who is there<end_of_turn>\n");
  ChatTemplate gs = ChatTemplate::Gemma;
  gs.system = "Be terse.";
  EXPECT_EQ(apply_chat_template(gs, "Hi", "Hello").prompt,
            "<bos><start_of_turn>user\nBe terse.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
  // <bos> is a special token of the real Gemma tokenizer. Its tokenizer.json here predates
  // <start_of_turn>/<end_of_turn> as added tokens (they are ids 106/107 in the vocabulary but
  // not in added_tokens), so both lethe and `tokenizers` spell them out in pieces; a newer
  // tokenizer.json that lists them gets single tokens.
  Tokenizer gemma = Tokenizer::from_file(kDir + "/gemma/tokenizer.json");
  EXPECT_EQ(gemma.encode(g.prompt, false)[0], gemma.token_to_id("<bos>"));
  Tokenizer llama2 = Tokenizer::from_file(kDir + "/llama2/tokenizer.json");
  EXPECT_EQ(llama2.encode(l.prompt, false)[0], llama2.token_to_id("<s>"));
}

TEST(ChatTemplates, AutoPicksFromTokenizerConfigAndRefusesWhatItCannotReproduce) {
  EXPECT_EQ(resolve_chat_template("auto", kDir + "/llama2"), ChatTemplate::Llama2);
  EXPECT_EQ(resolve_chat_template("auto", kDir + "/gemma"), ChatTemplate::Gemma);
  EXPECT_EQ(resolve_chat_template("auto", kDir + "/llama3"), ChatTemplate::Llama3);
  EXPECT_EQ(resolve_chat_template("auto", kDir + "/qwen3"), ChatTemplate::Qwen3);
  EXPECT_EQ(resolve_chat_template("qwen3", "/nonexistent"), ChatTemplate::Qwen3);
  test::TempDir tmp;
  json cfg = read_json_file(kDir + "/llama3/tokenizer_config.json");
  cfg["chat_template"] = cfg["chat_template"].get<std::string>() + "{{ '\\n' }}";  // one character more
  write_json_file(tmp / "tokenizer_config.json", cfg);
  try {
    resolve_chat_template("auto", tmp.path.string());
    FAIL() << "an edited template was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("not one lethe reproduces exactly"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("tokenizer_config.json"), std::string::npos) << e.what();
  }
  EXPECT_THROW(resolve_chat_template("auto", tmp / "missing"), InputError);
  EXPECT_THROW(parse_chat_template("vicuna"), InputError);
}

}  // namespace
}  // namespace lethe
