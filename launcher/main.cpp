// lethe: machine unlearning for LLMs. `lethe <command> [options]`; `lethe <command> --help`;
// `lethe --version`. Runs as one process or as MPI ranks (mpirun, srun --mpi=pmix).
// main parses and validates the command's options (every problem named at once), builds the
// Runtime once (MPI, device, world communicator), logs the effective configuration and runs.
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <sstream>

#include "common/error.h"
#include "common/fs.h"
#include "dist/mpi_env.h"
#include "dist/process_groups.h"
#include "dist/runtime.h"
#include "dist/signals.h"
#include "launcher/command.h"
#include "launcher/logging.h"
#include "launcher/option_groups.h"

#ifndef LETHE_VERSION
#define LETHE_VERSION "0.0.0"
#endif
#ifndef LETHE_COMMIT
#define LETHE_COMMIT "unknown"
#endif

namespace lethe {

const std::vector<Command>& commands() {
  static const std::vector<Command> cmds = [] {
    std::vector<Command> c = {init_command(),    synth_command(),  tokenize_command(), finetune_command(),
                              unlearn_command(), eval_command(),   probe_command(),    convert_command(),
                              merge_command(),   spunge_command(), sweep_command()};
    for (auto& b : bench_commands()) c.push_back(b);
    return c;
  }();
  return cmds;
}

}  // namespace lethe

namespace {

using namespace lethe;

void usage(std::ostream& os) {
  os << "usage: lethe <command> [options]   (lethe <command> --help for its options; lethe --version)\n\ncommands:\n";
  for (auto& c : commands())
    os << "  " << c.name << std::string(c.name.size() < 18 ? 18 - c.name.size() : 1, ' ') << c.summary << "\n";
}

// Ends the process with `code`; with several ranks a failing rank takes the job down so no
// peer waits in a collective.
[[noreturn]] void finish(int code, int world_size) {
  // Preemption (75) is agreed by every rank, which all checkpointed and exit the same way: no
  // abort, so the launcher passes 75 on.
  if (code != 0 && code != kExitPreempted && world_size > 1) {
    std::cerr << std::flush;
    spdlog::default_logger()->flush();
    abort_job(code);
  }
  mpi_finalize();
  if (code != 0) {
    // A failed run skips the libraries' exit handlers: HDF5 would try again to close a file
    // whose write failed (disk full) and crash at exit.
    spdlog::default_logger()->flush();
    std::cout << std::flush;
    std::cerr << std::flush;
    ::_exit(code);
  }
  std::exit(code);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  std::string name = argv[1];
  // A two-word command (`bench step`): its second word is part of the name.
  int skip = 1;
  if (name == "bench" && argc > 2 && argv[2][0] != '-') {
    name += std::string(" ") + argv[2];
    skip = 2;
  }
  if (name == "--version") {
    std::cout << "lethe " << LETHE_VERSION << " (commit " << LETHE_COMMIT << "); " << runtime_versions() << ", "
              << mpi_version() << "\n";
    return 0;
  }
  const Command* cmd = nullptr;
  for (auto& c : commands())
    if (c.name == name) cmd = &c;
  if (!cmd) {
    std::cerr << "lethe: unknown command '" << name << "'\n";
    usage(std::cerr);
    return 2;
  }
  Runtime rt;
  try {
    start_startup_deadline(argc, argv);  // until the communicators are built
    rt.rank = mpi_init(&argc, &argv, /*single_without_launcher=*/true);
  } catch (const std::exception& e) {
    std::cerr << "lethe " << name << ": error: " << e.what() << "\n";
    finish(2, 1);
  }
  int code = 0;
  try {
    // ---- options: declared once per group, read into the structs, validated together ----
    OptionSet options;
    bind_runtime(options, rt.options, cmd->distributed, cmd->uses_device);
    RunCommand run = cmd->bind(options, rt.options);
    po::options_description desc("lethe " + cmd->name + ": " + cmd->summary + "\n\nOptions");
    desc.add_options()("help,h", "show this help")("config", po::value<std::string>(),
                                                   "INI-style file of option = value lines; command-line options win");
    options.declare(desc);
    po::variables_map vm;
    try {
      po::store(po::command_line_parser(argc - skip, argv + skip).options(desc).run(), vm);
      if (vm.count("help")) {
        std::cout << desc << "\n";
        finish(0, 1);
      }
      if (vm.count("config")) {
        std::istringstream in(read_text_file(vm["config"].as<std::string>()));
        po::store(po::parse_config_file(in, desc, false), vm);
      }
      po::notify(vm);
    } catch (const po::error& e) {
      throw InputError("lethe " + cmd->name + ": " + std::string(e.what()) + " (see lethe " + cmd->name + " --help)");
    }
    std::vector<std::string> errors;
    options.read(vm, errors);
    if (!errors.empty()) {
      std::string msg = errors.size() == 1 ? errors[0] : std::to_string(errors.size()) + " problems: ";
      for (size_t i = 0; errors.size() > 1 && i < errors.size(); ++i) msg += (i ? "; " : "") + errors[i];
      throw InputError(msg);
    }
    json effective = options.to_json();
    effective["command"] = cmd->name;

    // ---- the runtime, built once ----
    setup_logging(rt.options.log_level, rt.options.log_file, rt.rank.world_rank);
    const int threads = configure_threads(rt.options.threads, rt.rank);
    process_deadline().first_step_s = rt.options.first_step_timeout_s;
    process_deadline().after_s = rt.options.timeout_s;
    process_deadline().join_s = rt.options.join_timeout_s;
    install_preemption_handlers(cmd->resumable);
    rt.device = cmd->uses_device ? select_device(rt.options.device, rt.rank) : torch::Device(torch::kCPU);
    rt.world = cmd->distributed ? make_device_communicator(rt.device) : nullptr;
    spdlog::info("lethe {}: {}, {}; per rank {} LibTorch thread(s); ranks {} (local size {})", name, runtime_versions(),
                 mpi_version(), threads, rt.rank.world_size, rt.rank.local_size);
    if (rt.rank.world_size > 1) spdlog::info("rank -> host: {}", rank_host_map());
    end_startup_deadline();  // from here the collectives' own deadlines (--first-step-timeout, --timeout)
    spdlog::info("effective configuration: {}", json_text(effective));

    // ---- run ----
    if (cmd->distributed || rt.rank.world_rank == 0) code = run(rt, effective);
    if (!cmd->distributed && rt.rank.world_size > 1) make_world_communicator()->barrier();
  } catch (const InputError& e) {
    std::cerr << "lethe " << name << ": error: " << e.what() << "\n";
    finish(2, rt.rank.world_size);
  } catch (const std::filesystem::filesystem_error& e) {  // the path and the reason (ENOSPC, EACCES, ...)
    std::cerr << "lethe " << name << ": error: " << e.what() << "\n";
    finish(2, rt.rank.world_size);
  } catch (const std::bad_alloc&) {
    std::cerr << "lethe " << name << ": error: out of memory (the input asks for more than this machine has)\n";
    finish(2, rt.rank.world_size);
  } catch (const std::exception& e) {
    std::cerr << "lethe " << name << ": internal error: " << e.what() << "\n";
    finish(1, rt.rank.world_size);
  }
  rt.world.reset();
  finish(code, rt.rank.world_size);
}
