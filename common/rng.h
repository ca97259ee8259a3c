// A small deterministic RNG (splitmix64) whose sequence is the same on every platform and
// standard library; used for data shuffling and synthetic data so runs reproduce exactly.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lethe {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next();
  uint64_t below(uint64_t n);  // uniform in [0, n), n > 0
  double uniform();            // [0, 1)
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[below(v.size())];
  }

 private:
  uint64_t state_;
};

// Fisher-Yates permutation of [0, n) from `seed`.
std::vector<int64_t> permutation(int64_t n, uint64_t seed);

}  // namespace lethe
