#include "dist/sharded_checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "common/error.h"
#include "common/hash.h"
#include "common/fs.h"
#include "dist/collectives.h"

namespace fs = std::filesystem;

namespace lethe {

namespace {
std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", (long long)step);
  return buf;
}
std::string rank_file(int r) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "rank-%05d.h5", r);
  return buf;
}
// Rank 0, once every shard is on disk: the checksummed manifest, the publish, and the removal
// of checkpoints beyond the newest `keep` (only after the new one is complete).
void finish_checkpoint(const std::string& tmp, const std::string& final_dir, const std::string& root, int64_t step,
                       int ranks, const json& manifest, int keep) {
  json m = manifest;
  m["step"] = step;
  m["ranks"] = ranks;
  m.erase("checksum");
  m["checksum"] = hex64(fnv1a(m.dump()));  // over everything else: an edited manifest is refused
  write_json_file((fs::path(tmp) / "manifest.json").string(), m);
  publish_dir(tmp, final_dir);  // common/fs.h's protocol: fsync, marker, rename
  std::vector<std::string> steps;
  for (auto& e : fs::directory_iterator(root))
    if (e.path().filename().string().rfind("step-", 0) == 0) steps.push_back(e.path().string());
  std::sort(steps.begin(), steps.end());
  for (size_t i = 0; i + size_t(keep) < steps.size(); ++i) remove_dir_safely(steps[i]);
}
}  // namespace

void save_sharded_checkpoint(const std::string& root, int64_t step, Communicator& comm, const NamedTensors& shard,
                             const json& manifest, int keep) {
  const std::string final_dir = (fs::path(root) / step_name(step)).string();
  const std::string tmp = (fs::path(root) / ("." + step_name(step) + ".tmp")).string();
  if (comm.rank() == 0) {
    std::error_code ec;
    fs::create_directories(root, ec);
    if (ec) throw InputError("checkpoint directory '" + root + "': " + ec.message());
    if (is_complete_dir(final_dir)) throw InputError("checkpoint '" + final_dir + "' already exists");
    // step-N without its marker is this run's own interrupted save (older versions wrote the
    // marker after the rename): it is redone.
    if (fs::exists(final_dir)) remove_dir_safely(final_dir);
    fs::remove_all(tmp, ec);  // a leftover from an interrupted save of this step
    fs::create_directory(tmp, ec);
    if (ec) throw InputError("cannot create " + tmp + ": " + ec.message());
  }
  comm.barrier();
  std::string mine = (fs::path(tmp) / rank_file(comm.rank())).string();
  std::string failed;
  try {
    write_h5_tensors(mine, shard, {});
    crash_point();
    fsync_path(mine);  // by its writer: on a shared file system another node cannot flush it
  } catch (const std::exception& e) {
    failed = e.what();
  }
  // Every shard is on disk, or none of this step stays: all ranks fail with the message and
  // the previous checkpoint is untouched.
  if (any_rank(comm, !failed.empty())) {
    std::error_code ec;
    if (comm.rank() == 0) fs::remove_all(tmp, ec);
    throw InputError("checkpoint " + final_dir +
                     " was not written: " + (failed.empty() ? "another rank could not write its shard" : failed));
  }
  if (comm.rank() == 0) {
    try {
      finish_checkpoint(tmp, final_dir, root, step, comm.size(), manifest, keep);
    } catch (const InputError& e) {
      std::error_code ec;
      fs::remove_all(tmp, ec);
      throw InputError("checkpoint " + final_dir + " was not written: " + e.what());
    }
  }
  comm.barrier();
}

namespace {
// Collective: `write(tmp)` on every rank into one temporary directory beside `dir` that rank 0
// then publishes; one rank failing fails all of them with its message, nothing left behind.
void write_dir_on_ranks(const std::string& dir, Communicator& comm,
                        const std::function<void(const std::string&)>& write) {
  const std::string what = "output directory";
  std::string tmp;
  agree_on_error(comm, [&]() -> std::string {
    try {
      tmp = create_temp_sibling_dir(dir, what);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  });
  tmp = all_gather_strings(comm, {comm.rank() == 0 ? tmp : ""})[0];
  std::string failed;
  try {
    write(tmp);
  } catch (const std::exception& e) {
    failed = e.what();
  }
  for (auto& e : all_gather_strings(comm, {failed}))  // every rank's shards are written, or why not
    if (!e.empty()) failed = e;
  agree_on_error(comm, [&]() -> std::string {  // rank 0 publishes, or removes the temporary
    try {
      if (failed.empty()) publish_dir(tmp, dir);
    } catch (const std::exception& e) {
      failed = e.what();
    }
    if (failed.empty()) return "";
    std::error_code ec;
    fs::remove_all(tmp, ec);
    return what + " '" + dir + "' was not written: " + failed;
  });
}
}  // namespace

void save_model_on_ranks(CausalLM& model, const std::string& dir, CheckpointFormat format, const json& run_config,
                         const std::string& source_dir, uint64_t max_shard_bytes, Communicator& comm) {
  if (comm.size() == 1) return save_model(model, dir, format, run_config, source_dir, max_shard_bytes);
  NamedTensors weights;
  for (auto& [name, t] : model->named_weights()) weights.emplace_back(name, t.detach());
  const std::vector<std::string> copies = source_dir.empty() ? std::vector<std::string>{} : side_files(source_dir);
  write_dir_on_ranks(dir, comm, [&](const std::string& tmp) {
    write_model_files(*make_checkpoint_writer(format), tmp, weights, model->config.to_json(), run_config, copies,
                      max_shard_bytes, comm.rank(), comm.size());
  });
}

void visit_trained_weights(DataParallel& engine, const std::set<std::string>& wanted,
                           const std::function<void(const std::string&, const torch::Tensor&)>& fn) {
  CausalLM& model = engine.model();
  std::map<const void*, const LinearImpl*> adapted;  // by weight
  for (auto& [name, lin] : model->linear_layers())
    if (lin->has_lora()) adapted[lin->weight.unsafeGetTensorImpl()] = lin;
  std::set<std::string> weights, seen;
  for (auto& [name, t] : model->named_weights())
    if (!is_lora_parameter(name) && wanted.count(name)) weights.insert(name);
  visit_whole_named(engine, weights, [&](const std::string& name, const torch::Tensor& p, const torch::Tensor& value) {
    seen.insert(name);
    auto lin = adapted.find(p.unsafeGetTensorImpl());  // its layer is whole while this runs, adapters included
    fn(name, lin == adapted.end() ? value : lin->second->merged_weight());
  });
  for (auto& [name, t] : model->named_weights())  // in no engine block: whole in the model already
    if (weights.count(name) && !seen.count(name)) fn(name, t.detach());
}

void visit_whole_named(DataParallel& engine, const std::set<std::string>& wanted,
                       const std::function<void(const std::string&, const torch::Tensor&, const torch::Tensor&)>& fn) {
  std::map<const void*, std::string> names;
  std::set<const void*> impls;
  for (auto& [name, t] : engine.model()->named_weights())
    if (wanted.count(name)) {
      names[t.unsafeGetTensorImpl()] = name;
      impls.insert(t.unsafeGetTensorImpl());
    }
  engine.visit_whole_parameters(impls, [&](const torch::Tensor& p, const torch::Tensor& value) {
    auto it = names.find(p.unsafeGetTensorImpl());
    if (it != names.end()) fn(it->second, p, value);
  });
}

void save_model_from_engine(DataParallel& engine, const std::string& dir, CheckpointFormat format,
                            const json& run_config, const std::string& source_dir, uint64_t max_shard_bytes,
                            Communicator& comm) {
  CausalLM& model = engine.model();
  // The output's tensors in the model's order, as placeholders (meta device) that fix the plan.
  NamedTensors meta;
  for (auto& [name, t] : model->named_weights())
    if (!is_lora_parameter(name))  // merged into their weights
      meta.emplace_back(name,
                        torch::empty(engine.full_shape(t), t.options().device(torch::kMeta).requires_grad(false)));
  const auto shards = plan_model_shards(meta, max_shard_bytes);
  const json config = model->config.to_json();
  const std::vector<std::string> copies = source_dir.empty() ? std::vector<std::string>{} : side_files(source_dir);
  auto writer = make_checkpoint_writer(format);
  const size_t n = shards.size(), N = size_t(comm.size()), me = size_t(comm.rank());
  write_dir_on_ranks(dir, comm, [&](const std::string& tmp) {
    // Round k: rank r writes shard k*N + r. Every rank takes part in gathering the layers of the
    // round's shards (one layer whole at a time) and keeps the tensors of its own shard.
    for (size_t first = 0; first < n; first += N) {
      std::set<std::string> wanted;
      for (size_t j = first; j < std::min(n, first + N); ++j)
        for (size_t i : shards[j]) wanted.insert(meta[i].first);
      const size_t mine = first + me;
      std::map<std::string, torch::Tensor> got;
      if (mine < n)
        for (size_t i : shards[mine]) got[meta[i].first] = torch::Tensor();
      // Collective even with a write to come that fails: the others gather with this rank.
      visit_trained_weights(engine, wanted, [&](const std::string& name, const torch::Tensor& value) {
        auto it = got.find(name);
        if (it != got.end()) it->second = value.to(torch::kCPU, false, true);
      });
      if (mine >= n) continue;
      NamedTensors shard;
      for (size_t i : shards[mine]) shard.emplace_back(meta[i].first, got.at(meta[i].first));
      writer->write_shard((fs::path(tmp) / shard_file_name(mine, n, writer->shard_extension())).string(), shard, config,
                          run_config);
    }
    if (comm.rank() == 0) write_model_metadata_files(*writer, tmp, meta, shards, config, run_config, copies);
  });
}

std::string latest_complete_checkpoint(const std::string& root) {
  if (!fs::is_directory(root)) return "";
  std::string best;
  for (auto& e : fs::directory_iterator(root)) {
    std::string name = e.path().filename().string();
    if (name.rfind("step-", 0) == 0 && fs::exists(e.path() / kCompleteMarker) && e.path().string() > best)
      best = e.path().string();
  }
  return best;
}

ShardedCheckpoint load_sharded_checkpoint(const std::string& dir) {
  require_complete(dir);
  ShardedCheckpoint c;
  const std::string path = (fs::path(dir) / "manifest.json").string();
  c.manifest = read_json_file(path);
  if (!c.manifest.is_object() || !c.manifest.contains("checksum") || !c.manifest["checksum"].is_string())
    throw CorruptError(path + ": no checksum (edited, or written by an older lethe)");
  json rest = c.manifest;
  rest.erase("checksum");
  if (hex64(fnv1a(rest.dump())) != c.manifest["checksum"].get<std::string>())
    throw CorruptError(path + ": checksum mismatch (the manifest was edited or is corrupt)");
  int ranks = json_get<int64_t>(c.manifest, "ranks", dir + "/manifest.json");
  for (int r = 0; r < ranks; ++r)
    c.shards.push_back(std::make_shared<const H5Reader>((fs::path(dir) / rank_file(r)).string()));
  return c;
}

}  // namespace lethe
