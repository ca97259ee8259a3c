#include "common/json_io.h"
#include "common/rng.h"
#include "tests/test_util.h"

namespace lethe {
namespace {

TEST(Rng, PermutationIsDeterministicAndComplete) {
  auto a = permutation(1000, 42), b = permutation(1000, 42), c = permutation(1000, 43);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::sort(a.begin(), a.end());
  for (int64_t i = 0; i < 1000; ++i) EXPECT_EQ(a[size_t(i)], i);
}

TEST(Rng, KnownSequence) {
  // splitmix64 from seed 0: published first output 0xe220a8397b1dcdaf.
  SplitMix64 r(0);
  EXPECT_EQ(r.next(), 0xe220a8397b1dcdafULL);
  SplitMix64 u(9);
  for (int i = 0; i < 1000; ++i) {
    double x = u.uniform();
    EXPECT_GE(x, 0.0);
    EXPECT_LT(x, 1.0);
    EXPECT_LT(u.below(7), 7u);
  }
}

}  // namespace
}  // namespace lethe

namespace lethe {
namespace {
TEST(JsonText, InvalidUtf8BecomesTheReplacementCharacter) {
  // A generation cut inside a multi-byte character (seen on TOFU) must not stop a report.
  json j = {{"generation", std::string("ab\xC1")}};
  EXPECT_EQ(json_text(j), "{\"generation\":\"ab\xEF\xBF\xBD\"}");
  EXPECT_THROW(j.dump(), json::type_error);
}
}  // namespace
}  // namespace lethe
