#include "dist/mpi_env.h"

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"

namespace lethe {

void mpi_fail(int rc, const char* expr, const char* file, int line) {
  char buf[MPI_MAX_ERROR_STRING];
  int n = 0;
  MPI_Error_string(rc, buf, &n);
  throw InternalError(std::string("MPI call `") + expr + "` failed at " + file + ":" + std::to_string(line) + ": " +
                      std::string(buf, size_t(n)));
}

bool mpi_active() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

void abort_job(int code) {
  if (!mpi_active()) std::_Exit(code);
  std::thread([code] {
    std::this_thread::sleep_for(std::chrono::seconds(5));
    std::_Exit(code);
  }).detach();
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

namespace {
struct StartupDeadline {
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  const char* phase = "start-up";
};
StartupDeadline& startup() {
  static StartupDeadline* d = new StartupDeadline;  // outlives the watchdog thread
  return *d;
}
// The launcher's rank for messages before MPI knows it.
std::string launcher_rank() {
  for (const char* v : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"})
    if (const char* r = std::getenv(v)) return r;
  return "?";
}
}  // namespace

void start_startup_deadline(int argc, char** argv) {
  double seconds = 300;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const std::string key = "--first-step-timeout";
    std::string value;
    if (a == key && i + 1 < argc) value = argv[i + 1];
    if (a.rfind(key + "=", 0) == 0) value = a.substr(key.size() + 1);
    if (value.empty()) continue;
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    if (end && *end == '\0' && v > 0 && v < 1e7) seconds = v;  // a bad value is refused later, by the option
  }
  std::thread([seconds] {
    StartupDeadline& d = startup();
    std::unique_lock<std::mutex> lock(d.m);
    if (d.cv.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return d.done; })) return;
    const std::string line = "lethe: rank " + launcher_rank() + " did not finish start-up within " +
                             std::to_string(int(seconds)) + " s (waiting in " + d.phase +
                             ": a peer rank is stalled or never started; see --first-step-timeout)\n";
    if (::write(2, line.data(), line.size()) < 0) {
    }
    ::_exit(1);
  }).detach();
}

void startup_phase(const char* phase) {
  std::lock_guard<std::mutex> lock(startup().m);
  startup().phase = phase;
}

void end_startup_deadline() {
  StartupDeadline& d = startup();
  {
    std::lock_guard<std::mutex> lock(d.m);
    d.done = true;
  }
  d.cv.notify_all();
}

bool started_by_launcher() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "SLURM_STEP_ID", "SLURM_PROCID",
                        "MPI_LOCALNRANKS", "HYDRA_CONTROL_FD"})
    if (std::getenv(v)) return true;
  return false;
}

RankInfo mpi_init(int* argc, char*** argv, bool single_without_launcher) {
  static bool called = false;
  LETHE_CHECK(!called, "mpi_init is called once per process (it runs a collective)");
  called = true;
  if (single_without_launcher && !mpi_active() && !started_by_launcher()) return RankInfo{};
  if (!mpi_active()) {
    int provided = 0;
    startup_phase("MPI_Init");
    MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    startup_phase("the start-up collectives");
    MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  }
  RankInfo r;
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &r.world_rank));
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &r.world_size));
  MPI_Comm shared;
  MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, r.world_rank, MPI_INFO_NULL, &shared));
  MPI_CHECK(MPI_Comm_rank(shared, &r.local_rank));
  MPI_CHECK(MPI_Comm_size(shared, &r.local_size));
  MPI_CHECK(MPI_Comm_free(&shared));
  if (const char* nt = std::getenv("SLURM_NTASKS")) {
    // Only meaningful inside a job step (srun sets SLURM_STEP_ID); sbatch's batch script
    // itself has SLURM_NTASKS too and legitimately runs one process.
    if (std::getenv("SLURM_STEP_ID") && std::atoi(nt) != r.world_size)
      throw InputError("SLURM_NTASKS=" + std::string(nt) + " but the MPI world has " + std::to_string(r.world_size) +
                       " rank(s): launch with `srun --mpi=pmix` (or mpirun) so the ranks form one job");
  }
  return r;
}

void mpi_finalize() {
  if (mpi_active()) MPI_Finalize();
}

std::string mpi_version() {
  char buf[MPI_MAX_LIBRARY_VERSION_STRING];
  int n = 0;
  MPI_Get_library_version(buf, &n);
  std::string s(buf, size_t(n));
  auto nl = s.find_first_of(",\n");
  return nl == std::string::npos ? s : s.substr(0, nl);
}

std::string rank_host_map() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  int size = 1;
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
  std::vector<char> all(size_t(size) * 256);
  MPI_CHECK(MPI_Allgather(host, 256, MPI_CHAR, all.data(), 256, MPI_CHAR, MPI_COMM_WORLD));
  std::string out;
  for (int r = 0; r < size; ++r) out += (r ? ", " : "") + std::to_string(r) + "->" + std::string(&all[size_t(r) * 256]);
  return out;
}

}  // namespace lethe
