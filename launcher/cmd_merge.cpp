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
  o.require("base", &f.base, "the base model theta_0 (HF or native checkpoint)");
  o.add("models", &f.models, "the models to merge (two or more directories)",
        Check<std::vector<std::string>>([](const std::vector<std::string>& v) {
          return v.size() >= 2 ? "" : ": give two or more model directories to merge";
        }),
        true);
  o.add("max-tensors", &f.max_tensors,
        "merge at most this many tensors per rank in this run, then exit 75 to be resumed (0: all)",
        non_negative<int64_t>());
  bind_merge(o, f.merge);
  bind_output(o, f.output);
}

int run(const MergeFlags& f, const Runtime& rt, const json&) {
  auto rule = make_merge_method(f.merge, f.models.size());
  // Every checkpoint is opened and compared (names, dtypes, shapes) before anything is written.
  TensorReader base(f.base);
  std::vector<TensorReader> models;
  for (auto& d : f.models) {
    models.emplace_back(d);
    require_same_tensors(base, models.back());
  }
  Communicator& comm = *rt.world;
  MergeOutput mo = plan_merge_output(base, f.output.out, f.output.format, f.output.max_shard_bytes);
  json job = merge_job_json(f.merge, f.output.format, f.output.max_shard_bytes);
  job["base"] = f.base;
  job["models"] = f.models;
  spdlog::info("merge: {} models onto {} with {}, {} tensors, {} output shard(s), {} rank(s)", models.size(), f.base,
               describe(f.merge), mo.names.size(), mo.shards.size(), comm.size());
  if (open_merge_output(mo, job, comm)) return 0;  // finished by an earlier run of this command
  return merge_from_disk(base, models, *rule, mo, job, comm, f.max_tensors);
}

}  // namespace

Command merge_command() {
  Command c = make_command<MergeFlags>(
      "merge", "merge checkpoints of one base model from disk (" + merge_rule_list() + ")", true, false, declare, run);
  c.resumable = true;
  return c;
}

}  // namespace lethe
