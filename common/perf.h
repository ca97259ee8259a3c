// Measuring helpers for `lethe bench`: the median of samples, the machine's GEMM rate measured
// on the spot, and the peak memory of this process on its device.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace lethe {

// The median of `samples` (the mean of the middle two for an even count); 0 when empty.
double median(std::vector<double> samples);

// FLOP/s of a square `dtype` matmul on `device` (n = 2048), best of a few
// timed repeats after a warm-up, with LibTorch's current thread count: the peak that MFU is
// measured against on CPU.
double measure_gemm_flops(torch::Device device, torch::ScalarType dtype);

// The peak memory of this process in MiB: resident set size on CPU, the caching allocator's
// peak allocation on CUDA (since the last reset_peak_memory).
int64_t peak_memory_mib(torch::Device device);
void reset_peak_memory(torch::Device device);

// Waits for the device's queued work (a no-op on CPU).
void synchronize(torch::Device device);

}  // namespace lethe
