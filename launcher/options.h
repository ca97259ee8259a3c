// Subcommand options: declared once with defaults and help (Boost.Program_options), read
// from the command line and an optional INI-style --config file (the command line wins),
// validated with the option's name in the error, and turned into JSON for logs/checkpoints.
#pragma once
#include "data/chat_template.h"
#include <boost/program_options.hpp>
#include <functional>
#include <string>
#include <vector>

#include "common/json_io.h"

namespace lethe {

namespace po = boost::program_options;

struct Command {
  std::string name;
  std::string summary;
  std::function<void(po::options_description&)> add_options;
  std::function<int(const po::variables_map&, const json& effective)> run;
  bool distributed = false;  // runs on every rank; other commands run on rank 0 only
};

const std::vector<Command>& commands();

// Returns false when --help was printed.
bool parse_command(const Command& cmd, int argc, const char* const* argv, po::variables_map& vm, json& effective);
json effective_config(const po::variables_map& vm);

// Shared option groups.
void add_runtime_options(po::options_description& d);  // --threads --log-level --log-file --seed
void add_train_options(po::options_description& d);    // steps, batch, lr, schedule, clipping, LoRA ...
struct TrainOptions;
TrainOptions read_train_options(const po::variables_map& vm);

// Records from the file in option `name`, filtered by `<name>-filter key=value` options.
struct Example;
std::vector<Example> load_split(const po::variables_map& vm, const std::string& name);
void add_split_options(po::options_description& d, const std::string& name, const std::string& help);

// "a,b,c" -> {"a", "b", "c"} ("" -> {}).
std::vector<std::string> split_commas(const std::string& s);
// NAME=PATH (options --split, --eval-split): the records of PATH as split NAME.
struct NamedSplit;
NamedSplit named_split_option(const std::string& spec, const std::string& option, const std::string& data_format);

// Typed access with the option named in errors.
template <typename T>
T opt(const po::variables_map& vm, const std::string& name) {
  if (!vm.count(name)) throw std::runtime_error("missing option --" + name);
  return vm[name].as<T>();
}
std::string require_string(const po::variables_map& vm, const std::string& name);
// --template (auto: from model_dir's tokenizer_config.json) with --system-prompt.
ChatTemplate read_chat_template(const po::variables_map& vm, const std::string& model_dir);
void require_positive(const po::variables_map& vm, const std::string& name);

// Command bodies (one file each).
int run_init(const po::variables_map& vm, const json& cfg);
int run_synth(const po::variables_map& vm, const json& cfg);
int run_tokenize(const po::variables_map& vm, const json& cfg);
int run_finetune(const po::variables_map& vm, const json& cfg);
int run_unlearn(const po::variables_map& vm, const json& cfg);
int run_eval(const po::variables_map& vm, const json& cfg);
int run_convert(const po::variables_map& vm, const json& cfg);
void add_init_options(po::options_description& d);
void add_synth_options(po::options_description& d);
void add_tokenize_options(po::options_description& d);
void add_finetune_options(po::options_description& d);
void add_unlearn_options(po::options_description& d);
void add_eval_options(po::options_description& d);
void add_convert_options(po::options_description& d);
int run_merge(const po::variables_map& vm, const json& cfg);
int run_spunge(const po::variables_map& vm, const json& cfg);
void add_merge_command_options(po::options_description& d);
void add_spunge_options(po::options_description& d);

// Merge-rule options shared by `merge` and `spunge` (--merge, --merge.*, --max-shard-size).
struct MergeOptions;
void add_merge_options(po::options_description& d);
MergeOptions read_merge_options(const po::variables_map& vm);
uint64_t parse_byte_size(const std::string& s, const std::string& what);
json merge_job_json(const MergeOptions& o, const std::string& format, uint64_t max_shard);

}  // namespace lethe
