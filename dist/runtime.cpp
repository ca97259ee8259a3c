#include "dist/runtime.h"

#include <H5public.h>
#include <torch/torch.h>

#include <dlfcn.h>

#include <cstdlib>
#include <thread>

#include "common/error.h"

#ifdef LETHE_HAVE_NCCL
namespace lethe {
std::string nccl_version_string();
}
#endif

namespace lethe {

int configure_threads(int requested, const RankInfo& r, int* blas_threads) {
  const int cores = int(std::thread::hardware_concurrency());
  const int budget = std::max(1, cores / std::max(1, r.local_size));
  using SetThreads = void (*)(int);
  auto* set_blas = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set_blas) set_blas(budget);
  if (blas_threads) *blas_threads = set_blas ? budget : 0;
  const int n = requested > 0 ? requested : 1;
  torch::set_num_threads(n);
  return n;
}

std::string runtime_versions() {
  unsigned maj = 0, min = 0, rel = 0;
  H5get_libversion(&maj, &min, &rel);
  std::string s = "LibTorch " + std::string(TORCH_VERSION) + ", HDF5 " + std::to_string(maj) + "." + std::to_string(min) +
                  "." + std::to_string(rel);
#ifdef LETHE_HAVE_NCCL
  s += ", NCCL " + nccl_version_string();
#else
  s += ", NCCL not built";
#endif
  return s;
}

}  // namespace lethe
