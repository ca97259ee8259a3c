#include "common/error.h"
#include "data/batching.h"
#include "data/dataset.h"
#include "data/synth.h"
#include "tests/test_util.h"

namespace lethe {
namespace {

TEST(Dataset, ReadsTofuKnowUndoAndJsonl) {
  test::TempDir tmp;
  test::spit(tmp / "tofu.json", R"([{"question":"Q1","answer":"A1","paraphrased_answer":"P1"}])");
  test::spit(tmp / "ku.json", R"([{"text":"T1","labels":"L1","id":3}])");
  test::spit(tmp / "d.jsonl",
             "{\"prompt\":\"p\",\"response\":\"r\",\"region\":\"north\"}\n\n{\"prompt\":\"p2\",\"response\":\"r2\","
             "\"region\":\"south\"}\n");
  auto t = read_examples(tmp / "tofu.json");
  EXPECT_EQ(t[0].prompt, "Q1");
  EXPECT_EQ(t[0].response, "A1");
  EXPECT_EQ(attr_string(t[0], "paraphrased_answer"), "P1");
  auto k = read_examples(tmp / "ku.json", "knowundo");
  EXPECT_EQ(k[0].prompt, "T1");
  EXPECT_EQ(attr_string(k[0], "id"), "3");
  auto j = read_examples(tmp / "d.jsonl");
  ASSERT_EQ(j.size(), 2u);
  auto south = filter_examples(j, {"region=south"}, "test");
  ASSERT_EQ(south.size(), 1u);
  EXPECT_EQ(south[0].prompt, "p2");
  EXPECT_THROW(filter_examples(j, {"region=east"}, "test"), InputError);
  EXPECT_THROW(filter_examples(j, {"region"}, "test"), InputError);
}

TEST(Dataset, ErrorsNameTheFileAndRecord) {
  test::TempDir tmp;
  test::spit(tmp / "bad.jsonl", "{\"prompt\":\"p\",\"response\":\"r\"}\n{\"prompt\": 5, \"response\":\"r\"}\n");
  try {
    read_examples(tmp / "bad.jsonl");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'prompt'"), std::string::npos) << e.what();
  }
  test::spit(tmp / "broken.json", "[{\"question\": \"q\"");
  EXPECT_THROW(read_examples(tmp / "broken.json"), InputError);
  test::spit(tmp / "empty.json", "   ");
  EXPECT_THROW(read_examples(tmp / "empty.json"), InputError);
  EXPECT_THROW(read_examples(tmp / "nope.json"), InputError);
  test::spit(tmp / "nofields.jsonl", "{\"x\": 1}\n");
  EXPECT_THROW(read_examples(tmp / "nofields.jsonl"), InputError);
}

TEST(Dataset, ReadsTheRealTofuFiles) {
  std::string path = test::shared_data_dir() + "/tofu/forget10.json";
  if (!fs::exists(path)) GTEST_SKIP() << "../shared/data/tofu absent";
  auto f = read_examples(path);
  EXPECT_EQ(f.size(), 400u);
  EXPECT_EQ(f[0].attrs["perturbed_answer"].size(), 5u);
  EXPECT_EQ(read_examples(test::shared_data_dir() + "/tofu/retain90.json").size(), 3600u);
}

TEST(Synth, DeterministicScopedAndAttributed) {
  SynthOptions o;
  auto a = synthesize(o), b = synthesize(o);
  ASSERT_EQ(a.train.size(), b.train.size());
  for (size_t i = 0; i < a.train.size(); ++i) {
    EXPECT_EQ(a.train[i].prompt, b.train[i].prompt);
    EXPECT_EQ(a.train[i].response, b.train[i].response);
  }
  o.seed = 99;
  auto c = synthesize(o);
  EXPECT_NE(a.train[0].response, c.train[0].response);
  EXPECT_EQ(a.train.size(), size_t(12 * 8 + 6 * 5));
  std::map<std::string, int> scopes, kinds;
  for (auto& e : a.train) {
    for (auto* key : {"domain", "scope", "entity", "fact", "kind", "region", "genre", "id"})
      EXPECT_TRUE(e.attrs.contains(key)) << key;
    scopes[attr_string(e, "scope")]++;
    kinds[attr_string(e, "kind")]++;
    if (attr_string(e, "fact") == "email") {
      EXPECT_NE(e.response.find('@'), std::string::npos);
    }
  }
  EXPECT_EQ(scopes["unlearn"], 12 * 4 + 6 * 2);
  EXPECT_EQ(scopes["retention"], 12 * 4 + 6 * 3);
  EXPECT_GT(kinds["contact"], 0);
  EXPECT_GT(kinds["family"], 0);
  // The eval split asks the same facts in other words.
  ASSERT_EQ(a.eval.size(), a.train.size());
  for (size_t i = 0; i < a.eval.size(); ++i) {
    EXPECT_EQ(a.eval[i].response, a.train[i].response);
    EXPECT_NE(a.eval[i].prompt, a.train[i].prompt);
  }
}

TEST(Synth, RefusesToOverwrite) {
  test::TempDir tmp;
  test::spit(tmp / "keep.txt", "precious");
  SynthOptions o;
  EXPECT_THROW(write_synth_dir(tmp.path.string(), synthesize(o), o), InputError);
  EXPECT_EQ(test::slurp(tmp / "keep.txt"), "precious");
}

TEST(Batching, SeededOrderAndPadding) {
  std::vector<TokenizedItem> items;
  for (int i = 0; i < 10; ++i) items.push_back({std::vector<int64_t>(size_t(3 + i % 4), i), 2});
  BatchIterator a(&items, 4, 7, -1), b(&items, 4, 7, -1), c(&items, 4, 8, -1);
  std::vector<int64_t> sa, sb, sc;
  for (int k = 0; k < 6; ++k) {  // two epochs (3 batches each)
    auto x = a.next(), y = b.next(), z = c.next();
    sa.insert(sa.end(), x.index.begin(), x.index.end());
    sb.insert(sb.end(), y.index.begin(), y.index.end());
    sc.insert(sc.end(), z.index.begin(), z.index.end());
    for (int64_t r = 0; r < x.input_ids.size(0); ++r) {
      const auto& it = items[size_t(x.index[size_t(r)])];
      EXPECT_EQ(x.attention_mask[r].sum().item<int64_t>(), int64_t(it.ids.size()));
      EXPECT_EQ(x.labels[r].ne(-100).sum().item<int64_t>(), int64_t(it.ids.size()) - it.prompt_len);
    }
  }
  EXPECT_EQ(sa, sb);
  EXPECT_NE(sa, sc);
  EXPECT_EQ(a.epoch(), 2);  // 24 items drawn from epochs of 10: full batches run on
  std::vector<int64_t> first(sa.begin(), sa.begin() + 10), second(sa.begin() + 10, sa.begin() + 20);
  EXPECT_NE(first, second);  // reshuffled each epoch
  std::sort(first.begin(), first.end());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(first[size_t(i)], i);
  // seek() reproduces the stream from a saved position.
  auto pos = a.position();
  auto x = a.next_indices();
  BatchIterator d(&items, 4, 7, -1);
  d.seek(pos.first, pos.second);
  EXPECT_EQ(d.next_indices(), x);
}

}  // namespace
}  // namespace lethe
