// `lethe synth`: KnowUnDo-style data, deterministic from a seed.
// Privacy: fictitious authors; name, genre, birthplace, award are retention scope; parents,
// email, address, phone are unlearn scope. Copyright: fictitious books; author, genre and
// review are retention scope; verbatim passages and continuation requests are unlearn scope.
// Every record carries domain, scope, entity, fact, kind and region/genre attributes (for
// SPUNGE splits) and a split (train, or eval: the same facts asked in other words).
#pragma once
#include <string>
#include <vector>

#include "data/dataset.h"

namespace lethe {

struct SynthOptions {
  uint64_t seed = 1234;
  int64_t people = 12;
  int64_t books = 6;
};

struct SynthData {
  std::vector<Example> train, eval;
};

SynthData synthesize(const SynthOptions& opt);
// Writes train.jsonl, forget.jsonl, retain.jsonl, eval_forget.jsonl, eval_retain.jsonl and
// manifest.json into `dir` (which must not exist or be empty).
void write_synth_dir(const std::string& dir, const SynthData& data, const SynthOptions& opt);

}  // namespace lethe
