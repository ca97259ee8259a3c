#include "common/error.h"
#include "model/generate.h"
#include "model/llama.h"
#include "model/lm_loss.h"
#include "tests/test_util.h"

namespace lethe {
namespace {

ModelConfig tiny(bool tied = false, int64_t kv = 2) {
  json j = {{"model_type", "llama"},
            {"vocab_size", 50},
            {"hidden_size", 32},
            {"intermediate_size", 64},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"num_key_value_heads", kv},
            {"tie_word_embeddings", tied},
            {"max_position_embeddings", 64},
            {"initializer_range", 0.3}};
  return ModelConfig::from_json(j, "tiny");
}

TEST(ModelConfig, RejectsBadConfigsWithTheFieldNamed) {
  json j = {{"model_type", "gpt2"}};
  try {
    ModelConfig::from_json(j, "cfg.json");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("model_type 'gpt2'"), std::string::npos);
  }
  json k = {{"model_type", "llama"}, {"vocab_size", 10}, {"hidden_size", 8}};
  try {
    ModelConfig::from_json(k, "cfg.json");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("intermediate_size"), std::string::npos);
  }
  json g = tiny().to_json();
  g["num_key_value_heads"] = 3;
  EXPECT_THROW(ModelConfig::from_json(g, "cfg.json"), InputError);
}

TEST(ModelConfig, ParameterCountMatchesTheModel) {
  for (bool tied : {false, true}) {
    ModelConfig c = tiny(tied);
    CausalLM m(c);
    int64_t n = 0;
    for (auto& [name, p] : m->named_weights()) n += p.numel();
    EXPECT_EQ(n, c.num_parameters());
  }
}

TEST(Model, HuggingFaceParameterNames) {
  CausalLM m(tiny());
  std::set<std::string> names;
  for (auto& [n, p] : m->named_weights()) names.insert(n);
  for (auto* n : {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                  "model.layers.1.self_attn.o_proj.weight", "model.layers.0.mlp.gate_proj.weight",
                  "model.layers.1.mlp.down_proj.weight", "model.layers.0.input_layernorm.weight",
                  "model.layers.0.post_attention_layernorm.weight", "model.norm.weight", "lm_head.weight"})
    EXPECT_TRUE(names.count(n)) << n;
  CausalLM tied(tiny(true));
  for (auto& [n, p] : tied->named_weights()) EXPECT_NE(n, "lm_head.weight");
}

TEST(Model, KvCacheDecodingEqualsFullForward) {
  CausalLM m(tiny());
  m->init_weights(1);
  m->eval();
  torch::NoGradGuard ng;
  auto ids = torch::randint(0, 50, {1, 9}, torch::kLong);
  auto full = m->forward(ids);
  KVCache cache;
  auto a = m->forward(ids.narrow(1, 0, 5), {}, &cache);
  auto b = m->forward(ids.narrow(1, 5, 4), {}, &cache);
  EXPECT_LT(test::rel_error(torch::cat({a, b}, 1), full), 1e-5);
  // Greedy generation picks the argmax of the full forward at every step.
  std::vector<int64_t> prompt = {3, 7, 11};
  auto gen = greedy_generate(m, prompt, 6, {});
  ASSERT_EQ(gen.size(), 6u);
  std::vector<int64_t> seq = prompt;
  for (auto tok : gen) {
    auto lg = m->forward(torch::tensor(seq, torch::kLong).view({1, -1}));
    EXPECT_EQ(lg[0][-1].argmax().item<int64_t>(), tok);
    seq.push_back(tok);
  }
}

// Left-padded prompts decoded together give each row what it gives alone (a GQA model, a
// sliding-window one, and prompts of 1 to 9 tokens, one empty).
TEST(Model, BatchedGreedyGenerationEqualsOneAtATime) {
  for (int64_t window : {int64_t(0), int64_t(4)}) {
    ModelConfig c = tiny();
    if (window > 0) c.layer_window.assign(size_t(c.num_hidden_layers), window), c.sliding_window = window;
    CausalLM m(c);
    m->init_weights(11);
    m->eval();
    std::vector<std::vector<int64_t>> prompts = {{3, 7, 11}, {5}, {}, {9, 1, 4, 4, 8, 2, 6, 30, 41}, {12, 13}};
    const std::vector<int64_t> stops = {17};
    auto batched = greedy_generate_batch(m, prompts, 8, stops);
    ASSERT_EQ(batched.size(), prompts.size());
    size_t tokens = 0;
    for (size_t i = 0; i < prompts.size(); ++i) {
      EXPECT_EQ(batched[i], greedy_generate(m, prompts[i], 8, stops)) << "prompt " << i << " window " << window;
      tokens += batched[i].size();
    }
    EXPECT_TRUE(batched[2].empty());
    EXPECT_GT(tokens, 8u);
  }
}

TEST(Model, PaddingDoesNotChangeValidPositions) {
  CausalLM m(tiny());
  m->init_weights(2);
  torch::NoGradGuard ng;
  auto ids = torch::randint(0, 50, {1, 6}, torch::kLong);
  auto padded = torch::cat({ids, torch::zeros({1, 3}, torch::kLong)}, 1);
  auto mask = torch::cat({torch::ones({1, 6}, torch::kLong), torch::zeros({1, 3}, torch::kLong)}, 1);
  auto a = m->forward(ids), b = m->forward(padded, mask).narrow(1, 0, 6);
  EXPECT_LT(test::rel_error(b, a), 1e-5);
}

TEST(Model, LayerOutputIsThatLayersHiddenStateAndRunsNothingAfterIt) {
  CausalLM m(tiny());
  m->init_weights(4);
  torch::NoGradGuard ng;
  auto ids = torch::randint(0, 50, {2, 6}, torch::kLong);
  auto mask = torch::ones({2, 6}, torch::kLong);
  mask[1][5] = 0;
  std::vector<torch::Tensor> hs;
  m->forward(ids, mask, nullptr, &hs);
  ASSERT_EQ(hs.size(), size_t(m->config.num_hidden_layers));
  for (int64_t l = 0; l < m->config.num_hidden_layers; ++l) {
    EXPECT_TRUE(torch::equal(m->layer_output(ids, mask, l), hs[size_t(l)])) << "layer " << l;
  }
  int64_t runs = 0;  // the layers that ran for layer 0's output
  m->layer_runner = [&](int64_t layer, const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& am, KVCache* cache) {
    ++runs;
    return m->model->layers[size_t(layer)](x, cos, sin, am, cache, layer);
  };
  m->layer_output(ids, mask, 0);
  m->layer_runner = nullptr;
  EXPECT_EQ(runs, 1);
  EXPECT_THROW(m->layer_output(ids, mask, m->config.num_hidden_layers), c10::Error);
}

TEST(Model, LoraStartsAsIdentityAndMergesExactly) {
  CausalLM m(tiny());
  m->init_weights(3);
  auto ids = torch::randint(0, 50, {2, 7}, torch::kLong);
  torch::Tensor before;
  {
    torch::NoGradGuard ng;
    before = m->forward(ids);
  }
  LoraOptions lo;
  lo.rank = 4;
  lo.dropout = 0.0;
  lo.seed = 9;
  m->add_lora(lo);
  CausalLM twin(tiny());  // the same seed gives the same adapters (every rank must agree)
  twin->add_lora(lo);
  auto a = m->named_parameters(), b = twin->named_parameters();
  for (auto& item : a)
    if (item.key().find("lora_A") != std::string::npos) {
      EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key();
    }
  int64_t trainable = 0;
  for (auto& p : m->trainable_parameters()) trainable += p.numel();
  EXPECT_EQ(trainable, 2 * (4 * (32 + 32) * 2 + 4 * (32 + 16) * 2 + 3 * 4 * (32 + 64)));  // A and B per target
  torch::NoGradGuard ng;
  EXPECT_LT(test::rel_error(m->forward(ids), before), 1e-6);
  for (auto& [name, lin] : m->linear_layers())
    if (lin->has_lora()) lin->lora_B->weight.normal_(0, 0.1);
  m->eval();
  auto adapted = m->forward(ids);
  EXPECT_GT(test::rel_error(adapted, before), 1e-3);
  m->merge_lora();
  for (auto& [n, p] : m->named_weights()) EXPECT_EQ(n.find("lora"), std::string::npos) << n;
  EXPECT_LT(test::rel_error(m->forward(ids), adapted), 1e-5);
}

TEST(Model, Bf16ForwardTracksFp32) {
  CausalLM m(tiny());
  m->init_weights(4);
  torch::NoGradGuard ng;
  auto ids = torch::randint(0, 50, {2, 8}, torch::kLong);
  auto ref = m->forward(ids);
  m->to(torch::kBFloat16);
  auto low = m->forward(ids).to(torch::kFloat);
  EXPECT_LT(test::rel_error(low, ref), 5e-2);  // bf16 has 8 mantissa bits
}

TEST(Model, Llama3RopeScalingKeepsHighFrequencies) {
  ModelConfig c = tiny();
  auto plain = rope_inv_freq(c);
  c.rope_scaling.type = "llama3";
  c.rope_scaling.factor = 8;
  c.rope_scaling.original_max_position_embeddings = 16;
  auto scaled = rope_inv_freq(c);
  // Longest wavelength (> 16): divided by the factor. Shortest (2*pi, between 16/4 and 16):
  // interpolated between the two. The parity test checks every value against Python.
  EXPECT_NEAR(scaled[-1].item<float>(), plain[-1].item<float>() / 8, 1e-9);
  EXPECT_LT(scaled[0].item<float>(), plain[0].item<float>());
  EXPECT_GT(scaled[0].item<float>(), plain[0].item<float>() / 8);
  c.rope_scaling.original_max_position_embeddings = 8192;  // now 2*pi < 8192/4: kept as is
  EXPECT_FLOAT_EQ(rope_inv_freq(c)[0].item<float>(), plain[0].item<float>());
}

TEST(Loss, AnswerMaskedNllAndAccuracy) {
  // Two positions predict labels; uniform logits give NLL log(V) everywhere.
  auto logits = torch::zeros({1, 4, 5});
  logits[0][1][3] = 10;  // position 1 predicts label at 2 = 3: correct
  auto labels = torch::tensor({-100, -100, 3, 1}, torch::kLong).view({1, 4});
  TokenLoss tl = token_loss(logits, labels, /*with_accuracy=*/true);
  EXPECT_EQ(tl.mask.sum().item<float>(), 2);
  EXPECT_EQ(tl.correct.sum().item<float>(), 1);
  double nll3 = -std::log(std::exp(10.0) / (std::exp(10.0) + 4)), nll_uniform = std::log(5.0);
  EXPECT_NEAR(item_mean_nll(tl)[0].item<double>(), (nll3 + nll_uniform) / 2, 1e-5);
  EXPECT_NEAR(item_sum_nll(tl)[0].item<double>(), nll3 + nll_uniform, 1e-5);
}

// vocab_nll against log_softmax over materialised logits: values, gradients of h and W under a
// per-row upstream weight, every chunking and both backward modes (kept gradient / recomputed).
TEST(Loss, ChunkedVocabNllEqualsFullLogSoftmax) {
  torch::manual_seed(3);
  const int64_t N = 37, C = 16, V = 53;
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    auto h0 = torch::randn({N, C}).to(dtype), W0 = (torch::randn({V, C}) * 0.5).to(dtype);
    auto t = torch::randint(0, V, {N}, torch::kLong);
    auto g = torch::rand({N});
    auto h = h0.clone().requires_grad_(), W = W0.clone().requires_grad_();
    auto lf = torch::mm(h, W.t()).to(torch::kFloat);
    auto ref = -torch::log_softmax(lf, 1).gather(1, t.unsqueeze(1)).squeeze(1);
    (ref * g).sum().backward();
    const double tol = dtype == torch::kFloat ? 1e-5 : 2e-2;
    for (int64_t rows : {int64_t(0), int64_t(1), int64_t(5), N}) {
      for (int64_t keep : {kKeptGradientBytes, int64_t(0)}) {
        SCOPED_TRACE("rows " + std::to_string(rows) + " keep " + std::to_string(keep));
        auto h2 = h0.clone().requires_grad_(), W2 = W0.clone().requires_grad_();
        VocabNll v = vocab_nll(h2, W2, t, 0, false, rows, keep);
        EXPECT_LT(test::rel_error(v.nll, ref.detach()), 1e-6);
        (v.nll * g).sum().backward();
        EXPECT_LT(test::rel_error(h2.grad().to(torch::kFloat), h.grad().to(torch::kFloat)), tol);
        EXPECT_LT(test::rel_error(W2.grad().to(torch::kFloat), W.grad().to(torch::kFloat)), tol);
        EXPECT_EQ(W2.grad().scalar_type(), dtype);
      }
    }
  }
}

TEST(Loss, ChunkedVocabNllAccuracyFrozenWeightAndNoRows) {
  torch::manual_seed(4);
  auto h = torch::randn({9, 8}), W = torch::randn({11, 8});
  auto t = torch::mm(h, W.t()).argmax(1);
  t[0] = (t[0].item<int64_t>() + 1) % 11;  // one wrong prediction
  {
    torch::NoGradGuard ng;
    VocabNll v = vocab_nll(h, W, t, 0, true, 2);
    EXPECT_EQ(v.correct.sum().item<float>(), 8);
    EXPECT_FALSE(v.nll.requires_grad());
  }
  // A frozen W (LoRA) gets no gradient computed; h still does.
  auto hg = h.clone().requires_grad_();
  VocabNll v = vocab_nll(hg, W, t, 0, true, 4);
  EXPECT_EQ(v.correct.sum().item<float>(), 8);
  v.nll.sum().backward();
  EXPECT_TRUE(hg.grad().defined());
  EXPECT_FALSE(W.grad().defined());
  // No answer rows: zero loss and zero (defined) gradients.
  auto W2 = W.clone().requires_grad_();
  auto none = vocab_nll(torch::zeros({0, 8}).requires_grad_(), W2, torch::zeros({0}, torch::kLong), 0, false);
  none.nll.sum().backward();
  EXPECT_EQ(W2.grad().abs().sum().item<float>(), 0);
}

// answer_loss = token_loss over forward's logits, including Gemma-2's soft-cap path.
TEST(Loss, AnswerLossEqualsTokenLossOfTheLogits) {
  for (double cap : {0.0, 5.0}) {
    ModelConfig c = tiny();
    c.final_logit_softcapping = cap;
    CausalLM m(c);
    m->init_weights(7);
    auto ids = torch::randint(0, c.vocab_size, {3, 10}, torch::kLong);
    auto mask = torch::ones({3, 10}, torch::kLong);
    mask.index_put_({2, torch::indexing::Slice(6, 10)}, 0);
    auto labels = ids.clone();
    labels.index_put_({torch::indexing::Slice(), torch::indexing::Slice(0, 4)}, -100);
    labels.masked_fill_(mask == 0, -100);
    TokenLoss a = token_loss(m->forward(ids, mask), labels, true);
    auto la = pooled_mean_nll(a);
    la.backward();
    std::map<std::string, torch::Tensor> ga;
    for (auto& [n, w] : m->named_weights()) ga[n] = w.grad().clone(), w.mutable_grad().zero_();
    TokenLoss b = m->answer_loss(ids, mask, labels, true);
    pooled_mean_nll(b).backward();
    EXPECT_LT(test::rel_error(b.nll, a.nll.detach()), 1e-6) << cap;
    EXPECT_TRUE(torch::equal(b.mask, a.mask));
    EXPECT_TRUE(torch::equal(b.correct, a.correct));
    for (auto& [n, w] : m->named_weights()) EXPECT_LT(test::rel_error(w.grad(), ga[n]), 1e-5) << n << " cap " << cap;
  }
}

}  // namespace
}  // namespace lethe
