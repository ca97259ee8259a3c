#include "common/error.h"
#include "eval/report.h"
#include "eval/rouge.h"
#include "eval/tofu.h"
#include "data/bpe_trainer.h"
#include "dist/process_groups.h"
#include "tests/test_util.h"

namespace lethe {
namespace {

TEST(Rouge, HandComputedCases) {
  EXPECT_EQ(rouge_tokens("Hello, World! It's 42."), (std::vector<std::string>{"hello", "world", "it", "s", "42"}));
  RougeL same = rouge_l("the cat sat", "The cat sat.");
  EXPECT_DOUBLE_EQ(same.f1, 1.0);
  // LCS("a b c d", "a x c d") = 3: P = R = 3/4.
  RougeL r = rouge_l("a b c d", "a x c d");
  EXPECT_DOUBLE_EQ(r.precision, 0.75);
  EXPECT_DOUBLE_EQ(r.f1, 0.75);
  // prediction 2 words, reference 4, LCS 2: P 1, R 0.5, F1 2/3.
  RougeL q = rouge_l("b d", "a b c d");
  EXPECT_DOUBLE_EQ(q.recall, 0.5);
  EXPECT_NEAR(q.f1, 2.0 / 3.0, 1e-12);
  EXPECT_EQ(rouge_l("", "x").f1, 0.0);
  EXPECT_EQ(rouge_l("y", "x").f1, 0.0);
}

TEST(KnowUndo, ScoresFromAccuracies) {
  SplitMetrics f, r;
  f.accuracy = 0.15;
  r.accuracy = 0.9;
  auto s = knowundo_scores(f, r);
  EXPECT_NEAR(s.unlearn_success, 85.0, 1e-9);
  EXPECT_NEAR(s.retention_success, 90.0, 1e-9);
  EXPECT_NEAR(s.average_success, 87.5, 1e-9);
  f.name = "forget";
  r.name = "retain";
  std::string md = report_markdown({f, r}, &s, "t");
  EXPECT_NE(md.find("Unlearn Success **85.0**"), std::string::npos) << md;
  EXPECT_NE(md.find("| forget |"), std::string::npos);
  json j = report_json({f, r}, &s, json::object());
  EXPECT_NEAR(j["knowundo"]["average_success"].get<double>(), 87.5, 1e-9);
}

TEST(Tofu, KolmogorovSmirnovHandCases) {
  KsTest same = ks_two_sample({1, 2, 3}, {3, 2, 1});
  EXPECT_EQ(same.statistic, 0.0);
  EXPECT_EQ(same.p_value, 1.0);
  // Empirical CDFs of {1,2,3,4} and {2.5,5,6,7} differ most at x = 4: 1 - 1/4.
  EXPECT_DOUBLE_EQ(ks_two_sample({1, 2, 3, 4}, {2.5, 5, 6, 7}).statistic, 0.75);
  // Disjoint samples of 10: D = 1, lambda = sqrt(5): p = 2 sum (-1)^(k-1) exp(-10 k^2).
  std::vector<double> a, b;
  for (int i = 0; i < 10; ++i) {
    a.push_back(i);
    b.push_back(100 + i);
  }
  KsTest t = ks_two_sample(a, b);
  EXPECT_DOUBLE_EQ(t.statistic, 1.0);
  EXPECT_NEAR(t.p_value, 2 * (std::exp(-10.0) - std::exp(-40.0)), 1e-12);
  // Ties across samples are handled as one step.
  EXPECT_DOUBLE_EQ(ks_two_sample({1, 1, 2}, {1, 2, 2}).statistic, 1.0 / 3.0);
  EXPECT_THROW(ks_two_sample({}, {1}), InputError);
}

TEST(Tofu, SensitiveStrings) {
  Example e{"q", "Renva Thotor and Tormi Thotor live at 97 Mill Street; mail selve.thotor@letters.com", {}};
  auto s = sensitive_strings(e);
  for (std::string want : {"Renva Thotor", "Tormi Thotor", "97", "Mill Street", "selve.thotor@letters.com"})
    EXPECT_NE(std::find(s.begin(), s.end(), want), s.end()) << want;
  EXPECT_TRUE(sensitive_strings({"q", "it is blue", {}}).empty());
  Example given{"q", "whatever", {{"sensitive", {"X-17"}}}};
  EXPECT_EQ(sensitive_strings(given), std::vector<std::string>{"X-17"});
}

TEST(Tofu, TruthRatioAnswerProbabilityAndLeakage) {
  std::vector<Example> ex = {
      {"Who wrote Blue Fire?",
       "Ann Lee wrote it",
       {{"paraphrased_answer", "it was Ann Lee"}, {"perturbed_answer", {"Bo Kim wrote it", "Cy Dunn wrote it"}}}},
      {"When was Ann born?",
       "in 1970",
       {{"paraphrased_answer", "she was born in 1970"}, {"perturbed_answer", {"in 1980", "in 1990"}}}}};
  std::vector<std::string> corpus;
  for (auto& e : ex) corpus.push_back(e.prompt + " " + e.response + " " + e.attrs.dump());
  Tokenizer tok = Tokenizer::from_json(train_bpe_tokenizer(corpus, BpeTrainOptions{300}), "t");
  json j = {{"model_type", "llama"},   {"vocab_size", tok.vocab_size()}, {"hidden_size", 16},
            {"intermediate_size", 32}, {"num_hidden_layers", 1},         {"num_attention_heads", 2}};
  CausalLM model(ModelConfig::from_json(j, "cfg"));
  model->init_weights(5);
  EvalOptions eo;
  eo.max_new_tokens = 4;
  auto comm = make_self_communicator();
  Report r = evaluate_report(model, tok, ChatTemplate::ChatML, {{"forget", ex}}, eo, 64, comm.get());
  const SplitMetrics& m = r.splits[0];
  ASSERT_TRUE(m.has_truth_ratio);
  // R by hand from separate evaluations of the paraphrased and perturbed answers.
  EvalOptions plain = eo;
  plain.generate = false;
  plain.tofu = false;
  double forget_stat = 0, prob = 0;
  for (size_t i = 0; i < ex.size(); ++i) {
    auto para = evaluate_split(model, tok, ChatTemplate::ChatML, "p",
                               {{ex[i].prompt, ex[i].attrs["paraphrased_answer"].get<std::string>(), {}}}, plain, 64);
    double pert = 0;
    for (auto& a : ex[i].attrs["perturbed_answer"])
      pert +=
          evaluate_split(model, tok, ChatTemplate::ChatML, "q", {{ex[i].prompt, a.get<std::string>(), {}}}, plain, 64)
              .mean_nll /
          2;
    double R = std::exp(pert - para.mean_nll);
    EXPECT_NEAR(m.per_item[i].truth_ratio, R, 1e-5 * R);
    forget_stat += std::min(R, 1 / R) / 2;
    prob += std::exp(-m.per_item[i].nll) / 2;
  }
  EXPECT_NEAR(m.truth_ratio_forget, forget_stat, 1e-6);
  EXPECT_NEAR(m.answer_prob, prob, 1e-9);
  // Both answers hold sensitive strings (a name, a number); an untrained model leaks none.
  EXPECT_EQ(m.leakage_items, 2);
  EXPECT_EQ(m.leakage, 0.0);
  json rj = report_json(r.splits, nullptr, json::object());
  EXPECT_EQ(rj["splits"]["forget"]["truth_ratios"].size(), 2u);
}

}  // namespace
}  // namespace lethe
