#include "common/error.h"
#include "common/json_io.h"
#include "tests/test_util.h"
#include "unlearn/selection.h"

namespace lethe {
namespace {

json record(int64_t step, double fq, double mu, double mem) {
  return {{"step", step},
          {"forget", {{"exact_memorization", mem}, {"mean_nll", 1.0 / double(step)}}},
          {"forget_quality", fq},
          {"model_utility", mu},
          {"fq_mu", 2 / (1 / fq + 1 / mu)}};
}

TEST(Selection, BestKeepsTheMaximumAndTheEarlierOfTies) {
  SelectOptions o;
  o.rule = "best";
  o.criterion = "model_utility";
  Selector s(o, {"forget", "retain"}, 2);
  std::vector<json> recs = {record(2, 0.1, 0.5, 0.9), record(4, 0.2, 0.7, 0.8), record(6, 0.3, 0.7, 0.7),
                            record(8, 0.4, 0.6, 0.6)};
  std::vector<bool> kept;
  for (auto& r : recs) {
    EvalVerdict v = s.consider(r["step"].get<int64_t>(), r);
    EXPECT_FALSE(v.stop);
    kept.push_back(v.keep);
  }
  EXPECT_EQ(kept, (std::vector<bool>{true, true, false, false}));  // 0.7 at 6 ties 4: the earlier stays
  EXPECT_EQ(s.summary()["kept_step"], 4);
  EXPECT_DOUBLE_EQ(s.summary()["value"].get<double>(), 0.7);
  EXPECT_DOUBLE_EQ(recs[2]["selection_value"].get<double>(), 0.7);
  // "-" minimises; a dotted path reaches into a split.
  o.criterion = "-forget.exact_memorization";
  Selector m(o, {"forget"}, 2);
  for (auto& r : recs) m.consider(r["step"].get<int64_t>(), r);
  EXPECT_EQ(m.summary()["kept_step"], 8);
  EXPECT_DOUBLE_EQ(m.summary()["value"].get<double>(), 0.6);
  // The memory survives a checkpoint: a restored selector does not keep a worse step.
  Selector r2(o, {"forget"}, 2);
  r2.restore(m.state());
  json worse = record(10, 0.1, 0.1, 0.65);
  EXPECT_FALSE(r2.consider(10, worse).keep);
  EXPECT_EQ(r2.summary()["kept_step"], 8);
}

TEST(Selection, MuseStopsAtTheFirstStepAtOrBelowTheReference) {
  test::TempDir tmp;
  write_json_file(tmp / "ref.json", json{{"splits", {{"forget", {{"exact_memorization", 0.7}}}}}});
  SelectOptions o;
  o.rule = "muse";
  o.reference = tmp / "ref.json";
  Selector s(o, {"forget"}, 1);
  json a = record(1, 0.1, 0.5, 0.9), b = record(2, 0.1, 0.5, 0.7);
  EvalVerdict va = s.consider(1, a), vb = s.consider(2, b);
  EXPECT_FALSE(va.keep || va.stop);
  EXPECT_TRUE(vb.keep && vb.stop);  // 0.7 <= 0.7
  EXPECT_EQ(s.summary()["kept_step"], 2);
  EXPECT_TRUE(s.summary()["reached"].get<bool>());
  // open-unlearning's layout gives the same threshold.
  write_json_file(tmp / "TOFU_EVAL.json", json{{"forget_exact_memorization", {{"agg_value", 0.7}}}});
  o.reference = tmp / "TOFU_EVAL.json";
  EXPECT_DOUBLE_EQ(Selector(o, {"forget"}, 1).summary()["reference_memorization"].get<double>(), 0.7);
}

TEST(Selection, RefusesWhatItCannotDo) {
  SelectOptions o;
  o.rule = "best";
  EXPECT_THROW(Selector(o, {"forget", "retain"}, 0), InputError);  // no --eval-every
  EXPECT_THROW(Selector(o, {"retain"}, 2), InputError);            // no forget split
  EXPECT_THROW(Selector(o, {"forget", "retain"}, 2), InputError);  // fq_mu without a reference
  o.rule = "muse";
  EXPECT_THROW(Selector(o, {"forget"}, 2), InputError);  // no reference
  o.rule = "first";
  EXPECT_THROW(Selector(o, {"forget"}, 2), InputError);
  o.rule = "best";
  o.criterion = "forget.nope";
  Selector s(o, {"forget"}, 2);
  json r = record(2, 0.1, 0.2, 0.3);
  try {
    s.consider(2, r);
    FAIL() << "an unknown criterion was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("the evaluation has no 'nope' (it has: exact_memorization, mean_nll)"),
              std::string::npos)
        << e.what();
  }
  o.rule = "last";
  EXPECT_FALSE(Selector(o, {}, 0).active());
}

}  // namespace
}  // namespace lethe
