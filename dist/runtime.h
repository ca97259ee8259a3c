// Process placement (filled by mpi_init in dist/mpi_env.h), and the thread budget per rank:
// cores / local ranks (4 ranks x 2 threads on 2 cores ran 3.5x slower than 4 x 1). The torch
// wheel's LibTorch has one pool: its OpenMP intra-op threads, which its bundled MKL BLAS also
// runs on, so the whole budget goes there (measured with the wheel: docs/PERFORMANCE.md).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dist/communicator.h"

namespace lethe {

struct RankInfo {
  int world_rank = 0, world_size = 1;
  int local_rank = 0, local_size = 1;
};

// The process-wide settings every command shares.
struct RuntimeOptions {
  int threads = 0;                      // --threads: LibTorch intra-op threads per rank (0: cores / local ranks)
  std::string log_level = "info";       // --log-level
  std::string log_file;                 // --log-file (per rank: .rankN appended)
  uint64_t seed = 1234;                 // --seed
  std::string device = "auto";          // --device: auto, cpu or cuda (distributed commands)
  double first_step_timeout_s = 300.0;  // --first-step-timeout: collective deadline until the first step
  double timeout_s = 100.0;             // --timeout: collective deadline afterwards
  double join_timeout_s = 86400.0;      // --join-timeout: rank groups meeting after independent work
};

// Built once at start-up (launcher/main.cpp) and passed down: MPI is initialised once, the
// device chosen, and the world communicator (MPI on CPU, NCCL on CUDA) created.
struct Runtime {
  RuntimeOptions options;
  RankInfo rank;
  torch::Device device = torch::kCPU;
  std::unique_ptr<Communicator> world;
};

// Peak resident memory of this process (MiB).
int64_t peak_rss_mib();
// Collective: every rank's peak_rss_mib(), logged as "<what> (MiB): [r0, r1, ...]".
std::vector<int64_t> log_peak_rss(Communicator& comm, const std::string& what);

// Sets LibTorch's intra-op threads to `requested` (<= 0: cores / local ranks) and returns it.
int configure_threads(int requested, const RankInfo& r);
// Versions of the libraries lethe runs on, for the start-up log.
std::string runtime_versions();

}  // namespace lethe
