// Process placement (filled by mpi_init in dist/mpi_env.h), and the thread
// budget per rank: cores / local ranks (4 ranks x 2 threads on 2 cores ran 3.5x slower than
// 4 x 1). The budget goes to OpenBLAS, which runs the GEMMs on its own pthreads; LibTorch's
// OpenMP pool gets one thread by default, because both pools together oversubscribe the cores
// (2 cores, one rank: a 0.9M-parameter step took 0.59 s with 2 LibTorch threads and 0.31 s
// with 1; a 56M one 5.50 s and 4.68 s).
#pragma once
#include <string>

namespace lethe {

struct RankInfo {
  int world_rank = 0, world_size = 1;
  int local_rank = 0, local_size = 1;
};

// Sets OpenBLAS threads to the budget and LibTorch threads to `requested` (<= 0: 1).
// Returns the LibTorch thread count; *blas_threads receives the BLAS one (0: not OpenBLAS).
int configure_threads(int requested, const RankInfo& r, int* blas_threads = nullptr);
// Versions of the libraries lethe runs on, for the start-up log.
std::string runtime_versions();

}  // namespace lethe
