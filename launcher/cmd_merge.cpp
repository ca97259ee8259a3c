// `lethe merge`: merges fine-tuned or unlearned checkpoints of one base model from disk, tensor
// by tensor (HF safetensors single or sharded, native HDF5), distributed over the ranks,
// resumable, into an HF-loadable directory (or a native checkpoint).
#include <spdlog/spdlog.h>

#include <cmath>

#include "common/error.h"
#include "dist/process_groups.h"
#include "dist/signals.h"
#include "launcher/options.h"
#include "merge/merge_io.h"

namespace lethe {

void add_merge_options(po::options_description& d) {
  d.add_options()("merge", po::value<std::string>()->default_value("ties"),
                  "merge rule: task_arithmetic, linear, ties, dare_linear, dare_ties")(
      "merge.weights", po::value<std::string>()->default_value(""), "comma-separated weight per model (default: 1 each)")(
      "merge.density", po::value<double>()->default_value(0.2), "ties: share of each delta kept; dare: keep probability")(
      "merge.lambda", po::value<double>()->default_value(1.0), "scale of the merged delta (not linear)")(
      "merge.seed", po::value<uint64_t>()->default_value(0), "dare: seed of the drop masks")(
      "merge.rescale", po::value<std::string>()->default_value("inverse"),
      "dare: rescale kept entries by 1/density (inverse), to the delta's L1 norm (l1, mergekit's rescale) or not (none)")(
      "merge.trim", po::value<std::string>()->default_value("threshold"),
      "ties: keep entries >= the k-th magnitude (threshold) or exactly the top k, lower index first (topk, mergekit)")(
      "merge.normalize", po::value<std::string>()->default_value("auto"),
      "divide the merged delta by the weights: auto (linear, ties, dare_ties), true or false (mergekit's normalize)")(
      "max-shard-size", po::value<std::string>()->default_value("5GB"),
      "largest output shard (bytes, or with KB/MB/GB); also bounds the memory of shard assembly");
}

MergeOptions read_merge_options(const po::variables_map& vm) {
  MergeOptions o;
  o.method = vm["merge"].as<std::string>();
  for (auto& item : split_commas(vm["merge.weights"].as<std::string>())) {
    try {
      size_t used = 0;
      o.weights.push_back(std::stod(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw InputError("--merge.weights: '" + item + "' is not a number");
    }
  }
  o.density = vm["merge.density"].as<double>();
  o.lambda = vm["merge.lambda"].as<double>();
  o.seed = vm["merge.seed"].as<uint64_t>();
  o.rescale = vm["merge.rescale"].as<std::string>();
  o.trim = vm["merge.trim"].as<std::string>();
  o.normalize = vm["merge.normalize"].as<std::string>();
  return o;
}

uint64_t parse_byte_size(const std::string& s, const std::string& what) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    throw InputError(what + ": '" + s + "' is not a size (e.g. 5GB, 500MB, 1000000)");
  }
  std::string unit = s.substr(used);
  double mult = unit.empty() || unit == "B" ? 1 : unit == "KB" ? 1e3 : unit == "MB" ? 1e6 : unit == "GB" ? 1e9 : -1;
  if (mult < 0 || !(v > 0) || !std::isfinite(v)) throw InputError(what + ": '" + s + "' is not a size (e.g. 5GB, 500MB)");
  return uint64_t(v * mult);
}

json merge_job_json(const MergeOptions& o, const std::string& format, uint64_t max_shard) {
  return {{"method", o.method}, {"weights", o.weights}, {"density", o.density}, {"lambda", o.lambda},
          {"seed", o.seed}, {"rescale", o.rescale}, {"trim", o.trim}, {"normalize", o.normalize},
          {"format", format}, {"max_shard_bytes", max_shard}};
}

void add_merge_command_options(po::options_description& d) {
  d.add_options()("base", po::value<std::string>(), "the base model theta_0 (HF or native checkpoint)")(
      "models", po::value<std::vector<std::string>>()->multitoken(), "the models to merge (two or more directories)")(
      "out", po::value<std::string>(), "output directory (must not exist, or an interrupted merge of the same job)")(
      "format", po::value<std::string>()->default_value("hf"), "output format: hf or native")(
      "max-tensors", po::value<int64_t>()->default_value(0),
      "merge at most this many tensors per rank in this run, then exit 75 to be resumed (0: all)");
  add_merge_options(d);
}

int run_merge(const po::variables_map& vm, const json&) {
  const std::string base_dir = require_string(vm, "base"), out = require_string(vm, "out");
  if (!vm.count("models") || vm["models"].as<std::vector<std::string>>().size() < 2)
    throw InputError("--models: give two or more model directories to merge");
  const auto model_dirs = vm["models"].as<std::vector<std::string>>();
  if (vm["max-tensors"].as<int64_t>() < 0) throw InputError("--max-tensors must be >= 0");
  MergeOptions mopt = read_merge_options(vm);
  auto rule = make_merge_method(mopt, model_dirs.size());
  const std::string format = vm["format"].as<std::string>();
  const uint64_t max_shard = parse_byte_size(vm["max-shard-size"].as<std::string>(), "--max-shard-size");
  // Every checkpoint is opened and compared (names, dtypes, shapes) before anything is written.
  TensorReader base(base_dir);
  std::vector<TensorReader> models;
  for (auto& d : model_dirs) {
    models.emplace_back(d);
    require_same_tensors(base, models.back());
  }
  auto comm = make_world_communicator();
  MergeOutput mo = plan_merge_output(base, out, format, max_shard);
  json job = merge_job_json(mopt, format, max_shard);
  job["base"] = base_dir;
  job["models"] = model_dirs;
  spdlog::info("merge: {} models onto {} with {}, {} tensors, {} output shard(s), {} rank(s)", models.size(), base_dir,
               describe(mopt), mo.names.size(), mo.shards.size(), comm->size());
  open_merge_output(mo, job, *comm);
  return merge_from_disk(base, models, *rule, mo, job, *comm, vm["max-tensors"].as<int64_t>());
}

}  // namespace lethe
