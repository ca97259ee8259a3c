// `lethe merge`: merges fine-tuned or unlearned checkpoints of one base model from disk, tensor
// by tensor (HF safetensors single or sharded, native HDF5), distributed over the ranks,
// resumable, into a native checkpoint or an HF-loadable directory (--format hf).
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "launcher/command.h"
#include "launcher/option_groups.h"
#include "merge/merge_io.h"

namespace lethe {

namespace {

struct MergeFlags {
  std::string base;
  std::vector<std::string> models;
  OutputOptions output;
  MergeOptions merge;
  int64_t max_tensors = 0;
};

void declare(OptionSet& o, MergeFlags& f, const RuntimeOptions&) {
  o.group("merge", "Merge");
  bind_merge_inputs(o, f.base, f.models);
  o.add(
      "max-tensors", &f.max_tensors,
      "stop at the first output shard boundary after this many tensors per rank, exit 75, resume by rerunning (0: all)",
      non_negative<int64_t>());
  bind_merge(o, f.merge);
  bind_output(o, f.output);
}

int run(const MergeFlags& f, const Runtime& rt, const json&) {
  return merge_checkpoints(f.base, f.models, f.merge, f.output, *rt.world, f.max_tensors);
}

}  // namespace

Command merge_command() {
  Command c = make_command<MergeFlags>(
      "merge", "merge checkpoints of one base model from disk (" + merge_rule_list() + ")", true, false, declare, run);
  c.resumable = true;
  return c;
}

}  // namespace lethe
