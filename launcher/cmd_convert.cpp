#include <spdlog/spdlog.h>

#include "checkpoints/model_io.h"
#include "common/error.h"
#include "launcher/options.h"

namespace lethe {

void add_convert_options(po::options_description& d) {
  d.add_options()("in", po::value<std::string>(), "model directory (HF or native checkpoint)")(
      "out", po::value<std::string>(), "output directory (must not exist)")(
      "to", po::value<std::string>()->default_value("native"), "native or hf")(
      "dtype", po::value<std::string>()->default_value(""), "cast to float32 or bfloat16 (default: keep)")(
      "max-shard-mb", po::value<int64_t>()->default_value(0), "hf: shard size limit in MiB (0: one file)");
}

int run_convert(const po::variables_map& vm, const json& cfg) {
  std::string in = require_string(vm, "in"), out = require_string(vm, "out"), to = vm["to"].as<std::string>();
  if (to != "native" && to != "hf") throw InputError("--to: unknown format '" + to + "' (native, hf)");
  if (vm["max-shard-mb"].as<int64_t>() < 0) throw InputError("--max-shard-mb must be >= 0");
  CausalLM model = load_model(in, vm["dtype"].as<std::string>());
  save_model(model, out, to, cfg, in, uint64_t(vm["max-shard-mb"].as<int64_t>()) << 20);
  spdlog::info("convert: {} -> {} ({})", in, out, to);
  return 0;
}

}  // namespace lethe
