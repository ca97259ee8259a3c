// Process placement (filled by mpi_init in dist/mpi_env.h), and the thread budget per rank:
// cores / local ranks (4 ranks x 2 threads on 2 cores ran 3.5x slower than 4 x 1). The torch
// wheel's LibTorch has one pool: its OpenMP intra-op threads, which its bundled MKL BLAS also
// runs on, so the whole budget goes there (measured with the wheel: docs/PERFORMANCE.md).
#pragma once
#include <string>

namespace lethe {

struct RankInfo {
  int world_rank = 0, world_size = 1;
  int local_rank = 0, local_size = 1;
};

// Sets LibTorch's intra-op threads to `requested` (<= 0: cores / local ranks) and returns it.
int configure_threads(int requested, const RankInfo& r);
// Versions of the libraries lethe runs on, for the start-up log.
std::string runtime_versions();

}  // namespace lethe
