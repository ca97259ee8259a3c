// The option groups: each flag declared once with its default, read into its struct, and every
// bad or missing option reported together with the option's name.
#include <gtest/gtest.h>

#include "launcher/option_groups.h"

using namespace lethe;

namespace {
// Declares `o`, parses args, reads into the structs; returns the collected problems.
std::vector<std::string> parse(OptionSet& o, std::vector<std::string> args) {
  po::options_description d;
  o.declare(d);
  std::vector<const char*> argv = {"lethe"};
  for (auto& a : args) argv.push_back(a.c_str());
  po::variables_map vm;
  po::store(po::command_line_parser(int(argv.size()), argv.data()).options(d).run(), vm);
  po::notify(vm);
  std::vector<std::string> errors;
  o.read(vm, errors);
  return errors;
}
bool mentions(const std::vector<std::string>& errors, const std::string& what) {
  for (auto& e : errors)
    if (e.find(what) != std::string::npos) return true;
  return false;
}
}  // namespace

TEST(Options, DefaultsAreTheStructs) {
  OptionSet o;
  RuntimeOptions rt;
  TrainOptions t;
  EvalOptions e;
  bind_runtime(o, rt, true, true);
  bind_train(o, t, rt);
  bind_eval(o, e);
  EXPECT_TRUE(parse(o, {}).empty());
  EXPECT_EQ(t.steps, TrainOptions{}.steps);
  EXPECT_EQ(t.schedule.lr, ScheduleOptions{}.lr);
  EXPECT_EQ(e.max_new_tokens, EvalOptions{}.max_new_tokens);
  EXPECT_EQ(t.seed, rt.seed);  // --seed reaches the training loop
  json j = o.to_json();
  EXPECT_EQ(j["train"]["steps"], t.steps);
  EXPECT_EQ(j["runtime"]["seed"], rt.seed);
}

TEST(Options, EveryProblemIsNamedAtOnce) {
  OptionSet o;
  RuntimeOptions rt;
  ModelLoadOptions m;
  TrainOptions t;
  OutputOptions out;
  bind_runtime(o, rt, true, true);
  bind_model(o, m);
  bind_train(o, t, rt);
  bind_output(o, out);
  auto errors = parse(o, {"--steps", "0", "--lr", "-1", "--zero-stage", "5", "--format", "onnx", "--device", "tpu"});
  for (auto* want : {"--model", "--out", "--steps must be positive", "--lr must be positive", "--zero-stage",
                     "--format", "--device"})
    EXPECT_TRUE(mentions(errors, want)) << want;
}

TEST(Options, OutputAndMergeGroupsParseTheirValues) {
  OptionSet o;
  OutputOptions out;
  MergeOptions mo;
  bind_output(o, out);
  bind_merge(o, mo);
  EXPECT_TRUE(parse(o, {"--out", "x", "--format", "hf", "--max-shard-size", "2MB", "--merge", "dare_ties",
                        "--merge.weights", "1,2"})
                  .empty());
  EXPECT_EQ(out.format, CheckpointFormat::kHf);
  EXPECT_EQ(out.max_shard_bytes, 2000000u);
  EXPECT_EQ(mo.method, "dare_ties");
  EXPECT_EQ(mo.weights, (std::vector<double>{1, 2}));
  OptionSet bad;
  MergeOptions mb;
  bind_merge(bad, mb);
  auto errors = parse(bad, {"--merge", "mean", "--merge.weights", "1,x"});
  EXPECT_TRUE(mentions(errors, "unknown merge method 'mean'"));
  EXPECT_TRUE(mentions(errors, "--merge.weights"));
}

TEST(Options, OnlyTheChosenMethodsOptionsAreReadAndStored) {
  OptionSet o;
  MethodChoice m;
  bind_method(o, m);
  EXPECT_TRUE(parse(o, {"--method", "npo", "--npo.beta", "0.5"}).empty());
  ASSERT_NE(m.spec, nullptr);
  EXPECT_EQ(m.options.number("npo.beta"), 0.5);
  json j = o.to_json();
  EXPECT_EQ(j["method"]["method"], "npo");
  EXPECT_EQ(j["method"]["npo.beta"], 0.5);
  EXPECT_FALSE(j["method"].contains("gd.forget-weight"));
  OptionSet bad;
  MethodChoice mb;
  bind_method(bad, mb);
  EXPECT_TRUE(mentions(parse(bad, {"--method", "snap", "--snap.projections", "0"}), "--snap.projections"));
  OptionSet unknown;
  MethodChoice mu;
  bind_method(unknown, mu);
  EXPECT_TRUE(mentions(parse(unknown, {"--method", "bogus"}), "unknown unlearning method 'bogus'"));
}

TEST(Options, NumbersMustBeFiniteAndInRange) {
  // Each of these was once accepted (a negative or infinite learning rate, NaN decay, no answer
  // token left by --max-len 1).
  OptionSet o;
  RuntimeOptions rt;
  TrainOptions t;
  DataOptions d;
  OutputOptions out;
  bind_runtime(o, rt, true, true);
  bind_train(o, t, rt);
  bind_data(o, d);
  bind_output(o, out);
  auto errors = parse(o, {"--out", "x/", "--lr", "inf", "--weight-decay", "nan", "--momentum", "nan", "--max-grad-norm",
                          "nan", "--min-lr-ratio", "-3", "--max-len", "1"});
  for (auto* want : {"--lr must be positive", "--weight-decay must be in", "--momentum must be in",
                     "--max-grad-norm must be in", "--min-lr-ratio must be in", "--max-len must be at least 2"})
    EXPECT_TRUE(mentions(errors, want)) << want;
  EXPECT_EQ(out.out, "x");  // a trailing slash is dropped: "x/" names the directory x
}
