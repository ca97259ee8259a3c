// LoRA against peft (tests/reference/peft_reference.py), on a plain, a fused (Phi-3), a q/k-norm
// (Qwen3) and a sandwich-norm (Gemma-2) family: an adapter saved by peft loads into lethe with
// peft's logits; an adapter lethe writes loads into peft with lethe's logits; and lethe's merged
// weights equal peft's merge_and_unload. fp32, 1e-5 relative.
#include "checkpoints/model_io.h"
#include "checkpoints/peft_adapter.h"
#include "common/error.h"
#include "tests/test_util.h"

namespace lethe {
namespace {

json tiny(const std::string& type) {
  json j = {
      {"model_type", type},     {"vocab_size", 61},         {"hidden_size", 32},        {"intermediate_size", 48},
      {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"max_position_embeddings", 64},
      {"rms_norm_eps", 1e-5},   {"torch_dtype", "float32"}, {"initializer_range", 0.2}};
  if (type == "qwen3") j["head_dim"] = 12;
  if (type == "phi3") j["pad_token_id"] = 0;  // Phi3Config's default (32000) lies outside this vocabulary
  return j;
}

const std::vector<std::string> kFamilies = {"llama", "phi3", "qwen3", "gemma2"};

double max_rel(const torch::Tensor& a, const torch::Tensor& b) { return test::rel_error(a, b); }

TEST(Peft, AdaptersLoadBothWaysAndMergeLikeMergeAndUnload) {
  LETHE_REQUIRE_REFERENCE("torch, transformers, peft, safetensors");
  test::TempDir tmp;
  std::map<std::string, torch::Tensor> lethe_logits;
  std::map<std::string, TensorMap> lethe_merged;
  torch::Tensor ids, mask;
  std::string dirs;
  for (auto& fam : kFamilies) {
    std::string c = tmp / fam;
    CausalLM base(ModelConfig::from_json(tiny(fam), fam));
    base->init_weights(3);
    save_model(base, c + "/model", CheckpointFormat::kHf, json::object(), "");
    torch::manual_seed(1);
    ids = torch::randint(0, 61, {2, 9}, torch::kLong);
    mask = torch::ones({2, 9}, torch::kLong);
    mask.index_put_({1, torch::indexing::Slice(6, 9)}, 0);
    write_safetensors(c + "/inputs.safetensors", {{"input_ids", ids}, {"attention_mask", mask}});
    // lethe's own adapter: rank 4, alpha 8, random A and B.
    CausalLM m = load_model(c + "/model");
    LoraOptions lo;
    lo.rank = 4;
    lo.alpha = 8;
    lo.dropout = 0;
    lo.seed = 5;
    m->add_lora(lo);
    {
      torch::NoGradGuard ng;
      torch::manual_seed(9);
      for (auto& [n, p] : m->named_weights())
        if (n.find("lora_B") != std::string::npos) p.normal_(0, 0.3);
    }
    m->eval();
    lethe_logits[fam] = m->forward(ids, mask).detach();
    save_peft_adapter(m, c + "/lethe_adapter", c + "/model");
    m->merge_lora();
    for (auto& [n, p] : m->named_weights()) lethe_merged[fam][n] = p.detach().clone();
    dirs += " " + c;
  }
  ASSERT_EQ(test::run_reference("peft_reference.py", dirs), 0);

  auto valid = mask.to(torch::kBool);
  for (auto& fam : kFamilies) {
    std::string c = tmp / fam;
    // peft -> lethe
    TensorMap peft_out = read_safetensors(c + "/peft_out.safetensors");
    CausalLM m = load_model(c + "/model");
    PeftAdapterInfo info = load_peft_adapter(m, c + "/peft_adapter");
    EXPECT_EQ(info.rank, 4);
    EXPECT_EQ(info.adapted_modules, 2 * int64_t(m->config.linear_modules().size())) << fam;
    m->eval();
    auto logits = m->forward(ids, mask).detach();
    double e1 = max_rel(logits.index({valid}), peft_out["logits"].index({valid}));
    EXPECT_LT(e1, 1e-5) << fam << ": logits with peft's adapter";
    m->merge_lora();
    double worst_merge = 0;
    for (auto& [n, p] : m->named_weights()) {
      ASSERT_TRUE(peft_out.count("merged." + n)) << fam << ": " << n;
      worst_merge = std::max(worst_merge, max_rel(p, peft_out["merged." + n]));
    }
    EXPECT_LT(worst_merge, 1e-6) << fam << ": merged weights vs merge_and_unload";
    // lethe -> peft
    TensorMap lethe_out = read_safetensors(c + "/lethe_out.safetensors");
    double e2 = max_rel(lethe_logits[fam].index({valid}), lethe_out["logits"].index({valid}));
    EXPECT_LT(e2, 1e-5) << fam << ": peft's logits with lethe's adapter";
    double worst_merge2 = 0;
    for (auto& [n, p] : lethe_merged[fam]) worst_merge2 = std::max(worst_merge2, max_rel(p, lethe_out["merged." + n]));
    EXPECT_LT(worst_merge2, 1e-6) << fam << ": lethe's merge vs peft's merge of lethe's adapter";
    std::cout << "[ reference ] peft parity " << fam << ": peft adapter in lethe, logits " << e1 << ", merge "
              << worst_merge << "; lethe adapter in peft, logits " << e2 << ", merge " << worst_merge2 << "\n";
  }
}

TEST(Peft, UnsupportedAdapterFeaturesAreRefusedByName) {
  test::TempDir tmp;
  CausalLM m(ModelConfig::from_json(tiny("llama"), "llama"));
  m->init_weights(1);
  LoraOptions lo;
  lo.rank = 2;
  m->add_lora(lo);
  save_peft_adapter(m, tmp / "a", "base");
  EXPECT_THROW(save_peft_adapter(m, tmp / "a", "base"), InputError);  // never overwritten
  json cfg = read_json_file(tmp / "a/adapter_config.json");
  for (auto& [key, value] : std::vector<std::pair<std::string, json>>{
           {"use_dora", true}, {"bias", "all"}, {"modules_to_save", {"lm_head"}}, {"rank_pattern", {{"q_proj", 4}}}}) {
    json bad = cfg;
    bad[key] = value;
    fs::create_directories(tmp / ("b_" + key));
    fs::copy_file(tmp / "a/adapter_model.safetensors", tmp / ("b_" + key) + "/adapter_model.safetensors");
    write_json_file(tmp / ("b_" + key) + "/adapter_config.json", bad);
    CausalLM fresh(ModelConfig::from_json(tiny("llama"), "llama"));
    try {
      load_peft_adapter(fresh, tmp / ("b_" + key));
      ADD_FAILURE() << key << " was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("'" + key + "'"), std::string::npos) << e.what();
    }
  }
  json wrong_r = cfg;
  wrong_r["r"] = 3;  // the matrices say 2
  fs::create_directories(tmp / "c");
  fs::copy_file(tmp / "a/adapter_model.safetensors", tmp / "c/adapter_model.safetensors");
  write_json_file(tmp / "c/adapter_config.json", wrong_r);
  CausalLM fresh(ModelConfig::from_json(tiny("llama"), "llama"));
  EXPECT_THROW(load_peft_adapter(fresh, tmp / "c"), InputError);
  EXPECT_THROW(load_peft_adapter(fresh, tmp / "missing"), InputError);
}

}  // namespace
}  // namespace lethe
