#include "common/perf.h"

#include <algorithm>
#include <chrono>

#include "dist/runtime.h"

#ifdef LETHE_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace lethe {

double median(std::vector<double> samples) {
  if (samples.empty()) return 0;
  const size_t n = samples.size(), mid = n / 2;
  std::nth_element(samples.begin(), samples.begin() + long(mid), samples.end());
  if (n % 2) return samples[mid];
  const double upper = samples[mid];
  return (upper + *std::max_element(samples.begin(), samples.begin() + long(mid))) / 2;
}

void synchronize(torch::Device device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : 0);
}

double measure_gemm_flops(torch::Device device, torch::ScalarType dtype) {
  torch::NoGradGuard ng;
  const int64_t n = 2048;
  auto opts = torch::TensorOptions().device(device).dtype(dtype);
  auto a = torch::randn({n, n}, opts), b = torch::randn({n, n}, opts), c = torch::empty({n, n}, opts);
  const int inner = device.is_cuda() ? 20 : 1;
  torch::mm_out(c, a, b);  // warm-up (allocations, kernel selection)
  synchronize(device);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < inner; ++i) torch::mm_out(c, a, b);
    synchronize(device);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * double(n) * double(n) * double(n) * inner / s);
  }
  return best;
}

int64_t peak_memory_mib(torch::Device device) {
#ifdef LETHE_TORCH_CUDA
  if (device.is_cuda()) {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.has_index() ? device.index() : 0);
    const auto aggregate = size_t(c10::CachingAllocator::StatType::AGGREGATE);
    return stats.allocated_bytes[aggregate].peak / (1024 * 1024);
  }
#endif
  (void)device;
  return peak_rss_mib();
}

void reset_peak_memory(torch::Device device) {
#ifdef LETHE_TORCH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.has_index() ? device.index() : 0);
#endif
  (void)device;
}

}  // namespace lethe
