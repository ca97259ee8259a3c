// Objectives on hand-computable cases and the training loop end to end on a tiny model.
#include "common/error.h"
#include "data/bpe_trainer.h"
#include "dist/process_groups.h"
#include "eval/evaluate.h"
#include "unlearn/objective.h"
#include "unlearn/trainer.h"
#include "tests/test_util.h"
#include "tests/unlearn/objective_options.h"

namespace lethe {
namespace {

// A one-layer model whose logits we can reason about is overkill: compare each objective's
// loss with the NLL computed directly from the same forward pass.
struct Fixture {
  CausalLM model{nullptr};
  Batch forget, retain;
  Fixture() {
    json j = {{"model_type", "llama"},   {"vocab_size", 30},       {"hidden_size", 16},
              {"intermediate_size", 32}, {"num_hidden_layers", 1}, {"num_attention_heads", 2}};
    model = CausalLM(ModelConfig::from_json(j, "cfg"));
    model->init_weights(11);
    std::vector<TokenizedItem> f = {{{1, 2, 3, 4, 5}, 2}, {{6, 7, 8}, 1}}, r = {{{9, 10, 11, 12}, 2}};
    forget = collate(f, {0, 1}, 0);
    retain = collate(r, {0}, 0);
  }
  double nll(const Batch& b) {
    torch::NoGradGuard ng;
    return item_mean_nll(token_loss(model->forward(b.input_ids, b.attention_mask), b.labels)).mean().item<double>();
  }
};

TEST(Objectives, GradientAscentIsNegatedNll) {
  Fixture fx;
  auto obj = find_objective("ga").make(test::objective_options(find_objective("ga"), {}));
  EXPECT_FALSE(obj->uses_retain());
  auto out = obj->compute(fx.model, fx.forget, nullptr);
  EXPECT_NEAR(out.loss.item<double>(), -fx.nll(fx.forget), 1e-6);
}

TEST(Objectives, GradientDifferenceWeighsBothTerms) {
  Fixture fx;
  const auto& spec = find_objective("gd");
  auto obj = spec.make(test::objective_options(spec, {"--gd.forget-weight", "0.5", "--gd.retain-weight", "2"}));
  EXPECT_TRUE(obj->uses_retain());
  auto out = obj->compute(fx.model, fx.forget, &fx.retain);
  EXPECT_NEAR(out.loss.item<double>(), -0.5 * fx.nll(fx.forget) + 2.0 * fx.nll(fx.retain), 1e-6);
  EXPECT_NEAR(out.parts["retain_nll"], fx.nll(fx.retain), 1e-6);
}

TEST(Objectives, UnknownMethodIsNamed) {
  try {
    find_objective("nope");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'nope'"), std::string::npos);
  }
}

TEST(Objectives, EveryDeclarationFileDescribesARegisteredMethodThatBuildsWithItsDefaults) {
  // unlearn/<name>.method.json is embedded; each names its own method, prefixes its options
  // with the method's name and builds with the defaults it declares.
  const auto& texts = method_declaration_texts();
  EXPECT_EQ(texts.size(), objective_registry().size() + 1);  // + nll, the finetuning objective
  for (auto& [name, text] : texts) {
    MethodDeclaration d = method_declaration(name);
    EXPECT_EQ(d.name, name);
    EXPECT_FALSE(d.summary.empty()) << name;
    for (auto& o : d.options) EXPECT_EQ(o.name.rfind(name + ".", 0), 0u) << o.name;
  }
  for (auto& spec : objective_registry()) {
    EXPECT_EQ(spec.summary, method_declaration(spec.name).summary);
    EXPECT_NO_THROW(spec.make()) << spec.name;
  }
  // The default's JSON type is the option's type: 1.0 stays a number, 3 a count.
  MethodOptions memflex(method_declaration("memflex").options);
  EXPECT_TRUE(memflex.values()["memflex.retain-weight"].is_number_float());
  EXPECT_EQ(memflex.integer("memflex.copies"), 3);
  EXPECT_EQ(memflex.number("memflex.sigma"), 6e-4);
}

// The run identity samples 1024 elements of every tensor at float32 positions: above 2^24
// elements the last position rounded past the end (every 1B model's embeddings failed).
TEST(Trainer, TrainsAModelWithATensorAbove2Pow24Elements) {
  json j = {{"model_type", "llama"},  {"vocab_size", 65601},      {"hidden_size", 256},      {"intermediate_size", 8},
            {"num_hidden_layers", 1}, {"num_attention_heads", 1}, {"num_key_value_heads", 1}};
  CausalLM model(ModelConfig::from_json(j, "cfg"));
  ASSERT_GT(model->model->embed_tokens->weight.numel(), int64_t(1) << 24);
  model->init_weights(1);
  std::vector<TokenizedItem> items = {{{1, 2, 65600, 4}, 1}, {{5, 6, 7}, 1}};
  TrainOptions to;
  to.steps = 1;
  to.batch_size = 2;
  to.log_every = 1000;
  auto nll = nll_objective_spec().make({});
  auto self = make_self_communicator();
  EXPECT_EQ(train_loop(model, *nll, items, nullptr, to, 0, {}, *self).steps_done, 1);
}

TEST(Trainer, FinetuneLearnsAndGdForgetsWhileKeeping) {
  // Two facts to keep and two to forget on a tiny model: finetune learns all four, gradient
  // difference then drives the forget items' accuracy down while the retain items stay.
  json tj = train_bpe_tokenizer({"alpha beta gamma delta", "one two three four"}, BpeTrainOptions{300});
  Tokenizer tok = Tokenizer::from_json(tj, "t");
  std::vector<Example> keep = {{"Color of sky?", "blue sky", {}}, {"Color of grass?", "green grass", {}}};
  std::vector<Example> drop = {{"Secret one?", "alpha beta", {}}, {"Secret two?", "gamma delta", {}}};
  json j = {{"model_type", "llama"},   {"vocab_size", tok.vocab_size()}, {"hidden_size", 32},
            {"intermediate_size", 64}, {"num_hidden_layers", 2},         {"num_attention_heads", 4},
            {"num_key_value_heads", 2}};
  CausalLM model(ModelConfig::from_json(j, "cfg"));
  model->init_weights(1);
  auto all = keep;
  all.insert(all.end(), drop.begin(), drop.end());
  auto items = tokenize_items(tok, ChatTemplate::ChatML, all, 64);
  TrainOptions to;
  to.steps = 80;
  to.batch_size = 4;
  to.schedule.lr = 1e-2;
  to.schedule.kind = "constant";
  to.log_every = 1000;
  auto nll = nll_objective_spec().make({});
  auto self = make_self_communicator();
  train_loop(model, *nll, items, nullptr, to, 0, {}, *self);
  EvalOptions eo;
  eo.generate = false;
  auto acc = [&](const std::vector<Example>& ex) {
    return evaluate_split(model, tok, ChatTemplate::ChatML, "s", ex, eo, 64).accuracy;
  };
  ASSERT_GT(acc(keep), 0.99);
  ASSERT_GT(acc(drop), 0.99);
  auto fi = tokenize_items(tok, ChatTemplate::ChatML, drop, 64),
       ri = tokenize_items(tok, ChatTemplate::ChatML, keep, 64);
  std::map<std::string, torch::Tensor> snapshot;
  for (auto& [n, p] : model->named_weights()) snapshot[n] = p.detach().clone();
  to.steps = 15;
  to.schedule.lr = 3e-3;
  std::map<std::string, double> kept;
  for (std::string method : {"ga", "gd"}) {
    model->load_weights(snapshot, "snapshot");
    const auto& spec = find_objective(method);
    auto obj = spec.make(test::objective_options(spec, {}));
    TrainResult res = train_loop(model, *obj, fi, &ri, to, 0, {}, *self);
    EXPECT_EQ(res.steps_done, 15);
    EXPECT_LT(acc(drop), 0.5) << method;
    kept[method] = acc(keep);
  }
  // The retain term is what keeps the other facts: GD keeps clearly more than GA.
  EXPECT_GT(kept["gd"], kept["ga"] + 0.2);
  EXPECT_GT(kept["gd"], 0.7);
}

}  // namespace
}  // namespace lethe
