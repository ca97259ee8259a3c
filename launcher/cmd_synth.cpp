// `lethe synth`: KnowUnDo-style privacy/copyright data, deterministic from --seed.
#include <spdlog/spdlog.h>

#include "data/synth.h"
#include "launcher/command.h"
#include "launcher/option_groups.h"

namespace lethe {

namespace {

struct SynthFlags {
  SynthOptions synth;
  std::string out;
};

void declare(OptionSet& o, SynthFlags& f, const RuntimeOptions&) {
  bind_out_dir(o, f.out, "output directory (must not exist or be empty)");
  o.group("synth", "Data");
  o.add("people", &f.synth.people, "fictitious authors (privacy domain)", non_negative<int64_t>());
  o.add("books", &f.synth.books, "fictitious books (copyright domain)", non_negative<int64_t>());
}

int run(const SynthFlags& f, const Runtime& rt, const json&) {
  SynthOptions so = f.synth;
  so.seed = rt.options.seed;
  SynthData d = synthesize(so);
  write_synth_dir(f.out, d, so);
  spdlog::info("synth: {} train and {} eval records written to {}", d.train.size(), d.eval.size(), f.out);
  return 0;
}

}  // namespace

Command synth_command() {
  return make_command<SynthFlags>("synth", "generate KnowUnDo-style privacy/copyright data, deterministic from a seed",
                                  false, false, declare, run);
}

}  // namespace lethe
