// safetensors both ways, judged by the official library and transformers
// (tests/reference/hf_interop_reference.py): lethe's output, single fp32 and sharded bf16, reads
// identically with safetensors and gives lethe's logits through from_pretrained; files written
// by save_file (every dtype lethe knows, metadata, empty and 0-d tensors) and a sharded
// save_pretrained load in lethe with the same values and logits.
#include "checkpoints/model_io.h"
#include "tests/test_util.h"

namespace lethe {
namespace {

TEST(HfInterop, SafetensorsBothWaysWithTheOfficialLibraryAndFromPretrained) {
  LETHE_REQUIRE_REFERENCE("torch, transformers, safetensors");
  test::TempDir tmp;
  json cfg = {
      {"model_type", "qwen2"},  {"vocab_size", 67},         {"hidden_size", 32},        {"intermediate_size", 64},
      {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"max_position_embeddings", 64},
      {"rms_norm_eps", 1e-6},   {"torch_dtype", "float32"}, {"initializer_range", 0.1}};
  CausalLM model(ModelConfig::from_json(cfg, "qwen2"));
  model->init_weights(4);
  save_model(model, tmp / "single", CheckpointFormat::kHf, json::object(), "");
  CausalLM bf16(ModelConfig::from_json(cfg, "qwen2"));
  bf16->init_weights(4);
  bf16->to(torch::kBFloat16);
  bf16->config.torch_dtype = "bfloat16";
  save_model(bf16, tmp / "sharded", CheckpointFormat::kHf, json::object(), "", 20000);
  ASSERT_TRUE(fs::exists(tmp / "sharded/model.safetensors.index.json"));
  torch::manual_seed(2);
  auto ids = torch::randint(0, 67, {2, 7}, torch::kLong);
  auto mask = torch::ones({2, 7}, torch::kLong);
  write_safetensors(tmp / "inputs.safetensors", {{"input_ids", ids}, {"attention_mask", mask}});
  ASSERT_EQ(test::run_reference("hf_interop_reference.py", tmp.path.string()), 0);

  // lethe -> safetensors / transformers
  for (auto* d : {"single", "sharded"}) {
    TensorMap ours = read_hf_weights(tmp / d);
    TensorMap theirs = read_safetensors(tmp / (std::string(d) + ".official.safetensors"));
    ASSERT_EQ(ours.size(), theirs.size()) << d;
    for (auto& [n, t] : theirs) {
      ASSERT_TRUE(ours.count(n)) << d << ": " << n;
      EXPECT_EQ(ours[n].scalar_type(), t.scalar_type()) << n;
      EXPECT_TRUE(torch::equal(ours[n], t)) << d << ": " << n;
    }
    CausalLM m = load_model(tmp / d, "float32");
    auto logits = m->forward(ids, mask).detach();
    auto ref = read_safetensors(tmp / (std::string(d) + ".logits.safetensors"))["logits"];
    double err = test::rel_error(logits, ref);
    EXPECT_LT(err, 1e-5) << d;
    std::cout << "[ reference ] from_pretrained(" << d << ") logits vs lethe: " << err << "\n";
  }
  // save_pretrained (sharded) and save_file -> lethe
  ASSERT_TRUE(fs::exists(tmp / "saved_pretrained/model.safetensors.index.json")) << "save_pretrained did not shard";
  CausalLM back = load_model(tmp / "saved_pretrained", "float32");
  TensorMap saved = read_hf_weights(tmp / "saved_pretrained");
  for (auto& [n, p] : model->named_weights()) {
    ASSERT_TRUE(saved.count(n)) << n;
    EXPECT_TRUE(torch::equal(saved[n], p)) << n;
  }
  EXPECT_LT(test::rel_error(back->forward(ids, mask), model->forward(ids, mask)), 1e-7);
  std::map<std::string, std::string> meta;
  read_safetensors_header(tmp / "assorted.safetensors", nullptr, &meta);
  EXPECT_EQ(meta["note"], "save_file");
  TensorMap assorted = read_safetensors(tmp / "assorted.safetensors");
  torch::manual_seed(0);
  auto f32 = torch::randn({3, 5});
  auto bf = torch::randn({4}).to(torch::kBFloat16);
  EXPECT_TRUE(torch::equal(assorted.at("f32"), f32));
  EXPECT_TRUE(torch::equal(assorted.at("bf16"), bf));
  EXPECT_EQ(assorted.at("f16").scalar_type(), torch::kHalf);
  EXPECT_TRUE(torch::equal(assorted.at("i64"), torch::arange(6, torch::kLong).view({2, 3})));
  EXPECT_TRUE(torch::equal(assorted.at("i32"), torch::arange(4, torch::kInt)));
  EXPECT_EQ(assorted.at("empty").sizes(), torch::IntArrayRef({0, 3}));
  EXPECT_EQ(assorted.at("scalar").dim(), 0);
  EXPECT_FLOAT_EQ(assorted.at("scalar").item<float>(), 2.5f);
}

}  // namespace
}  // namespace lethe
