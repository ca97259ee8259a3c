// A subcommand: its name, summary, where it runs, and `bind`, which binds the command's flags
// to a fresh configuration (launcher/option_groups.h) and returns the function that runs it
// with the Runtime built once in main. Each cmd_*.cpp declares, reads and calls the library.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/json_io.h"
#include "dist/runtime.h"
#include "launcher/option_set.h"

namespace lethe {

using RunCommand = std::function<int(const Runtime& rt, const json& effective_config)>;

struct Command {
  std::string name;
  std::string summary;
  bool distributed = false;  // runs on every rank; other commands run on rank 0 only
  bool uses_device = false;  // --device, and the world communicator on that device
  bool resumable = false;    // a stop by signal exits kExitPreempted (dist/signals.h): rerun to resume
  std::function<RunCommand(OptionSet& options, const RuntimeOptions& runtime)> bind;
};

// A Command over a flags struct: `declare` binds the flags of a fresh Flags (its rules may keep a
// reference to it: it lives as long as the returned RunCommand) and `run` runs the command.
template <class Flags>
Command make_command(std::string name, std::string summary, bool distributed, bool uses_device,
                     void (*declare)(OptionSet&, Flags&, const RuntimeOptions&),
                     int (*run)(const Flags&, const Runtime&, const json&)) {
  auto bind = [declare, run](OptionSet& options, const RuntimeOptions& runtime) -> RunCommand {
    auto flags = std::make_shared<Flags>();
    declare(options, *flags, runtime);
    return [flags, run](const Runtime& rt, const json& config) { return run(*flags, rt, config); };
  };
  Command c;
  c.name = std::move(name);
  c.summary = std::move(summary);
  c.distributed = distributed;
  c.uses_device = uses_device;
  c.bind = bind;
  return c;
}

Command init_command();
Command synth_command();
Command tokenize_command();
Command finetune_command();
Command unlearn_command();
Command eval_command();
Command probe_command();
Command convert_command();
Command merge_command();
Command spunge_command();
Command sweep_command();
// `bench step`, `bench checkpoint`, `bench merge` (a two-word command name).
std::vector<Command> bench_commands();

// Every command, in the order `lethe --help` lists them.
const std::vector<Command>& commands();

}  // namespace lethe
