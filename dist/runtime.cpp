#include "dist/runtime.h"

#include <H5public.h>
#include <torch/torch.h>

#include <sys/resource.h>

#include <cstdlib>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "dist/collectives.h"

#ifdef LETHE_HAVE_NCCL
namespace lethe {
std::string nccl_version_string();
}
#endif

namespace lethe {

int configure_threads(int requested, const RankInfo& r) {
  const int cores = std::max(1, int(std::thread::hardware_concurrency()));
  const int budget = std::max(1, cores / std::max(1, r.local_size));
  const int n = requested > 0 ? requested : budget;
  torch::set_num_threads(n);
  return n;
}

std::string runtime_versions() {
  unsigned maj = 0, min = 0, rel = 0;
  H5get_libversion(&maj, &min, &rel);
  std::string s = "LibTorch " + std::string(TORCH_VERSION) + ", HDF5 " + std::to_string(maj) + "." +
                  std::to_string(min) + "." + std::to_string(rel);
#ifdef LETHE_HAVE_NCCL
  s += ", NCCL " + nccl_version_string();
#else
  s += ", NCCL not built";
#endif
  return s;
}

std::vector<int64_t> log_peak_rss(Communicator& comm, const std::string& what) {
  std::vector<int64_t> peak = all_gather_int(comm, peak_rss_mib());
  std::string list;
  for (int64_t v : peak) list += (list.empty() ? "" : ",") + std::to_string(v);
  spdlog::info("{} (MiB): [{}]", what, list);
  return peak;
}

int64_t peak_rss_mib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return int64_t(ru.ru_maxrss / 1024);
}

}  // namespace lethe
