// lethe: machine unlearning for LLMs. `lethe <command> [options]`; `lethe <command> --help`.
// Runs as one process or as MPI ranks (mpirun, srun --mpi=pmix).
#include <spdlog/spdlog.h>

#include <iostream>

#include "common/error.h"
#include "dist/communicator.h"
#include "dist/mpi_env.h"
#include "dist/runtime.h"
#include "dist/signals.h"
#include "launcher/logging.h"
#include "launcher/options.h"

namespace {

void usage(std::ostream& os) {
  os << "usage: lethe <command> [options]   (lethe <command> --help for its options)\n\ncommands:\n";
  for (auto& c : lethe::commands()) os << "  " << c.name << std::string(10 - c.name.size(), ' ') << c.summary << "\n";
}

// Ends the process with `code`; with several ranks a failing rank takes the job down so no
// peer waits in a collective.
[[noreturn]] void finish(int code, int world_size) {
  if (code != 0 && world_size > 1) {
    std::cerr << std::flush;
    MPI_Abort(MPI_COMM_WORLD, code);
  }
  lethe::mpi_finalize();
  std::exit(code);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace lethe;
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  const Command* cmd = nullptr;
  for (auto& c : commands())
    if (c.name == name) cmd = &c;
  if (!cmd) {
    std::cerr << "lethe: unknown command '" << name << "'\n";
    usage(std::cerr);
    return 2;
  }
  RankInfo rank;
  try {
    rank = mpi_init(&argc, &argv);
  } catch (const std::exception& e) {
    std::cerr << "lethe " << name << ": error: " << e.what() << "\n";
    finish(2, 1);
  }
  int code = 0;
  try {
    po::variables_map vm;
    json effective;
    if (!parse_command(*cmd, argc - 1, argv + 1, vm, effective)) finish(0, 1);
    setup_logging(vm["log-level"].as<std::string>(), vm["log-file"].as<std::string>(), rank.world_rank);
    int threads = configure_threads(vm["threads"].as<int>(), rank);
    if (vm.count("timeout")) {
      process_deadline().first_step_s = vm["first-step-timeout"].as<double>();
      process_deadline().after_s = vm["timeout"].as<double>();
    }
    install_preemption_handlers();
    spdlog::info("lethe {}: {}, {}; per rank {} LibTorch thread(s); ranks {} (local size {})", name,
                 runtime_versions(), mpi_version(), threads, rank.world_size, rank.local_size);
    if (rank.world_size > 1) spdlog::info("rank -> host: {}", rank_host_map());
    spdlog::info("effective configuration: {}", json_text(effective));
    if (cmd->distributed || rank.world_rank == 0) code = cmd->run(vm, effective);
    if (!cmd->distributed && rank.world_size > 1) make_world_communicator()->barrier();
  } catch (const InputError& e) {
    std::cerr << "lethe " << name << ": error: " << e.what() << "\n";
    finish(2, rank.world_size);
  } catch (const std::exception& e) {
    std::cerr << "lethe " << name << ": internal error: " << e.what() << "\n";
    finish(1, rank.world_size);
  }
  finish(code, rank.world_size);
}
