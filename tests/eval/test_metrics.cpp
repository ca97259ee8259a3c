#include "eval/report.h"
#include "eval/rouge.h"
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

}  // namespace
}  // namespace lethe
