// Weight quantization for the robustness probe (model/quantize.h): the code tables as
// published, bitsandbytes' own quantize/dequantize (tests/reference/quantize_reference.py) on the
// same tensors, round trips and error bounds, and which tensors of a model are quantized.
#include "checkpoints/safetensors.h"
#include "common/error.h"
#include "model/quantize.h"
#include "tests/test_util.h"

namespace lethe {
namespace {

torch::Tensor code_tensor(const std::array<float, 16>& c) {
  return torch::tensor(std::vector<float>(c.begin(), c.end()));
}

TEST(Quantize, CodeTablesAreThePublishedOnes) {
  // NF4: sorted, exact -1, 0 and 1, 7 negative and 8 positive levels (QLoRA's asymmetric table).
  auto nf4 = code_tensor(nf4_code());
  EXPECT_TRUE(torch::equal(nf4, std::get<0>(nf4.sort())));
  EXPECT_EQ(nf4[0].item<float>(), -1.0f);
  EXPECT_EQ(nf4[7].item<float>(), 0.0f);
  EXPECT_EQ(nf4[15].item<float>(), 1.0f);
  EXPECT_EQ(nf4.lt(0).sum().item<int64_t>(), 7);
  // FP4 (e2m1): magnitudes {0, 0.0625, 2, 3, 4, 6, 8, 12} / 12, each with both signs.
  auto fp4 = code_tensor(fp4_code());
  auto mags = std::get<0>(fp4.narrow(0, 0, 8).sort()) * 12;
  EXPECT_TRUE(torch::allclose(mags, torch::tensor({0.f, 0.0625f, 2.f, 3.f, 4.f, 6.f, 8.f, 12.f})));
  EXPECT_TRUE(torch::equal(fp4.narrow(0, 8, 8), -fp4.narrow(0, 0, 8)));
}

TEST(Quantize, EqualsBitsandbytes) {
  LETHE_REQUIRE_REFERENCE("torch, safetensors, bitsandbytes");
  test::TempDir tmp;
  torch::manual_seed(11);
  auto outliers = torch::randn({5, 96}) * 0.02;
  outliers[2][17] = 3.5;                                  // one large value in a row and a block
  TensorMap in = {{"gauss", torch::randn({6, 200})},      // 1200 elements: 18 blocks and a tail of 48
                  {"outliers", outliers},                 // int8 rows and 4-bit blocks dominated by one value
                  {"tiny", torch::randn({3, 7}) * 1e-3},  // a single short block
                  {"exact", torch::linspace(-2, 2, 128).view({2, 64})}};  // values on the code grid's ends
  write_safetensors(tmp / "in.safetensors", NamedTensors(in.begin(), in.end()));
  ASSERT_EQ(test::run_reference("quantize_reference.py", (tmp / "in.safetensors") + " " + (tmp / "ref.safetensors")),
            0);
  TensorMap ref = read_safetensors(tmp / "ref.safetensors");
  EXPECT_TRUE(torch::equal(code_tensor(nf4_code()), ref.at("code.nf4")));
  EXPECT_TRUE(torch::equal(code_tensor(fp4_code()), ref.at("code.fp4")));
  for (auto& [name, w] : in)
    for (QuantFormat f : {QuantFormat::kInt8, QuantFormat::kNf4, QuantFormat::kFp4}) {
      auto mine = fake_quantize(w, f);
      auto theirs = ref.at(name + "." + quant_format_name(f));
      double diff = (mine - theirs).abs().max().item<double>();
      EXPECT_LE(diff, 1e-7 * w.abs().max().item<double>()) << name << " " << quant_format_name(f);
      std::cout << "[ quantize ] " << name << " " << quant_format_name(f) << ": max |lethe - bitsandbytes| " << diff
                << ", max |w' - w| " << (mine - w).abs().max().item<double>() << "\n";
    }
}

TEST(Quantize, RoundTripsAndErrorBounds) {
  torch::manual_seed(3);
  auto w = torch::randn({8, 256});
  for (QuantFormat f : {QuantFormat::kInt8, QuantFormat::kNf4, QuantFormat::kFp4}) {
    auto q = fake_quantize(w, f);
    EXPECT_EQ(q.sizes(), w.sizes());
    // Quantized values quantize to themselves (each block's or row's absmax survives).
    EXPECT_LE((fake_quantize(q, f) - q).abs().max().item<double>(), 1e-6) << quant_format_name(f);
    // The error is at most half the widest gap of the code, times the scale.
    if (f == QuantFormat::kInt8) {
      auto absmax = std::get<0>(w.abs().max(1)).unsqueeze(1);
      EXPECT_TRUE(((q - w).abs() <= absmax / 254 * (1 + 1e-5)).all().item<bool>());
    } else {
      auto code = std::get<0>(code_tensor(f == QuantFormat::kNf4 ? nf4_code() : fp4_code()).sort());
      double gap = (code.narrow(0, 1, 15) - code.narrow(0, 0, 15)).max().item<double>();
      auto blocks = w.reshape({-1, 64});
      auto absmax = std::get<0>(blocks.abs().max(1)).unsqueeze(1);
      auto err = (q.reshape({-1, 64}) - blocks).abs();
      EXPECT_TRUE((err <= absmax * (gap / 2) * (1 + 1e-5)).all().item<bool>()) << quant_format_name(f);
    }
  }
  // Scaled code values are kept exactly; an all-zero tensor stays zero; the dtype is kept.
  auto grid = code_tensor(nf4_code()).repeat({4}) * 2.5;
  EXPECT_LE((fake_quantize(grid, QuantFormat::kNf4) - grid).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(fake_quantize(torch::zeros({2, 64}), QuantFormat::kInt8).abs().sum().item<double>(), 0);
  EXPECT_EQ(fake_quantize(torch::zeros({2, 64}), QuantFormat::kFp4).abs().sum().item<double>(), 0);
  EXPECT_EQ(fake_quantize(w.to(torch::kBFloat16), QuantFormat::kNf4).scalar_type(), torch::kBFloat16);
  EXPECT_THROW(parse_quant_format("int3", "--quantize"), InputError);
}

TEST(Quantize, LinearWeightsOfTheDecoderLayersOnly) {
  json j = {{"model_type", "llama"},    {"vocab_size", 50},
            {"hidden_size", 32},        {"intermediate_size", 64},
            {"num_hidden_layers", 2},   {"num_attention_heads", 4},
            {"num_key_value_heads", 2}, {"max_position_embeddings", 64}};
  CausalLM model(ModelConfig::from_json(j, "tiny"));
  model->init_weights(5);
  std::map<std::string, torch::Tensor> before;
  for (auto& [name, w] : model->named_weights()) before[name] = w.detach().clone();
  QuantizeSummary s = quantize_linear_weights(model, QuantFormat::kNf4);
  EXPECT_EQ(s.tensors, 2 * 7);  // q, k, v, o, gate, up, down per layer
  EXPECT_GT(s.relative_error(), 0.01);
  EXPECT_LT(s.relative_error(), 0.2);
  for (auto& [name, w] : model->named_weights()) {
    bool linear = name.find("model.layers.") == 0 && w.dim() == 2;
    EXPECT_EQ(torch::equal(w, before[name]), !linear) << name;
  }
}

}  // namespace
}  // namespace lethe
