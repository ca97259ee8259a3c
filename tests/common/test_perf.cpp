// The benchmark's arithmetic: medians, and the model FLOPs of a step on a hand-counted config.
#include <gtest/gtest.h>

#include "common/perf.h"
#include "unlearn/step_bench.h"

namespace lethe {
namespace {

TEST(Perf, Median) {
  EXPECT_EQ(median({}), 0);
  EXPECT_EQ(median({3}), 3);
  EXPECT_EQ(median({5, 1, 3}), 3);
  EXPECT_EQ(median({4, 1, 3, 2}), 2.5);
}

TEST(Perf, ForwardFlopsCountEveryMatmulAndTheAttentionSquare) {
  ModelConfig c = ModelConfig::from_json({{"model_type", "llama"},
                                          {"vocab_size", 100},
                                          {"hidden_size", 8},
                                          {"intermediate_size", 16},
                                          {"num_hidden_layers", 2},
                                          {"num_attention_heads", 2},
                                          {"num_key_value_heads", 1},
                                          {"max_position_embeddings", 64}},
                                         "test config");
  // Per layer: q 8x8, k and v 8x4 each, o 8x8, gate/up/down 8x16 each = 64+32+32+64+384 = 576;
  // two layers 1152, plus the LM head 100x8 = 800: 1952 weights, 2 FLOPs each per token.
  // Attention: 4 * layers 2 * (heads 2 * head_dim 4) * T^2.
  const int64_t T = 10;
  const double expect = 2.0 * 1952 * T + 4.0 * 2 * 8 * T * T;
  EXPECT_DOUBLE_EQ(forward_flops(c, T), expect);
  EXPECT_DOUBLE_EQ(training_flops(c, T, false), 3 * expect);
  EXPECT_DOUBLE_EQ(training_flops(c, T, true), 2 * expect);
}

TEST(Perf, MeasuredGemmRateIsPositiveAndDefaultPeakNamesItsSource) {
  torch::set_num_threads(1);
  std::string source;
  const double peak = default_peak_flops(torch::Device(torch::kCPU), torch::kFloat, &source);
  EXPECT_GT(peak, 1e8);  // any CPU of this century does more than 0.1 GFLOP/s
  EXPECT_EQ(source, "measured GEMM rate");
  EXPECT_GT(peak_memory_mib(torch::Device(torch::kCPU)), 0);
}

}  // namespace
}  // namespace lethe
