#include <spdlog/spdlog.h>

#include "data/synth.h"
#include "launcher/options.h"

namespace lethe {

void add_synth_options(po::options_description& d) {
  d.add_options()("out", po::value<std::string>(), "output directory (must not exist or be empty)")(
      "people", po::value<int64_t>()->default_value(12), "fictitious authors (privacy domain)")(
      "books", po::value<int64_t>()->default_value(6), "fictitious books (copyright domain)");
}

int run_synth(const po::variables_map& vm, const json&) {
  SynthOptions o;
  o.seed = vm["seed"].as<uint64_t>();
  o.people = vm["people"].as<int64_t>();
  o.books = vm["books"].as<int64_t>();
  std::string out = require_string(vm, "out");
  SynthData d = synthesize(o);
  write_synth_dir(out, d, o);
  spdlog::info("synth: {} train and {} eval records written to {}", d.train.size(), d.eval.size(), out);
  return 0;
}

}  // namespace lethe
