// Process placement read from the launcher's environment (mpirun, srun) before any MPI
// call, and the LibTorch thread budget: cores / local ranks (4 ranks x 2 threads on 2 cores
// ran 3.5x slower than 4 x 1). The MPI/NCCL bootstrap builds on this.
#pragma once
#include <string>

namespace lethe {

struct RankInfo {
  int world_rank = 0, world_size = 1;
  int local_rank = 0, local_size = 1;
};

RankInfo rank_from_env();
// requested <= 0: cores / local ranks (at least 1). Returns the number set.
int configure_threads(int requested, const RankInfo& r);
// Versions of the libraries lethe runs on, for the start-up log.
std::string runtime_versions();

}  // namespace lethe
