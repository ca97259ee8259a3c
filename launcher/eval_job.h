// What `lethe eval` and `lethe probe` share before they evaluate: the job from the flags with
// --max-len and the effective configuration, and the model's tokenizer (a missing or empty model
// directory is named before its tokenizer).
#pragma once
#include "data/data_options.h"
#include "eval/report_writer.h"

namespace lethe {

struct PreparedEval {
  EvalJob job;
  Tokenizer tok;
};
PreparedEval prepare_eval(const EvalJob& flags, const DataOptions& data, const json& config);

}  // namespace lethe
