// Numerical parity of the decoder with an independent Python reference
// (tests/reference/llama_reference.py, Debian's python3-torch): logits, the answer-masked loss
// and every parameter's gradient agree in fp32 to a relative error of 1e-4 or better.
#include "checkpoints/model_io.h"
#include "tests/test_util.h"

namespace lethe {
namespace {

struct Family {
  std::string name;
  json config;
};

json base_config() {
  return {{"vocab_size", 97},        {"hidden_size", 64},  {"intermediate_size", 160}, {"num_hidden_layers", 2},
          {"num_attention_heads", 4}, {"num_key_value_heads", 4}, {"max_position_embeddings", 128},
          {"rms_norm_eps", 1e-5},    {"rope_theta", 10000.0}, {"hidden_act", "silu"}, {"torch_dtype", "float32"},
          {"initializer_range", 0.2}};
}

std::vector<Family> families() {
  json llama = base_config();
  llama["model_type"] = "llama";
  llama["num_key_value_heads"] = 2;  // grouped-query attention
  llama["rope_theta"] = 500000.0;
  llama["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 16}};
  json qwen = base_config();
  qwen["model_type"] = "qwen2";  // q/k/v bias
  qwen["num_key_value_heads"] = 1;
  json tied = base_config();
  tied["model_type"] = "llama";
  tied["tie_word_embeddings"] = true;
  tied["attention_bias"] = true;
  json mistral = base_config();
  mistral["model_type"] = "mistral";
  mistral["num_key_value_heads"] = 2;
  mistral["sliding_window"] = 5;  // shorter than the sequence, so the window matters
  return {{"llama_gqa_rope3", llama}, {"qwen2_bias", qwen}, {"tied_embeddings", tied}, {"mistral_window", mistral}};
}

class ParityTest : public ::testing::TestWithParam<Family> {};

TEST_P(ParityTest, LogitsLossAndGradientsMatchReference) {
  if (!test::reference_python_available()) GTEST_SKIP() << "needs /usr/bin/python3 with torch (apt-get install python3-torch)";
  test::TempDir tmp;
  ModelConfig cfg = ModelConfig::from_json(GetParam().config, GetParam().name);
  CausalLM model(cfg);
  model->init_weights(7);
  {  // non-trivial norm weights and biases, so their gradients are tested too
    torch::NoGradGuard ng;
    for (auto& [n, p] : model->named_weights())
      if (n.find("norm") != std::string::npos || n.find("bias") != std::string::npos) p.uniform_(0.5, 1.5);
  }
  save_model(model, tmp / "model", "hf", json::object(), "");

  const int64_t B = 2, T = 12;
  torch::manual_seed(3);
  auto ids = torch::randint(0, cfg.vocab_size, {B, T}, torch::kLong);
  auto mask = torch::ones({B, T}, torch::kLong);
  mask.index_put_({1, torch::indexing::Slice(9, T)}, 0);  // right padding on the second row
  auto labels = ids.clone();
  labels.index_put_({0, torch::indexing::Slice(0, 4)}, -100);  // prompts
  labels.index_put_({1, torch::indexing::Slice(0, 3)}, -100);
  labels.masked_fill_(mask == 0, -100);
  write_safetensors(tmp / "inputs.safetensors", {{"input_ids", ids}, {"attention_mask", mask}, {"labels", labels}});
  std::string cmd = "/usr/bin/python3 " + test::source_dir() + "/tests/reference/llama_reference.py " + (tmp / "model") +
                    " " + (tmp / "inputs.safetensors") + " " + (tmp / "ref.safetensors");
  ASSERT_EQ(test::run_command(cmd), 0) << cmd;
  TensorMap ref = read_safetensors(tmp / "ref.safetensors");

  auto logits = model->forward(ids, mask);
  auto loss = pooled_mean_nll(token_loss(logits, labels));
  loss.backward();
  auto valid = mask.to(torch::kBool);
  double logits_err = test::rel_error(logits.index({valid}), ref["logits"].index({valid}));
  double loss_err = std::abs(loss.item<double>() - ref["loss"].item<double>()) / std::abs(ref["loss"].item<double>());
  EXPECT_LT(logits_err, 1e-4);
  EXPECT_LT(loss_err, 1e-4);
  int checked = 0;
  double worst_grad = 0;
  for (auto& [name, p] : model->named_weights()) {
    auto it = ref.find("grad." + name);
    ASSERT_NE(it, ref.end()) << name;
    ASSERT_TRUE(p.grad().defined()) << name;
    double err = test::rel_error(p.grad(), it->second);
    EXPECT_LT(err, 1e-4) << name;
    worst_grad = std::max(worst_grad, err);
    ++checked;
  }
  EXPECT_EQ(checked, int(ref.size()) - 2);
  std::cout << "[ parity ] " << GetParam().name << ": logits rel err " << logits_err << ", loss rel err " << loss_err
            << ", worst of " << checked << " gradients " << worst_grad << "\n";
}

INSTANTIATE_TEST_SUITE_P(Families, ParityTest, ::testing::ValuesIn(families()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace lethe
