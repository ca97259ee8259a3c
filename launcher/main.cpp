// lethe: machine unlearning for LLMs. `lethe <command> [options]`; `lethe <command> --help`.
#include <spdlog/spdlog.h>

#include <iostream>

#include "common/error.h"
#include "dist/runtime.h"
#include "launcher/logging.h"
#include "launcher/options.h"

namespace {

void usage(std::ostream& os) {
  os << "usage: lethe <command> [options]   (lethe <command> --help for its options)\n\ncommands:\n";
  for (auto& c : lethe::commands()) os << "  " << c.name << std::string(10 - c.name.size(), ' ') << c.summary << "\n";
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
  RankInfo rank = rank_from_env();
  try {
    po::variables_map vm;
    json effective;
    if (!parse_command(*cmd, argc - 1, argv + 1, vm, effective)) return 0;
    setup_logging(vm["log-level"].as<std::string>(), vm["log-file"].as<std::string>(), rank.world_rank);
    int threads = configure_threads(vm["threads"].as<int>(), rank);
    spdlog::info("lethe {}: {}; {} LibTorch threads; rank {}/{} (local {}/{})", name, runtime_versions(), threads,
                 rank.world_rank, rank.world_size, rank.local_rank, rank.local_size);
    spdlog::info("effective configuration: {}", effective.dump());
    return cmd->run(vm, effective);
  } catch (const InputError& e) {
    std::cerr << "lethe " << name << ": error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "lethe " << name << ": internal error: " << e.what() << "\n";
    return 1;
  }
}
