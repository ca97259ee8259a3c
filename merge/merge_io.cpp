#include "merge/merge_io.h"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <filesystem>

#include "checkpoints/hdf5_checkpoint.h"
#include "checkpoints/model_io.h"
#include "checkpoints/safetensors.h"
#include "common/error.h"
#include "common/fs.h"
#include "dist/collectives.h"
#include "dist/signals.h"

namespace fs = std::filesystem;

namespace lethe {

namespace {

constexpr const char* kStaging = ".lethe-merge";
constexpr const char* kJobFile = "lethe_merge.json";  // the job description, written first

// Earlier versions staged every merged tensor here; an interrupted merge of theirs leaves it.
std::string staging_dir(const MergeOutput& mo) { return (fs::path(mo.out) / kStaging).string(); }

std::string shard_name(const MergeOutput& mo, size_t j) {
  return shard_file_name(j, mo.shards.size(), make_checkpoint_writer(mo.format)->shard_extension());
}

std::string shard_path(const MergeOutput& mo, size_t j) { return (fs::path(mo.out) / shard_name(mo, j)).string(); }

std::vector<int64_t> shard_bytes(const MergeOutput& mo) {
  std::vector<int64_t> out;
  for (auto& shard : mo.shards) {
    int64_t b = 0;
    for (size_t i : shard) b += mo.bytes[size_t(i)];
    out.push_back(b);
  }
  return out;
}

// A merge allocates and frees the same large temporaries for every tensor (deltas, masks, sums).
// glibc maps each block above its mmap threshold afresh and unmaps it on free, so every tensor
// page-faults its temporaries in again (a third of a warm task-arithmetic merge); from here on
// the process keeps large blocks in its heap and does not trim it below 1 GiB of free space.
// Measured (bench merge --warm, 56M parameters x 3 models): task arithmetic 0.9 -> 0.4 s, TIES
// 3.0 -> 1.5 s.
void reuse_large_blocks() {
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

// Shard j's tensors as placeholders (the base's dtype and shape, the output's), for a writer that
// is given their values one at a time.
NamedTensors shard_layout(const TensorReader& base, const MergeOutput& mo, size_t j) {
  NamedTensors layout;
  for (size_t i : mo.shards[j]) {
    const TensorInfo& info = base.tensors().at(mo.names[i]);
    layout.emplace_back(mo.names[i],
                        torch::empty(info.shape, torch::TensorOptions().dtype(info.dtype).device(torch::kMeta)));
  }
  return layout;
}

// Thrown out of a shard's TensorSource when a preemption signal arrives: the shard's temporary
// file is removed and the shard is redone by the next run.
struct ShardStopped {};

}  // namespace

std::vector<int> assign_by_size(const std::vector<int64_t>& bytes, int parts) {
  std::vector<size_t> order(bytes.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return bytes[a] > bytes[b]; });
  std::vector<int64_t> load(size_t(parts), 0);
  std::vector<int> owner(bytes.size(), 0);
  for (size_t i : order) {
    size_t best = size_t(std::min_element(load.begin(), load.end()) - load.begin());
    owner[i] = int(best);
    load[best] += bytes[i];
  }
  return owner;
}

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(MergeOptions, method, weights, density, lambda, seed, rescale, trim, normalize)

json merge_job_json(const MergeOptions& o, CheckpointFormat format, uint64_t max_shard_bytes) {
  json job = o;
  job["format"] = format_name(format);
  job["max_shard_bytes"] = max_shard_bytes;
  return job;
}

MergeOutput plan_merge_output(const TensorReader& base, const std::string& out, CheckpointFormat format,
                              uint64_t max_shard_bytes) {
  MergeOutput mo;
  mo.out = out;
  mo.format = format;
  for (auto& [name, info] : base.tensors()) {
    mo.names.push_back(name);
    mo.bytes.push_back(info.bytes());
  }
  mo.shards = plan_shards(std::vector<uint64_t>(mo.bytes.begin(), mo.bytes.end()), max_shard_bytes);
  mo.config = read_json_file((fs::path(base.dir()) / "config.json").string());
  return mo;
}

bool open_merge_output(const MergeOutput& mo, const json& job, Communicator& comm) {
  bool finished = false;
  agree_on_error(comm, [&]() -> std::string {
    const fs::path job_file = fs::path(mo.out) / kJobFile;
    if (fs::exists(job_file)) {  // this job's directory or another's: the description says
      json before;
      try {
        before = read_json_file(job_file.string());
      } catch (const std::exception& e) {
        return std::string("cannot resume the merge in '") + mo.out + "': " + e.what();
      }
      if (before != job)
        return "--out '" + mo.out + "' holds a merge of a different job (" + job_file.string() + "); use another --out";
      finished = is_complete_dir(mo.out);
      if (finished) {
        fs::remove_all(staging_dir(mo));  // an earlier version's, killed after its marker
        spdlog::info("merge: {} is already complete", mo.out);
      } else {
        spdlog::info("merge: resuming the interrupted merge in {}", mo.out);
      }
      return "";
    }
    // Anything else there is not ours, except an empty directory or an earlier version's empty
    // staging folder (a run killed before it wrote the description).
    std::error_code ec;
    if (fs::is_directory(staging_dir(mo)) && fs::is_empty(staging_dir(mo), ec)) fs::remove(staging_dir(mo), ec);
    try {
      // The job description first: a directory holding it is this job's, to resume or finish.
      create_output_dir(mo.out, "--out");
      write_json_file(job_file.string(), job);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  });
  finished = any_rank(comm, finished);
  return finished;
}

bool is_shard_written(const MergeOutput& mo, size_t j) { return fs::exists(shard_path(mo, j)); }

void write_merged_shard(const MergeOutput& mo, size_t j, const NamedTensors& tensors, const json& job) {
  // The writer takes each tensor to the CPU, contiguous; temporary name + rename.
  make_checkpoint_writer(mo.format)->write_shard(shard_path(mo, j), tensors, mo.config, job);
}

void assemble_merge_output(const MergeOutput& mo, const TensorReader& base, const json& job, Communicator& comm) {
  auto writer = make_checkpoint_writer(mo.format);
  comm.barrier();  // every rank's shards are written
  if (comm.rank() == 0) {
    for (size_t j = 0; j < mo.shards.size(); ++j)
      if (!is_shard_written(mo, j)) throw InternalError("merge: shard " + shard_name(mo, j) + " was never written");
    if (mo.shards.size() > 1) {
      json wm = json::object();
      uint64_t total = 0;
      for (size_t j = 0; j < mo.shards.size(); ++j)
        for (size_t i : mo.shards[j]) {
          wm[mo.names[i]] = shard_name(mo, j);
          total += uint64_t(mo.bytes[i]);
        }
      write_weight_index(mo.out, writer->index_name(), wm, total);
    }
    write_json_file((fs::path(mo.out) / "config.json").string(), mo.config);
    for (auto& f : side_files(base.dir())) {
      const std::string to = (fs::path(mo.out) / fs::path(f).filename()).string();
      if (!fs::exists(to)) copy_file_checked(f, to);
    }
    publish_dir(mo.out, mo.out);      // in place: the missing marker kept it unfinished until now
    fs::remove_all(staging_dir(mo));  // an earlier version's, after the marker
    fsync_path(mo.out);
    crash_point();
  }
  comm.barrier();
}

std::set<std::string> merge_part_names(const MergeOutput& mo, int shard, int shards) {
  const std::vector<int> part = assign_by_size(shard_bytes(mo), shards);
  std::set<std::string> names;
  for (size_t s = 0; s < mo.shards.size(); ++s)
    if (part[s] == shard)
      for (size_t i : mo.shards[s]) names.insert(mo.names[i]);
  return names;
}

void merge_sharded(const TensorReader& base, const std::map<std::string, torch::Tensor>& theta, const MergeMethod& rule,
                   const MergeOutput& mo, const json& job, Communicator& merge_comm, int shard, int shards) {
  reuse_large_blocks();
  const int64_t K = merge_comm.size();
  const std::vector<int> part = assign_by_size(shard_bytes(mo), shards);
  int64_t j = 0, written = 0;
  for (size_t s = 0; s < mo.shards.size(); ++s) {
    if (part[s] != shard) continue;
    const int owner = int(j++ % K);
    if (is_shard_written(mo, s)) continue;  // every member sees the same files
    NamedTensors merged;                    // on the owner: the shard's merged tensors
    for (size_t i : mo.shards[s]) {
      const std::string& name = mo.names[i];
      auto it = theta.find(name);
      if (it == theta.end()) throw InternalError("merge: this rank's model has no tensor '" + name + "'");
      torch::Tensor theta0 = base.read(name);
      auto delta = delta_of(it->second, theta0);
      auto all = torch::empty({K * delta.numel()}, delta.options());
      merge_comm.all_gather(delta.reshape({-1}), all);
      if (merge_comm.rank() != owner) continue;
      std::vector<torch::Tensor> deltas;
      for (int64_t g = 0; g < K; ++g)
        deltas.push_back(all.narrow(0, g * delta.numel(), delta.numel()).view(delta.sizes()).to(torch::kCPU));
      merged.emplace_back(name, apply_delta(theta0, rule.merge(name, deltas)));
    }
    if (merge_comm.rank() != owner) continue;
    write_merged_shard(mo, s, merged, job);
    ++written;
  }
  spdlog::info("merge: part {} of {}: wrote {} output shard(s) on this rank", shard, shards, written);
}

int merge_from_disk(const TensorReader& base, const std::vector<TensorReader>& models, const MergeMethod& rule,
                    const MergeOutput& mo, const json& job, Communicator& comm, int64_t max_tensors) {
  reuse_large_blocks();
  const std::vector<int> owner = assign_by_size(shard_bytes(mo), comm.size());
  int64_t tensors = 0, written = 0, skipped = 0, mine = 0;
  bool stopped = false;
  auto flag = torch::zeros({3}, torch::kDouble);
  {
    StopPoint stop_point;  // a signal is acted on between tensors: written shards stay
    for (size_t s = 0; s < mo.shards.size() && !stopped; ++s) {
      if (owner[s] != comm.rank()) continue;
      ++mine;
      if (is_shard_written(mo, s)) {
        ++skipped;
        continue;
      }
      // --max-tensors is checked between shards (a shard is the unit of resumption), signals
      // between tensors (the shard in progress is redone by the next run).
      if ((max_tensors > 0 && tensors >= max_tensors) || preemption_requested()) {
        stopped = true;
        break;
      }
      // Each merged tensor goes to the file (and the disk) as soon as it is made, while the next
      // one is merged: the merge's arithmetic overlaps the disk's writing.
      const std::vector<size_t>& shard = mo.shards[s];
      auto merged = [&](size_t k) {
        if (preemption_requested()) throw ShardStopped{};
        const std::string& name = mo.names[shard[k]];
        std::vector<torch::Tensor> thetas;
        for (auto& m : models) thetas.push_back(m.read(name));
        ++tensors;
        return rule.merge_weights(name, base.read(name), thetas);
      };
      try {
        make_checkpoint_writer(mo.format)->write_shard_streamed(shard_path(mo, s), shard_layout(base, mo, s), merged,
                                                                mo.config, job);
      } catch (const ShardStopped&) {
        stopped = true;
        break;
      }
      ++written;
    }
    flag = torch::tensor({stopped ? 1.0 : 0.0, double(written), double(skipped)}, torch::kDouble);  // one reduce
    all_reduce_host(comm, flag, ReduceOp::Sum);
    if (flag[0].item<double>() > 0) preemption_handled();
  }
  spdlog::info("merge: {} output shard(s) written in this run, {} already written (this rank: {} of {} shards)",
               int64_t(flag[1].item<double>()), int64_t(flag[2].item<double>()), mine, mo.shards.size());
  if (flag[0].item<double>() > 0) {
    spdlog::warn("merge: stopped before the end; rerun the same command to resume (written shards are kept in {})",
                 mo.out);
    return kExitPreempted;
  }
  assemble_merge_output(mo, base, job, comm);
  spdlog::info("merge: wrote {} ({} shard(s), {})", mo.out, mo.shards.size(), format_name(mo.format));
  return 0;
}

int merge_checkpoints(const std::string& base_dir, const std::vector<std::string>& model_dirs,
                      const MergeOptions& merge, const OutputOptions& output, Communicator& comm, int64_t max_tensors) {
  auto rule = make_merge_method(merge, model_dirs.size());
  TensorReader base(base_dir);
  std::vector<TensorReader> models;
  for (auto& d : model_dirs) {
    models.emplace_back(d);
    require_same_tensors(base, models.back());
  }
  MergeOutput mo = plan_merge_output(base, output.out, output.format, output.max_shard_bytes);
  json job = merge_job_json(merge, output.format, output.max_shard_bytes);
  job["base"] = base_dir;
  job["models"] = model_dirs;
  spdlog::info("merge: {} models onto {} with {}, {} tensors, {} output shard(s), {} rank(s)", models.size(), base_dir,
               describe(merge), mo.names.size(), mo.shards.size(), comm.size());
  if (open_merge_output(mo, job, comm)) return 0;  // finished by an earlier run of this command
  return merge_from_disk(base, models, *rule, mo, job, comm, max_tensors);
}

}  // namespace lethe
