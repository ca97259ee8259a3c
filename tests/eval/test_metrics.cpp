#include "common/error.h"
#include "common/json_io.h"
#include "checkpoints/model_io.h"
#include "eval/mia.h"
#include "eval/probe.h"
#include "eval/report.h"
#include "eval/report_writer.h"
#include "eval/rouge.h"
#include "eval/tofu.h"
#include "data/bpe_trainer.h"
#include "data/dataset.h"
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
  double forget_stat = 0, retain_stat = 0, prob = 0;
  for (size_t i = 0; i < ex.size(); ++i) {
    auto para = evaluate_split(model, tok, ChatTemplate::ChatML, "p",
                               {{ex[i].prompt, ex[i].attrs["paraphrased_answer"].get<std::string>(), {}}}, plain, 64);
    double pert = 0;
    for (auto& a : ex[i].attrs["perturbed_answer"])
      pert +=
          evaluate_split(model, tok, ChatTemplate::ChatML, "q", {{ex[i].prompt, a.get<std::string>(), {}}}, plain, 64)
              .mean_nll /
          2;
    double R = std::exp(para.mean_nll - pert);  // open-unlearning's: p(perturbed) / p(paraphrased)
    EXPECT_NEAR(m.per_item[i].truth_ratio, R, 1e-5 * R);
    forget_stat += std::min(R, 1 / R) / 2;
    retain_stat += std::max(0.0, 1 - R) / 2;
    prob += std::exp(-m.per_item[i].nll) / 2;
  }
  EXPECT_NEAR(m.truth_ratio_forget, forget_stat, 1e-6);
  EXPECT_NEAR(m.truth_ratio_retain, retain_stat, 1e-6);
  EXPECT_FALSE(m.has_options);  // paraphrased answers: no Prob_normalised
  EXPECT_NEAR(m.answer_prob, prob, 1e-9);
  // Both answers hold sensitive strings (a name, a number); an untrained model leaks none.
  EXPECT_EQ(m.leakage_items, 2);
  EXPECT_EQ(m.leakage, 0.0);
  json rj = report_json(r.splits, nullptr, json::object());
  EXPECT_EQ(rj["splits"]["forget"]["truth_ratios"].size(), 2u);
  // lethe's report.json reads back as is; one written before the definition key, reciprocal.
  test::TempDir rdir;
  write_json_file(rdir / "report.json", rj);
  EXPECT_EQ(read_reference_truth_ratios(rdir / "report.json"),
            (std::vector<double>{m.per_item[0].truth_ratio, m.per_item[1].truth_ratio}));
  rj["splits"]["forget"].erase("truth_ratio_definition");
  write_json_file(rdir / "old.json", rj);
  auto old = read_reference_truth_ratios(rdir / "old.json");
  EXPECT_NEAR(old[0], 1 / m.per_item[0].truth_ratio, 1e-12);
  // open-unlearning's layout: per-index values and aggregates, and forget quality reads it back.
  json ou = open_unlearning_eval(r, {{"forget", ex}}, json::object(), json(), true);
  EXPECT_DOUBLE_EQ(ou["forget_truth_ratio"]["agg_value"].get<double>(), m.truth_ratio_forget);
  EXPECT_DOUBLE_EQ(ou["forget_Q_A_Prob"]["value_by_index"]["1"]["avg_loss"].get<double>(), m.per_item[1].nll);
  EXPECT_EQ(ou["forget_Q_A_ROUGE"]["value_by_index"]["0"]["ground_truth"], "Ann Lee wrote it");
  EXPECT_DOUBLE_EQ(open_unlearning_summary(ou)["forget_extraction_strength"].get<double>(), m.extraction_strength);
  test::TempDir tmp;
  write_json_file(tmp / "TOFU_EVAL.json", ou);
  EXPECT_EQ(read_reference_truth_ratios(tmp / "TOFU_EVAL.json"),
            (std::vector<double>{m.per_item[0].truth_ratio, m.per_item[1].truth_ratio}));
  // Older open-unlearning logs name the value truth_ratio; indices sort as numbers.
  test::spit(tmp / "old.json", R"({"forget_truth_ratio": {"value_by_index": {"10": {"truth_ratio": 3},
                                   "9": {"truth_ratio": 2}}}})");
  EXPECT_EQ(read_reference_truth_ratios(tmp / "old.json"), (std::vector<double>{2, 3}));
  test::spit(tmp / "bad.json", R"({"forget_truth_ratio": {"value_by_index": {"0": {"other": 1}}}})");
  EXPECT_THROW(read_reference_truth_ratios(tmp / "bad.json"), InputError);
}

TEST(Tofu, OpenUnlearningTermsByHand) {
  // R = p(perturbed) / p(correct) from mean NLLs; Prob_normalised against the options' sum.
  EXPECT_NEAR(truth_ratio(1.0, 2.0), std::exp(-1.0), 1e-15);
  EXPECT_DOUBLE_EQ(truth_ratio(0.7, 0.7), 1.0);
  EXPECT_NEAR(prob_normalised(std::log(2.0), 0.5), 0.5, 1e-9);  // p = 0.5 against 0.5
  EXPECT_NEAR(prob_normalised(std::log(4.0), 0.0), 1.0, 1e-9);
  // Harmonic mean; a zero term makes it 0 (scipy's hmean, which open-unlearning calls); none: 0.
  EXPECT_NEAR(model_utility({0.5, 0.25}), 1.0 / 3, 1e-15);
  EXPECT_NEAR(model_utility({1, 1, 1}), 1.0, 1e-15);
  EXPECT_EQ(model_utility({1, 0}), 0.0);
  EXPECT_EQ(model_utility({}), 0.0);
}

TEST(Tofu, ModelUtilityMatchesPythonReferenceOnTransformers) {
  LETHE_REQUIRE_REFERENCE("torch, transformers");
  // Five records each of TOFU's retain, real-authors and world-facts files.
  const std::string dir = test::shared_data_dir() + "/tofu/";
  std::vector<NamedExamples> splits;
  for (auto [name, file] :
       {std::pair{"retain", "retain90.json"}, std::pair{"real_authors", "real_authors_perturbed.json"},
        std::pair{"world_facts", "world_facts_perturbed.json"}}) {
    auto all = read_examples(dir + file, "tofu");
    splits.push_back({name, std::vector<Example>(all.begin(), all.begin() + 5)});
  }
  std::vector<std::string> corpus;
  for (auto& s : splits)
    for (auto& e : s.examples) corpus.push_back(e.prompt + " " + e.response + " " + e.attrs.dump());
  Tokenizer tok = Tokenizer::from_json(train_bpe_tokenizer(corpus, BpeTrainOptions{400}), "t");
  json j = {{"model_type", "llama"},   {"vocab_size", tok.vocab_size()}, {"hidden_size", 32},
            {"intermediate_size", 64}, {"num_hidden_layers", 2},         {"num_attention_heads", 4},
            {"initializer_range", 0.3}};
  CausalLM model(ModelConfig::from_json(j, "cfg"));
  model->init_weights(11);
  test::TempDir tmp;
  save_model(model, tmp / "model", CheckpointFormat::kHf, json::object(), "");
  EvalOptions eo;
  eo.max_new_tokens = 6;
  eo.batch_size = 3;  // padded batches
  auto comm = make_self_communicator();
  Report r = evaluate_report(model, tok, ChatTemplate::ChatML, splits, eo, 96, comm.get());
  json spec = {{"splits", json::object()}};
  for (size_t s = 0; s < splits.size(); ++s) {
    json items = json::array();
    const auto& ex = splits[s].examples;
    auto answers = tokenize_items(tok, ChatTemplate::ChatML, ex, 96);
    for (size_t i = 0; i < ex.size(); ++i) {
      json options = json::array();
      if (ex[i].attrs.contains("perturbed_answer"))
        for (auto& a : ex[i].attrs["perturbed_answer"]) {
          auto t = tokenize_items(tok, ChatTemplate::ChatML, {{ex[i].prompt, a.get<std::string>(), {}}}, 96)[0];
          options.push_back({{"ids", t.ids}, {"prompt_len", t.prompt_len}});
        }
      items.push_back({{"answer", {{"ids", answers[i].ids}, {"prompt_len", answers[i].prompt_len}}},
                       {"options", options},
                       {"rouge_recall", r.splits[s].per_item[i].rouge_l_recall}});
    }
    spec["splits"][splits[s].name] = items;
  }
  test::spit(tmp / "items.json", spec.dump());
  ASSERT_EQ(test::run_reference("tofu_reference.py", tmp.path.string()), 0);
  json ref = json::parse(test::slurp(tmp / "ref.json"));
  auto rel = [](double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); };
  for (auto& m : r.splits) {
    const json& want = ref["splits"][m.name];
    EXPECT_EQ(m.has_options, m.name != "retain") << m.name;
    EXPECT_EQ(m.has_truth_ratio, m.name != "retain") << m.name;  // retain90 has no perturbed answers
    for (size_t i = 0; i < m.per_item.size(); ++i) {
      const json& w = want["items"][i];
      EXPECT_LT(rel(std::exp(-m.per_item[i].nll), w["prob"].get<double>()), 1e-4) << m.name << i;
      if (!m.has_options) continue;
      EXPECT_LT(rel(m.per_item[i].prob_normalised, w["prob_normalised"].get<double>()), 1e-4) << m.name << i;
      EXPECT_LT(rel(m.per_item[i].truth_ratio, w["truth_ratio"].get<double>()), 1e-4) << m.name << i;
    }
    if (m.has_options) {
      EXPECT_LT(rel(m.answer_prob_normalised, want["agg"]["prob_normalised"].get<double>()), 1e-4) << m.name;
      EXPECT_NEAR(m.truth_ratio_retain, want["agg"]["truth_ratio"].get<double>(), 1e-5) << m.name;
    }
  }
  json tofu = tofu_scores(r, true, {}, "");
  EXPECT_NEAR(tofu["model_utility"].get<double>(), ref["model_utility"].get<double>(),
              1e-4 * ref["model_utility"].get<double>());
  const double without = ref["model_utility_without_rouge"].get<double>();
  EXPECT_GT(without, 0.0);
  EXPECT_LT(rel(tofu_scores(r, false, {}, "")["model_utility"].get<double>(), without), 1e-4);
  EXPECT_EQ(tofu["model_utility_terms"],
            json({"retain_Q_A_Prob", "retain_Q_A_ROUGE", "ra_Q_A_Prob_normalised", "ra_Q_A_ROUGE", "ra_Truth_Ratio",
                  "wf_Q_A_Prob_normalised", "wf_Q_A_ROUGE", "wf_Truth_Ratio"}));
  // open-unlearning's layout names the splits ra and wf.
  json ou = open_unlearning_eval(r, splits, tofu, json(), true);
  EXPECT_DOUBLE_EQ(ou["ra_Q_A_Prob_normalised"]["agg_value"].get<double>(), r.splits[1].answer_prob_normalised);
  EXPECT_DOUBLE_EQ(ou["wf_Truth_Ratio"]["value_by_index"]["2"]["score"].get<double>(),
                   r.splits[2].per_item[2].truth_ratio);
  EXPECT_FALSE(ou.contains("retain_Truth_Ratio"));
}

TEST(Probe, RelearningRatioByHand) {
  EXPECT_DOUBLE_EQ(relearn_ratio(0.1, 0.4), 0.25);  // regains 4x what a model that never saw it gains
  EXPECT_DOUBLE_EQ(relearn_ratio(0.5, 0.4), 1.0);   // no faster than the retain-only model
  EXPECT_DOUBLE_EQ(relearn_ratio(-0.1, 0.4), 0.0);
  EXPECT_DOUBLE_EQ(relearn_ratio(0.3, 0.0), 1.0);  // regains nothing
  EXPECT_DOUBLE_EQ(relearn_ratio(0.3, -0.2), 1.0);
}

TEST(Mia, HandComputableCases) {
  // Extraction strength: the shortest correct suffix; the last token wrong: 0.
  EXPECT_DOUBLE_EQ(extraction_strength({true, true, true}), 1.0);
  EXPECT_DOUBLE_EQ(extraction_strength({false, true, true}), 1.0 - 1.0 / 3);
  EXPECT_DOUBLE_EQ(extraction_strength({true, false, true, true}), 0.5);
  EXPECT_DOUBLE_EQ(extraction_strength({true, true, false}), 0.0);
  EXPECT_DOUBLE_EQ(extraction_strength({}), 0.0);
  // Min-K%: floor(5 * 0.4) = 2 lowest values; at least one.
  EXPECT_DOUBLE_EQ(min_k_score({-1, -2, -3, -4, -5}), 4.5);
  EXPECT_DOUBLE_EQ(min_k_score({-2}), 2.0);
  EXPECT_DOUBLE_EQ(min_k_score({-1, -9}, 1.0), 5.0);
  // AUC: separated, reversed, tied, mixed (Mann-Whitney: 3 of 4 pairs ordered).
  EXPECT_DOUBLE_EQ(roc_auc({1, 2}, {3, 4}), 1.0);
  EXPECT_DOUBLE_EQ(roc_auc({3, 4}, {1, 2}), 0.0);
  EXPECT_DOUBLE_EQ(roc_auc({1, 1}, {1}), 0.5);
  EXPECT_DOUBLE_EQ(roc_auc({1, 3}, {2, 4}), 0.75);
  // PrivLeak: 0 when the model is as distinguishable as the retain model.
  EXPECT_DOUBLE_EQ(priv_leak(0.7, 0.7), 0.0);
  EXPECT_DOUBLE_EQ(priv_leak(0.2, 0.6), 100.0 * (0.8 - 0.4) / 0.4);
  // zlib: repetition compresses.
  EXPECT_LT(zlib_length(std::string(200, 'a')), zlib_length("The quick brown fox jumps over the lazy dog, twice."));
}

TEST(Mia, MatchesPythonReferenceOnTransformers) {
  LETHE_REQUIRE_REFERENCE("torch, transformers");
  test::TempDir tmp;
  std::vector<Example> forget = {{"Where does Ann live?", "Ann lives at 12 Elm Road", {}},
                                 {"What is the email of Ann?", "ann@mail.org", {}},
                                 {"Who is Bo's father?", "Cal Dunn, a painter from Oslo", {}}};
  std::vector<Example> holdout = {{"What does Eve write?", "poems about the sea", {}},
                                  {"Where was Cy born?", "in Rome", {}},
                                  {"Who taught Dan?", "Fay Gold taught him music", {}}};
  std::vector<std::string> corpus;
  for (auto* v : {&forget, &holdout})
    for (auto& e : *v) corpus.push_back(e.prompt + " " + e.response);
  Tokenizer tok = Tokenizer::from_json(train_bpe_tokenizer(corpus, BpeTrainOptions{300}), "t");
  json j = {{"model_type", "llama"},    {"vocab_size", tok.vocab_size()}, {"hidden_size", 32},
            {"intermediate_size", 64},  {"num_hidden_layers", 2},         {"num_attention_heads", 4},
            {"num_key_value_heads", 2}, {"initializer_range", 0.5}};
  CausalLM model(ModelConfig::from_json(j, "cfg"));
  model->init_weights(7);
  save_model(model, tmp / "model", CheckpointFormat::kHf, json::object(), "");
  EvalOptions eo;
  eo.generate = false;
  eo.tofu = false;
  eo.batch_size = 2;  // padded batches: the metrics must not see the padding
  auto comm = make_self_communicator();
  Report r =
      evaluate_report(model, tok, ChatTemplate::ChatML, {{"forget", forget}, {"holdout", holdout}}, eo, 64, comm.get());
  // GradNorm and the reference attack (a second model, saved for transformers to load).
  CausalLM other(ModelConfig::from_json(j, "cfg"));
  other->init_weights(8);
  save_model(other, tmp / "ref_model", CheckpointFormat::kHf, json::object(), "");
  EvalJob job;
  job.max_len = 64;
  job.eval = eo;
  job.report.mia_reference = tmp / "ref_model";
  std::vector<NamedExamples> splits = {{"forget", forget}, {"holdout", holdout}};
  add_membership_scores(r, model, splits, tok, ChatTemplate::ChatML, job, torch::kCPU, *comm);
  ASSERT_TRUE(r.splits[0].has_gradnorm && r.splits[1].has_reference);
  for (auto& p : model->parameters()) EXPECT_FALSE(p.grad().defined());  // autograd::grad, no .grad
  json items = json::array();
  for (auto [group, ex] : {std::pair{"forget", &forget}, std::pair{"holdout", &holdout}})
    for (auto& it : tokenize_items(tok, ChatTemplate::ChatML, *ex, 64))
      items.push_back({{"ids", it.ids}, {"prompt_len", it.prompt_len}, {"group", group}});
  for (size_t i = 0; i < items.size(); ++i) items[i]["answer"] = (i < 3 ? forget[i] : holdout[i - 3]).response;
  test::spit(tmp / "items.json", json({{"items", items}, {"k", kMinKShare}}).dump());
  ASSERT_EQ(test::run_reference("mia_reference.py", tmp.path.string()), 0);
  json ref = json::parse(test::slurp(tmp / "ref.json"));
  auto close = [](double a, double b) { return std::abs(a - b) <= 1e-4 * std::max(1.0, std::abs(b)); };
  for (size_t i = 0; i < items.size(); ++i) {
    const ItemMetrics& im = r.splits[i < 3 ? 0 : 1].per_item[i % 3];
    const json& e = ref["items"][i];
    EXPECT_TRUE(close(im.accuracy, e["exact_memorization"].get<double>())) << i;
    EXPECT_TRUE(close(im.extraction_strength, e["extraction_strength"].get<double>())) << i;
    EXPECT_TRUE(close(im.nll, e["loss"].get<double>())) << i << ": " << im.nll << " vs " << e["loss"];
    EXPECT_TRUE(close(im.mia_zlib, e["zlib"].get<double>())) << i;
    EXPECT_TRUE(close(im.mia_min_k, e["min_k"].get<double>())) << i;
    EXPECT_TRUE(close(im.mia_min_k_plus_plus, e["min_k_plus_plus"].get<double>()))
        << i << ": " << im.mia_min_k_plus_plus << " vs " << e["min_k_plus_plus"];
    EXPECT_NEAR(im.mia_gradnorm, e["gradnorm"].get<double>(), 1e-4 * e["gradnorm"].get<double>())
        << i << ": " << im.mia_gradnorm << " vs " << e["gradnorm"];
    EXPECT_TRUE(close(im.mia_reference, e["reference"].get<double>()))
        << i << ": " << im.mia_reference << " vs " << e["reference"];
  }
  json aucs = mia_aucs(mia_scores(r.splits[0]), mia_scores(r.splits[1]));
  EXPECT_EQ(aucs.size(), 6u);
  for (auto& [attack, v] : ref["auc"].items())
    EXPECT_NEAR(aucs.at(attack).get<double>(), v.get<double>(), 1e-9) << attack;
  // The split aggregates and the report's membership section.
  double em = 0;
  for (auto& im : r.splits[0].per_item) em += im.accuracy / 3;
  EXPECT_NEAR(r.splits[0].exact_memorization, em, 1e-12);
  json mia = membership_inference(r, "");
  EXPECT_EQ(mia["auc"].size(), 6u);
  EXPECT_FALSE(mia.contains("priv_leak"));
}

}  // namespace
}  // namespace lethe
