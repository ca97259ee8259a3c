// INI option files (--config): parsed against a set of options of every kind and check, as
// lethe's commands declare them.
#include <sstream>

#include "fuzz_common.h"
#include "launcher/option_set.h"

namespace po = boost::program_options;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1u << 16)) return 0;
  double lr = 1e-3, ratio = 0;
  int64_t steps = 10;
  int threads = 0;
  uint64_t bytes = 0;
  std::string out;
  bool resume = false;
  std::vector<std::string> filters;
  lethe::OptionSet o;
  o.group("train")
      .add("lr", &lr, "", lethe::positive<double>())
      .add("min-lr-ratio", &ratio, "", lethe::in_range(0.0, 1.0))
      .add("steps", &steps, "", lethe::positive<int64_t>())
      .add("threads", &threads, "", lethe::non_negative<int>())
      .add("bytes", &bytes, "")
      .add("resume", &resume, "")
      .add("filter", &filters, "")
      .group("output")
      .add("out", &out, "");
  po::options_description d;
  o.declare(d);
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  try {
    po::variables_map vm;
    po::store(po::parse_config_file(in, d, false), vm);
    po::notify(vm);
    std::vector<std::string> errors;
    o.read(vm, errors);
    if (errors.empty()) o.to_json().dump();  // as the launcher: the effective configuration
  } catch (const po::error&) {               // the launcher turns these into its one-line exit 2
  }
  return 0;
}
