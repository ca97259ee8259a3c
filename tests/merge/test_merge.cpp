// Merge rules on small hand-computed tensors (docs/METHODS.md "Merging"), DARE's seeded masks,
// option validation and the output planning helpers.
#include <gtest/gtest.h>

#include "common/error.h"
#include "merge/merge_io.h"
#include "merge/merge_rules.h"

namespace lethe {
namespace {

torch::Tensor t(std::vector<float> v) { return torch::tensor(v, torch::kFloat); }

void expect_eq(const torch::Tensor& got, std::vector<float> want) {
  ASSERT_EQ(got.numel(), int64_t(want.size()));
  for (size_t i = 0; i < want.size(); ++i) EXPECT_FLOAT_EQ(got[int64_t(i)].item<float>(), want[i]) << "entry " << i;
}

const std::vector<torch::Tensor> kDeltas = {t({4, -1, 2, -3}), t({-2, 5, -1, 1})};

MergeOptions opts(const std::string& m, std::vector<double> w = {}, double density = 0.5, double lambda = 1) {
  MergeOptions o;
  o.method = m;
  o.weights = std::move(w);
  o.density = density;
  o.lambda = lambda;
  return o;
}

TEST(Merge, TiesTrimKeepsTopDensityShareByMagnitude) {
  expect_eq(ties_trim(kDeltas[0], 0.5), {4, 0, 0, -3});
  expect_eq(ties_trim(kDeltas[1], 0.5), {-2, 5, 0, 0});
  expect_eq(ties_trim(kDeltas[0], 0.25), {4, 0, 0, 0});
  expect_eq(ties_trim(kDeltas[0], 1.0), {4, -1, 2, -3});
  expect_eq(ties_trim(kDeltas[0], 0.1), {0, 0, 0, 0});  // floor(0.4) = 0 entries kept
}

// The radix selection finds exactly the k-th largest magnitude a full sort finds: random values
// over many magnitudes, repeated values, zeros of both signs and subnormals, every k at the
// ends and a spread in between; other dtypes go through kthvalue.
TEST(Merge, KthLargestMagnitudeEqualsSorting) {
  torch::manual_seed(3);
  auto x = torch::randn({50000}) * torch::pow(10.0, torch::randint(-30, 30, {50000}).to(torch::kFloat));
  x.narrow(0, 0, 1000).fill_(0.5f);  // repeated magnitude, both signs below
  x.narrow(0, 1000, 500).fill_(-0.5f);
  x.narrow(0, 2000, 300).fill_(0.0f);
  x.narrow(0, 2300, 300).fill_(-0.0f);
  x.narrow(0, 3000, 100).fill_(1e-40f);  // subnormal
  const auto sorted = std::get<0>(x.abs().sort(/*stable=*/false, 0, /*descending=*/true));
  const int64_t n = x.numel();
  for (int64_t k : {int64_t(1), int64_t(2), int64_t(999), int64_t(1500), n / 5, n / 2, n - 2700, n - 1, n})
    EXPECT_EQ(kth_largest_magnitude(x, k), sorted[k - 1].item<float>()) << "k " << k;
  auto half = x.to(torch::kBFloat16);
  EXPECT_EQ(kth_largest_magnitude(half, n / 5),
            std::get<0>(half.abs().to(torch::kFloat).sort(false, 0, true))[n / 5 - 1].item<float>());
}

TEST(Merge, TiesElectsSignAndAveragesAgreeingEntries) {
  // trimmed: [4,0,0,-3] and [-2,5,0,0]; sum [2,5,0,-3] -> signs [+,+,+,-] (0 counts as +);
  // entry 2 has no agreeing non-zero entry -> 0.
  expect_eq(make_merge_method(opts("ties"), 2)->merge("w", kDeltas), {4, 5, 0, -3});
  expect_eq(make_merge_method(opts("ties", {}, 0.5, 0.5), 2)->merge("w", kDeltas), {2, 2.5, 0, -1.5});
  // weights 1 and 3: weighted sum [-2,15,0,-3] -> signs [-,+,+,-]; entry 0 = 3*(-2)/3.
  expect_eq(make_merge_method(opts("ties", {1, 3}), 2)->merge("w", kDeltas), {-2, 5, 0, -3});
}

TEST(Merge, TaskArithmeticAndLinear) {
  expect_eq(make_merge_method(opts("task_arithmetic", {1, 3}, 0.5, 0.5), 2)->merge("w", kDeltas), {-1, 7, -0.5, 0});
  expect_eq(make_merge_method(opts("linear", {1, 3}), 2)->merge("w", kDeltas), {-0.5, 3.5, -0.25, 0});
  expect_eq(make_merge_method(opts("linear"), 2)->merge("w", kDeltas), {1, 2, 0.5, -1});
}

// rule.merge_weights (fused where it can be) against apply_delta(base, rule.merge(deltas)), bit for
// bit, on three random models of n entries near a random base; zero_share of each model's entries
// equal the base's (zero deltas).
void expect_fused_equals_unfused(const MergeMethod& rule, torch::ScalarType dt, int64_t n, double zero_share,
                                 const std::string& what) {
  auto base = torch::randn({n}).to(dt);
  std::vector<torch::Tensor> models, deltas;
  for (int g = 0; g < 3; ++g) {
    auto noise = 0.01 * torch::randn({n});
    if (zero_share > 0) noise.masked_fill_(torch::rand({n}) < zero_share, 0.0);
    models.push_back((base.to(torch::kFloat) + noise).to(dt));
    deltas.push_back(delta_of(models.back(), base));
  }
  const auto want = apply_delta(base, rule.merge("w", deltas));
  const auto got = rule.merge_weights("w", base, models);
  ASSERT_EQ(got.scalar_type(), dt);
  EXPECT_TRUE(torch::equal(got, want)) << what << " " << dt << " n " << n << ": max difference "
                                       << (got.to(torch::kFloat) - want.to(torch::kFloat)).abs().max().item<float>();
}

// The fused one-pass merge of the linear rules gives the unfused path's bits: float32, bfloat16
// and float16 weights, sizes off the block size, weights, lambda and normalization.
TEST(Merge, FusedLinearMergeEqualsTheDeltaPathBitForBit) {
  torch::manual_seed(7);
  struct Case {
    std::string method;
    std::vector<double> w;
    double lambda;
    std::string normalize;
  };
  const std::vector<Case> cases = {{"task_arithmetic", {}, 0.5, "auto"},
                                   {"task_arithmetic", {0.3, 1.7, 0.9}, 0.7, "auto"},
                                   {"task_arithmetic", {0.3, 1.7, 0.9}, 1.3, "true"},
                                   {"linear", {}, 1, "auto"},
                                   {"linear", {0.2, 0.5, 2.5}, 1, "auto"},
                                   {"linear", {0.2, 0.5, 2.5}, 1, "false"}};
  for (auto dt : {torch::kFloat, torch::kBFloat16, torch::kHalf})
    for (int64_t n : {int64_t(1), int64_t(1023), int64_t(70001)})
      for (auto& c : cases) {
        MergeOptions o = opts(c.method, c.w, 0.5, c.lambda);
        o.normalize = c.normalize;
        expect_fused_equals_unfused(*make_merge_method(o, 3), dt, n, 0.0, c.method + " " + c.normalize);
      }
  // Non-contiguous inputs take the unfused path: the same values.
  auto rule = make_merge_method(opts("task_arithmetic", {}, 0.5, 0.5), 2);
  auto base = torch::randn({8, 6}).t();
  std::vector<torch::Tensor> models = {base + 1, base - 2};
  EXPECT_TRUE(
      torch::equal(rule->merge_weights("w", base, models),
                   apply_delta(base, rule->merge("w", {delta_of(models[0], base), delta_of(models[1], base)}))));
}

// The fused TIES merge (threshold trim) gives the unfused path's bits: dtypes, sizes (below and
// above the radix selection's chunk, k = 0 and k = n), weights, lambda, normalization, and
// deltas with equal magnitudes and exact zeros.
TEST(Merge, FusedTiesMergeEqualsTheDeltaPathBitForBit) {
  torch::manual_seed(11);
  struct Case {
    std::vector<double> w;
    double density, lambda;
    std::string normalize;
  };
  const std::vector<Case> cases = {{{}, 0.2, 1, "auto"},
                                   {{0.3, 1.7, 0.9}, 0.5, 0.7, "auto"},
                                   {{0.3, 1.7, 0.9}, 0.1, 1.3, "false"},
                                   {{}, 1.0, 1, "auto"},
                                   {{1, 2, 3}, 0.001, 1, "true"}};
  for (auto dt : {torch::kFloat, torch::kBFloat16, torch::kHalf})
    for (int64_t n : {int64_t(3), int64_t(1023), int64_t(70001), int64_t(1 << 21) + 5})
      for (auto& c : cases) {
        MergeOptions o = opts("ties", c.w, c.density, c.lambda);
        o.normalize = c.normalize;
        expect_fused_equals_unfused(*make_merge_method(o, 3), dt, n, 0.1,
                                    std::to_string(c.density) + " " + c.normalize);
      }
}

TEST(Merge, DareWithDensityOneIsTheUndroppedRule) {
  expect_eq(make_merge_method(opts("dare_linear", {1, 3}, 1.0, 0.5), 2)->merge("w", kDeltas), {-1, 7, -0.5, 0});
  // dare_ties at density 1: sign election over the raw deltas: sum [2,4,1,-2] -> [+,+,+,-].
  expect_eq(make_merge_method(opts("dare_ties", {}, 1.0), 2)->merge("w", kDeltas), {4, 5, 2, -3});
}

TEST(Merge, DareDropsWithTheKeepProbabilityAndRescales) {
  auto d = torch::randn({100000}, torch::TensorOptions().dtype(torch::kFloat));
  auto a = dare_drop(d, 0.3, 7, 0, "layer.w", "inverse");
  auto kept = a != 0;
  EXPECT_NEAR(kept.to(torch::kFloat).mean().item<double>(), 0.3, 0.01);
  EXPECT_TRUE(torch::allclose(a.masked_select(kept), d.masked_select(kept) / 0.3));
  EXPECT_TRUE(torch::equal(a, dare_drop(d, 0.3, 7, 0, "layer.w", "inverse")));   // seeded
  EXPECT_FALSE(torch::equal(a, dare_drop(d, 0.3, 7, 1, "layer.w", "inverse")));  // per model
  EXPECT_FALSE(torch::equal(a, dare_drop(d, 0.3, 7, 0, "layer.v", "inverse")));  // per tensor
  EXPECT_FALSE(torch::equal(a, dare_drop(d, 0.3, 8, 0, "layer.w", "inverse")));  // per seed
  auto l1 = dare_drop(d, 0.3, 7, 0, "layer.w", "l1");
  EXPECT_NEAR(l1.abs().sum().item<double>() / d.abs().sum().item<double>(), 1.0, 1e-5);
  EXPECT_TRUE(torch::equal(l1 != 0, kept));
}

TEST(Merge, BadOptionsAreNamed) {
  auto msg = [](const MergeOptions& o, size_t k) {
    try {
      make_merge_method(o, k);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg(opts("average"), 2).find("unknown merge method 'average'"), std::string::npos);
  EXPECT_NE(msg(opts("ties", {1, 2, 3}), 2).find("3 weights for 2 models"), std::string::npos);
  EXPECT_NE(msg(opts("ties", {1, -1}), 2).find(">= 0"), std::string::npos);
  EXPECT_NE(msg(opts("ties", {0, 0}), 2).find("sum to 0"), std::string::npos);
  EXPECT_NE(msg(opts("ties", {}, 0.0), 2).find("--merge.density"), std::string::npos);
  EXPECT_NE(msg(opts("ties", {}, 1.5), 2).find("--merge.density"), std::string::npos);
}

TEST(Merge, AssignBySizeBalancesLargestFirst) {
  auto owner = assign_by_size({10, 1, 7, 3, 3}, 2);
  EXPECT_EQ(owner, (std::vector<int>{0, 1, 1, 1, 0}));  // loads 13 and 11
  EXPECT_EQ(assign_by_size({5, 5, 5}, 1), (std::vector<int>{0, 0, 0}));
}

}  // namespace
}  // namespace lethe
