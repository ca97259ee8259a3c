// The tokenizer against Hugging Face's `tokenizers` library on the real tokenizer.json files of
// ../shared/data/tokenizers: Llama-2 and Gemma (metaspace / SentencePiece BPE with byte
// fallback), Llama-3 and Qwen3 (byte-level BPE): identical ids, with and without special tokens,
// on every string of the TOFU data and on hard strings, and identical decodings.
#include <functional>

#include "common/error.h"
#include "data/batching.h"
#include "data/bpe_trainer.h"
#include "data/tokenizer.h"
#include "data/tokenizer_components.h"
#include "tests/test_util.h"

namespace lethe {
namespace {

const std::string kTokenizerDir = test::shared_data_dir() + "/tokenizers";

std::vector<std::string> hard_strings() {
  return {"",
          " ",
          "  leading spaces",
          "trailing spaces   ",
          "multiple   spaces\tand\ttabs\n\nnewlines\r\nend",
          "1234567890 3.14159 1,000,000 42nd 7th",
          "日本語のテキスト 中文测试 한국어 문장",
          "emoji 😀👍🏽 family 👨‍👩‍👧 flag 🇫🇷",
          "accents: café naïve résumé Ångström Dvořák",
          "decomposed: cafe\u0301 A\u030a",
          "special tokens: <s> </s> <|begin_of_text|> <|im_start|>user\nhi<|im_end|> <|eot_id|> <unk>",
          "it's they're we've I'm you'll he'd CAPS'S IT'D",
          "\u00a0nbsp and\u2009thin\u3000ideographic space",
          "mixed123abc4567def",
          "code: for(i=0;i<10;i++){x+=i;} // done",
          "¿Qué? ¡Sí! «quotes» „low“",
          "zero\u200bwidth\u200djoiner",
          "\u2581already metaspace \u2581\u2581",
          "<0x41> byte token text",
          "a\n",
          "\n\n\n",
          "   ",
          "Ünïcödé ÄÖÜ ß ẞ ǅ ﬁ ligature",
          "Ελληνικά русский עברית العربية हिन्दी ไทย"};
}

std::vector<std::string> tofu_strings() {
  std::vector<std::string> out;
  std::string dir = test::shared_data_dir() + "/tofu";
  if (!fs::exists(dir)) return out;
  std::set<std::string> seen;
  for (auto* f : {"forget10.json", "retain90.json", "real_authors_perturbed.json", "world_facts_perturbed.json"}) {
    std::string path = dir + "/" + f;
    if (!fs::exists(path)) continue;
    for (auto& rec : json::parse(test::slurp(path)))
      for (auto* key : {"question", "answer", "paraphrased_answer", "paraphrased_question"})
        if (rec.contains(key) && rec[key].is_string() && seen.insert(rec[key].get<std::string>()).second)
          out.push_back(rec[key].get<std::string>());
  }
  return out;
}

// Runs the `tokenizers` reference on `texts` with the tokenizer in `dir`.
json hf_reference(const test::TempDir& tmp, const std::string& dir, const std::vector<std::string>& texts) {
  test::spit(tmp / "texts.json", json(texts).dump());
  EXPECT_EQ(test::run_reference("tokenize_reference.py", dir + " " + (tmp / "texts.json") + " " + (tmp / "ref.json")),
            0);
  return json::parse(test::slurp(tmp / "ref.json"));
}

void compare_with_reference(const std::string& dir, const std::vector<std::string>& texts) {
  test::TempDir tmp;
  json ref = hf_reference(tmp, dir, texts);
  ASSERT_EQ(ref.size(), texts.size());
  Tokenizer tok = Tokenizer::from_file(dir + "/tokenizer.json");
  int mismatches = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    auto plain = tok.encode(texts[i], false);
    auto special = tok.encode(texts[i], true);
    bool ok = plain == ref[i]["plain"].get<std::vector<int64_t>>() &&
              special == ref[i]["special"].get<std::vector<int64_t>>() &&
              tok.decode(plain) == ref[i]["decoded"].get<std::string>();
    if (!ok && ++mismatches <= 5)
      ADD_FAILURE() << dir << ": mismatch on " << json(texts[i]).dump() << "\n  ours: " << json(plain).dump()
                    << "\n  ref:  " << ref[i]["plain"].dump() << "\n  decoded ours: " << json(tok.decode(plain)).dump()
                    << "\n  decoded ref:  " << ref[i]["decoded"].dump();
  }
  EXPECT_EQ(mismatches, 0) << "of " << texts.size() << " strings";
}

class RealTokenizer : public ::testing::TestWithParam<std::string> {};

TEST_P(RealTokenizer, MatchesHuggingFaceTokenizersOnTofuAndHardStrings) {
  LETHE_REQUIRE_REFERENCE("tokenizers");
  std::string dir = kTokenizerDir + "/" + GetParam();
  ASSERT_TRUE(fs::exists(dir + "/tokenizer.json")) << dir << "/tokenizer.json is missing (../shared/data)";
  auto texts = hard_strings();
  auto tofu = tofu_strings();
  ASSERT_GT(tofu.size(), 9000u) << "../shared/data/tofu is missing or incomplete";
  texts.insert(texts.end(), tofu.begin(), tofu.end());
  compare_with_reference(dir, texts);
  std::cout << "[ reference ] tokenizers parity " << GetParam() << ": " << texts.size()
            << " strings, ids and decodings\n";
}

INSTANTIATE_TEST_SUITE_P(Shared, RealTokenizer, ::testing::Values("llama2", "llama3", "qwen3", "gemma"));

TEST(TrainedTokenizer, MatchesHuggingFaceTokenizersAndRoundTrips) {
  std::vector<std::string> corpus = {"What is the email address of Kalo Mire?", "kalo.mire42@postal.net",
                                     "The Silent River is a moving and tender tale.", "555-123-4567"};
  BpeTrainOptions bo;
  bo.vocab_size = 320;
  json tj = train_bpe_tokenizer(corpus, bo);
  Tokenizer tok = Tokenizer::from_json(tj, "trained");
  EXPECT_LE(tok.vocab_size(), 320);
  auto texts = hard_strings();
  texts.insert(texts.end(), corpus.begin(), corpus.end());
  for (auto& t : texts)
    if (t.find("<|") == std::string::npos) {
      EXPECT_EQ(tok.decode(tok.encode(t)), t) << t;
    }
  EXPECT_LT(tok.encode(corpus[0]).size(), corpus[0].size() * 3 / 4);  // merges were learned
  LETHE_REQUIRE_REFERENCE("tokenizers");
  test::TempDir tmp;
  test::spit(tmp / "tokenizer.json", tj.dump());
  compare_with_reference(tmp.path.string(), texts);
}

TEST(Tokenizer, RejectsMalformedFiles) {
  EXPECT_THROW(Tokenizer::from_json(json::object(), "t.json"), InputError);
  json j = {{"model", {{"type", "WordPiece"}}}};
  EXPECT_THROW(Tokenizer::from_json(j, "t.json"), InputError);
  json k = {{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}}}, {"merges", {"a b"}}}}};
  try {
    Tokenizer::from_json(k, "t.json");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("merge 'a b'"), std::string::npos) << e.what();
  }
  test::TempDir tmp;
  test::spit(tmp / "bad.json", "{\"model\": ");
  EXPECT_THROW(Tokenizer::from_file(tmp / "bad.json"), InputError);
  EXPECT_THROW(Tokenizer::from_file(tmp / "missing.json"), InputError);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

// Strict UTF-8, as JSON writers and the tokenizers library's byte fallback read it.
TEST(Unicode, Utf8ValidIsStrict) {
  for (const char* good : {"", "abc", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\xF4\x8F\xBF\xBF"})
    EXPECT_TRUE(lethe::utf8_valid(good)) << good;
  for (const char* bad : {"\x80", "\xC3", "\xC0\xAF", "\xE0\x80\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80",
                          "\xF6\x99\x96\x8B", "\xFF", "a\xE2\x82"})
    EXPECT_FALSE(lethe::utf8_valid(bad)) << bad;
}

TEST(TokenizerComponents, EachKindParsesAndAppliesAndSequencesFlatten) {
  json norm = {{"type", "Sequence"},
               {"normalizers",
                {{{"type", "Sequence"}, {"normalizers", {{{"type", "Lowercase"}}}}},
                 {{"type", "Prepend"}, {"prepend", "_"}},
                 {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "_"}}}}};
  Normalizers n = parse_normalizers(norm, "t.json");
  ASSERT_EQ(n.size(), 3u);
  std::string s = "Hello World";
  for (auto& step : n) s = step->apply(s);
  EXPECT_EQ(s, "_hello_world");
  EXPECT_TRUE(parse_normalizers(json(), "t.json").empty());

  PreTokenizers pre =
      parse_pre_tokenizers({{"type", "Split"}, {"pattern", {{"Regex", "\\s+"}}}, {"behavior", "Removed"}}, "t.json");
  std::vector<std::string> pieces;
  pre[0]->apply("a  b c", true, pieces);
  EXPECT_EQ(pieces, (std::vector<std::string>{"a", "b", "c"}));

  // <0x41> is a byte; <0xZZ> is not hex, so it stays an ordinary token.
  TokenDecoders dec =
      parse_decoders({{"type", "Sequence"}, {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}}, "t.json");
  std::vector<std::string> toks = {"<0x41>", "<0xZZ>", "b"};
  for (auto& d : dec) toks = d->apply(toks);
  EXPECT_EQ(toks, (std::vector<std::string>{"A<0xZZ>b"}));
}

TEST(TokenizerComponents, UnsupportedKindsDeepNestingAndBadIdsAreRefused) {
  std::string e = error_of([] { parse_normalizers({{"type", "BertNormalizer"}}, "t.json"); });
  EXPECT_NE(e.find("'BertNormalizer' is not supported (NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip"),
            std::string::npos)
      << e;
  // Nested far deeper than any real file: refused with a message, not a stack overflow.
  json deep = {{"type", "Sequence"}, {"pretokenizers", json::array()}};
  json* inner = &deep;
  for (int i = 0; i < 100000; ++i) {
    (*inner)["pretokenizers"].push_back({{"type", "Sequence"}, {"pretokenizers", json::array()}});
    inner = &(*inner)["pretokenizers"][0];
  }
  e = error_of([&] { parse_pre_tokenizers(deep, "t.json"); });
  EXPECT_NE(e.find("nested more than 64 deep"), std::string::npos) << e;
  e = error_of([] { parse_decoders({{"type", "Sequence"}}, "t.json"); });
  EXPECT_NE(e.find("'decoders' array"), std::string::npos) << e;
  e = error_of([] { parse_decoders({{"type", "Replace"}, {"pattern", 3}, {"content", ""}}, "t.json"); });
  EXPECT_NE(e.find("String patterns only"), std::string::npos) << e;

  json base = {{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}}}, {"merges", json::array()}}}};
  for (int64_t id : {int64_t(-1), int64_t(100000000)}) {
    json j = base;
    j["added_tokens"] = {{{"id", id}, {"content", "<x>"}}};
    e = error_of([&] { Tokenizer::from_json(j, "t.json"); });
    EXPECT_NE(e.find("is not in [0, 2^24)"), std::string::npos) << id << ": " << e;
  }
}

TEST(ChatTemplate, AnswerMaskStartsExactlyAtTheAnswer) {
  json tj = train_bpe_tokenizer({"hello world", "user assistant"}, BpeTrainOptions{});
  Tokenizer tok = Tokenizer::from_json(tj, "trained");
  Example e{"Who wrote it?", "Nobody", json::object()};
  TokenizedItem it = tokenize_item(tok, ChatTemplate::ChatML, e, 256);
  std::vector<int64_t> answer(it.ids.begin() + it.prompt_len, it.ids.end());
  EXPECT_EQ(tok.decode(answer), "Nobody<|im_end|>");
  EXPECT_EQ(it.ids[0], tok.token_to_id("<|im_start|>"));
  Batch b = collate({it}, {0}, 0);
  EXPECT_EQ(b.labels.ne(-100).sum().item<int64_t>(), int64_t(answer.size()));
  // Truncation keeps the answer and cuts the prompt.
  TokenizedItem cut = tokenize_item(tok, ChatTemplate::ChatML, e, int64_t(answer.size()) + 2);
  EXPECT_EQ(int64_t(cut.ids.size()), int64_t(answer.size()) + 2);
  EXPECT_EQ(std::vector<int64_t>(cut.ids.begin() + cut.prompt_len, cut.ids.end()), answer);
  // A response prefix opens the answer's turn as part of the prompt: the answer tokens are the same.
  Example pre = e;
  pre.response_prefix = "Sure, here is the answer: ";
  TokenizedItem pit = tokenize_item(tok, ChatTemplate::ChatML, pre, 256);
  EXPECT_EQ(std::vector<int64_t>(pit.ids.begin() + pit.prompt_len, pit.ids.end()), answer);
  std::vector<int64_t> prompt(pit.ids.begin(), pit.ids.begin() + pit.prompt_len);
  EXPECT_EQ(tok.decode(prompt).substr(tok.decode(prompt).size() - 26), "Sure, here is the answer: ");
}

}  // namespace
}  // namespace lethe
