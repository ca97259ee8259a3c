// MPI bootstrap: MPI_Init_thread once per process (singleton init when not under mpirun),
// world rank/size, local rank from MPI_Comm_split_type(SHARED), and the Slurm consistency
// check. Every MPI call goes through MPI_CHECK, which names the call, file and line.
#pragma once
#include <mpi.h>

#include <string>

#include "dist/runtime.h"

namespace lethe {

[[noreturn]] void mpi_fail(int rc, const char* expr, const char* file, int line);

#define MPI_CHECK(expr)                                                        \
  do {                                                                         \
    int _rc = (expr);                                                          \
    if (_rc != MPI_SUCCESS) ::lethe::mpi_fail(_rc, #expr, __FILE__, __LINE__); \
  } while (0)

// Initialises MPI and returns the placement; called once per process (launcher/main.cpp builds
// the Runtime from it), because it runs a collective (MPI_Comm_split_type). Refuses (InputError) to run when
// SLURM_NTASKS disagrees with the MPI world size: OpenMPI under srun without PMI starts N
// independent singletons, which would otherwise each train alone.
// With `single_without_launcher`, a process that no launcher started (started_by_launcher()) is
// one rank without MPI: MPI_Init as a singleton costs ~0.4 s (OpenMPI reads the machine's
// topology), and the world communicator is then the self communicator.
RankInfo mpi_init(int* argc, char*** argv, bool single_without_launcher = false);
// True when mpirun/mpiexec, srun or another PMI launcher started this process (its variables are set).
bool started_by_launcher();
void mpi_finalize();

// The start-up deadline: from before MPI_Init until end_startup_deadline() (the world and device
// communicators built), a rank that waits longer than `seconds` (a peer stalled or never
// started) prints one line naming itself and the phase and exits 1, so the launcher ends the
// job instead of every rank waiting forever. The value comes from --first-step-timeout on the
// command line (read before MPI starts; 300 s when absent).
void start_startup_deadline(int argc, char** argv);
void startup_phase(const char* phase);  // names what the rank is waiting in ("MPI_Init", ...)
void end_startup_deadline();
bool mpi_active();
// MPI_Abort with a bound: a rank that cannot reach its launcher (a host whose link is down)
// would wait in MPI_Abort for as long as TCP retries, so a watchdog ends it with `code` after
// 5 s whatever MPI_Abort does.
[[noreturn]] void abort_job(int code);
std::string mpi_version();
// Host name of every rank, gathered on all ranks: the rank -> host map for the start-up log.
std::string rank_host_map();

}  // namespace lethe
