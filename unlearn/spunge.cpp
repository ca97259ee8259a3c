#include "unlearn/spunge.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <iostream>

#include "common/error.h"
#include "common/fs.h"
#include "dist/collectives.h"
#include "dist/sharded_checkpoint.h"
#include "dist/signals.h"
#include "eval/report_writer.h"
#include "merge/merge_io.h"

namespace fs = std::filesystem;

namespace lethe {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The run directory: new (subsets and the plan written), or with --resume the one an
// interrupted run left. Collective over the world.
void open_run_dir(const SpungeOptions& o, const std::vector<NamedExamples>& subsets, const std::vector<int>& sizes,
                  const json& config, Communicator& world) {
  const fs::path run(o.output.out);
  const size_t G = sizes.size();
  const fs::path tmp = temp_sibling(fs::absolute(o.output.out).string());
  agree_on_error(world, [&]() -> std::string {
    try {
      json plan = {{"config", config}, {"group_sizes", sizes}, {"subsets", json::array()}};
      for (size_t k = 0; k < subsets.size(); ++k)
        plan["subsets"].push_back({{"name", subsets[k].name}, {"items", subsets[k].examples.size()}, {"group", k % G}});
      if (o.run.train.resume && fs::exists(run)) {
        if (!fs::exists(run / "spunge.json")) return "--resume: '" + o.output.out + "' is not a SPUNGE run directory";
        if (read_json_file((run / "spunge.json").string())["subsets"] != plan["subsets"])
          return "--resume: '" + o.output.out + "' holds a SPUNGE run with other subsets (" +
                 (run / "spunge.json").string() + ")";
        return "";
      }
      // --resume with no run directory yet starts one (a requeued job that never got this far).
      // The directory appears with its plan or not at all: built under a temporary name.
      if (fs::exists(run) && !fs::is_empty(run))
        return "--out '" + o.output.out + "' already exists and is not empty; refusing to overwrite it";
      remove_stale_temp_siblings(o.output.out);
      fs::remove_all(tmp);
      fs::create_directories(tmp / "subsets");
      std::string names;
      for (auto& sub : subsets) names += sub.name + "\n";
      write_file_atomic((tmp / "subsets.txt").string(), names);
      for (auto& sub : subsets) write_examples_jsonl((tmp / "subsets" / (sub.name + ".jsonl")).string(), sub.examples);
      write_json_file((tmp / "spunge.json").string(), plan);
      fsync_path(tmp.string());
      std::error_code ec;
      fs::remove(run, ec);  // an empty directory is replaced
      fs::rename(tmp, run);
      fsync_parent_dir(run.string());
      crash_point();
    } catch (const std::exception& e) {
      std::error_code ec;
      fs::remove_all(tmp, ec);  // a failed start leaves nothing behind
      return e.what();
    }
    return "";
  });
}

// Unlearns a copy of the base model on one subset (or the whole forget set) over `comm`;
// `saved` gets the native model when not empty. At ZeRO 3, for a method that reads no weights
// outside training, the run stays sharded (RunOutput::engine) and is saved from the shards.
RunOutput unlearn_one(const SpungeOptions& o, const RunText& text, const SpungeData& data,
                      const std::vector<Example>& examples, const std::string& ckpt_dir, const json& run_config,
                      const std::string& saved, Communicator& comm, torch::Device device) {
  RunSpec spec = o.run;
  spec.train.checkpoint_dir = ckpt_dir;
  spec.train.run_config = run_config;
  RunOutput out =
      run_objective(spec, text, examples, data.uses_retain ? &data.retain : nullptr, comm, device, {}, {}, true);
  if (out.result.preempted || saved.empty()) return out;
  if (out.engine)
    save_model_from_engine(*out.engine, saved, CheckpointFormat::kNative, run_config, o.run.model.dir, 0, comm);
  else
    save_model_on_ranks(out.model, saved, CheckpointFormat::kNative, run_config, o.run.model.dir, 0, comm);
  return out;
}

// With one subset per group, local rank r < S of every group (S: the smallest group) joins
// merge communicator r, which merges part r of the output (merge_part_names); the other ranks
// hold no part.
std::set<std::string> merge_part_of_rank(const MergeOutput& mo, const ProcessGroups& pg) {
  const int S = *std::min_element(pg.group_sizes.begin(), pg.group_sizes.end());
  const int r = pg.group_comm->rank();
  return r < S ? merge_part_names(mo, r, S) : std::set<std::string>{};
}

// The tensors `names` of a trained model, whole, on its device. A run kept sharded gathers one
// layer at a time over its group (collective: every rank of the group calls this, with the same
// model, whatever its `names`; LoRA adapters come merged) and keeps only the named tensors.
std::map<std::string, torch::Tensor> weights_named(RunOutput& out, const std::set<std::string>& names) {
  std::map<std::string, torch::Tensor> theta;
  if (!out.engine) {
    for (auto& [n, t] : out.model->named_weights())
      if (names.count(n)) theta[n] = t.detach();
    return theta;
  }
  std::set<std::string> every;
  for (auto& [n, t] : out.model->named_weights()) every.insert(n);
  visit_trained_weights(*out.engine, every, [&](const std::string& name, const torch::Tensor& value) {
    if (names.count(name)) theta[name] = value.clone();  // the gathered layer is released after
  });
  return theta;
}

// Stage 3: every group unlearns its subsets (one, or several in turn when they queue). With one
// subset per group, returns this rank's part of its group's model for the in-memory merge
// (`part`: merge_part_of_rank); `preempted` is agreed over the world.
std::map<std::string, torch::Tensor> unlearn_subsets(const SpungeOptions& o, const RunText& text,
                                                     const SpungeData& data, const std::vector<NamedExamples>& subsets,
                                                     ProcessGroups& pg, const json& config,
                                                     const std::set<std::string>& part, torch::Device device,
                                                     bool& preempted) {
  const fs::path run(o.output.out);
  const size_t K = subsets.size(), G = pg.group_sizes.size();
  const bool queued = K > G;
  const bool keep = queued || o.keep_subset_models || o.run.train.checkpoint_every > 0 || o.run.train.resume;
  Communicator& group = *pg.group_comm;
  std::map<std::string, torch::Tensor> mine;
  bool stopped = false;
  for (size_t k = size_t(pg.group); k < K && !stopped; k += G) {
    const NamedExamples& sub = subsets[k];
    const std::string saved = (run / "unlearned" / sub.name).string();
    if (o.run.train.resume && is_complete_dir(saved)) {
      spdlog::info("spunge: subset {} was finished before; reading {}", sub.name, saved);
      if (!queued) {
        TensorReader finished(saved);
        for (auto& name : part) mine[name] = finished.read(name).to(device);
      }
      continue;
    }
    json run_config = config;
    run_config["subset"] = sub.name;
    spdlog::info("spunge: group {} unlearns subset {} ({} items) on {} rank(s)", pg.group, sub.name,
                 sub.examples.size(), group.size());
    RunOutput out = unlearn_one(o, text, data, sub.examples, (fs::path(o.run.train.checkpoint_dir) / sub.name).string(),
                                run_config, keep ? saved : "", group, device);
    stopped = out.result.preempted;
    if (!queued && !stopped) mine = weights_named(out, part);
  }
  join_groups(*pg.world);
  preempted = any_rank(*pg.world, stopped);
  return mine;
}

// Stage 4: with one subset per group, merge communicator i (local rank i of every group) owns
// part i of the output's shards; its members all-gather their K deltas of one tensor at a time
// and member (j mod K) merges and writes the part's j-th shard. Queued subsets were saved and
// merge from disk over all ranks instead.
int merge_subsets(const SpungeOptions& o, const std::vector<NamedExamples>& subsets, ProcessGroups& pg,
                  const TensorReader& base, const MergeOutput& mo, const std::map<std::string, torch::Tensor>& mine) {
  Communicator& world = *pg.world;
  const fs::path run(o.output.out);
  auto rule = make_merge_method(o.merge, subsets.size());
  json job = merge_job_json(o.merge, o.output.format, o.output.max_shard_bytes);
  job["base"] = o.run.model.dir;
  job["subsets"] = json::array();
  for (auto& s : subsets) job["subsets"].push_back(s.name);
  if (open_merge_output(mo, job, world)) return 0;  // finished before an interruption
  if (subsets.size() > pg.group_sizes.size()) {
    std::vector<TensorReader> models;
    for (auto& s : subsets) models.emplace_back((run / "unlearned" / s.name).string());
    return merge_from_disk(base, models, *rule, mo, job, world, 0);
  }
  const int S = *std::min_element(pg.group_sizes.begin(), pg.group_sizes.end());
  if (pg.group_comm->rank() < S) merge_sharded(base, mine, *rule, mo, job, *pg.merge_comm, pg.group_comm->rank(), S);
  world.barrier();
  assemble_merge_output(mo, base, job, world);
  return 0;
}

std::string comparison_markdown(const json& before, const json& plain, const json& spunge, double plain_s,
                                double spunge_s, const std::string& method, const std::string& merge, size_t k) {
  std::string md = fmt::format("\n## SPUNGE vs plain unlearning ({}; {} subsets merged with {})\n\n", method, k, merge);
  md += "| run | training wall-clock s |";
  std::vector<std::string> splits;  // forget and retain first, then the further splits
  for (auto* first : {"forget", "retain"})
    if (spunge.contains(first)) splits.push_back(first);
  for (auto& [name, v] : spunge.items())
    if (name != "knowundo" && name != "forget" && name != "retain") splits.push_back(name);
  for (auto& s : splits) md += " " + s + " acc % | " + s + " NLL |";
  bool ku = spunge.contains("knowundo");
  if (ku) md += " Unlearn Success | Retention Success | Average Success |";
  md += "\n|---|---:|";
  for (size_t i = 0; i < splits.size(); ++i) md += "---:|---:|";
  if (ku) md += "---:|---:|---:|";
  md += "\n";
  auto row = [&](const std::string& name, const json& j, double secs) {
    std::string r = secs < 0 ? fmt::format("| {} | - |", name) : fmt::format("| {} | {:.1f} |", name, secs);
    for (auto& s : splits)
      r += fmt::format(" {:.1f} | {:.3f} |", 100 * j[s]["accuracy"].get<double>(), j[s]["mean_nll"].get<double>());
    if (ku)
      r +=
          fmt::format(" {:.1f} | {:.1f} | {:.1f} |", j["knowundo"]["unlearn_success"].get<double>(),
                      j["knowundo"]["retention_success"].get<double>(), j["knowundo"]["average_success"].get<double>());
    return r + "\n";
  };
  md += row("base model (before unlearning)", before, -1);
  md += row("plain (whole forget set)", plain, plain_s);
  md += row("SPUNGE (split, unlearn, merge)", spunge, spunge_s);
  return md;
}

// The probe tables of the plain and the SPUNGE model, row by row: how much of the forgetting
// survives each probe in each.
std::string robustness_markdown(const json& plain, const json& spunge) {
  std::string md =
      "\n## Robustness: SPUNGE vs plain (lethe probe on both)\n\n| probe | plain forget acc % | SPUNGE forget acc % | "
      "plain forget prob | SPUNGE forget prob | plain retain acc % | SPUNGE retain acc % "
      "|\n|---|---:|---:|---:|---:|---:|---:|\n";
  auto cell = [](const json& row, const char* split, const char* key, double scale) {
    if (!row.contains(split) || !row[split].contains(key)) return std::string("—");
    return fmt::format("{:.{}f}", scale * row[split][key].get<double>(), scale > 1 ? 1 : 4);
  };
  for (auto& p : plain) {
    const json* s = nullptr;
    for (auto& q : spunge)
      if (q["probe"] == p["probe"]) s = &q;
    if (!s) continue;
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", p["probe"].get<std::string>(),
                      cell(p, "forget", "accuracy", 100), cell(*s, "forget", "accuracy", 100),
                      cell(p, "forget", "answer_prob", 1), cell(*s, "forget", "answer_prob", 1),
                      cell(p, "retain", "accuracy", 100), cell(*s, "retain", "accuracy", 100));
  }
  return md;
}

}  // namespace

void check_spunge(const SpungeOptions& o) {
  if (!o.output.adapter_out.empty())
    throw InputError("--adapter-out: spunge merges its subsets' models; it writes no single adapter");
  std::string bad = validate(o.split);
  if (!bad.empty()) throw InputError(bad);
  check_output_paths(o.run, o.output);
}

int run_spunge(const SpungeOptions& o, const SpungeData& data, const Runtime& rt, const json& config) {
  check_spunge(o);
  const auto t_start = std::chrono::steady_clock::now();
  const fs::path run(o.output.out);
  const std::string& method = o.run.method->name;

  std::vector<NamedExamples> subsets = split_by_attribute(data.forget, o.split);  // 1. split
  std::vector<int64_t> counts;
  for (auto& s : subsets) counts.push_back(int64_t(s.examples.size()));
  make_merge_method(o.merge, subsets.size());  // (validated early)
  const RunText text = load_run_text(o.run);
  std::vector<int> sizes = plan_group_sizes(counts, o.groups, rt.world->size());  // 2. groups
  ProcessGroups pg = make_process_groups(sizes, *rt.world);
  open_run_dir(o, subsets, sizes, config, *pg.world);
  if (pg.world->rank() == 0) {
    std::string line;
    for (size_t k = 0; k < subsets.size(); ++k)
      line += fmt::format("{}{} ({} items) -> group {}", k ? ", " : "", subsets[k].name, subsets[k].examples.size(),
                          k % sizes.size());
    spdlog::info("spunge: {} subsets by {}: {}; groups of {} rank(s); method {}; merge {}", subsets.size(),
                 o.split.by.empty() ? "block" : o.split.by, line, json(sizes).dump(), method, describe(o.merge));
  }
  if (o.split_only) {
    spdlog::info("spunge --split-only: subsets written to {} (names in {})", (run / "subsets").string(),
                 (run / "subsets.txt").string());
    return 0;
  }

  auto t_train = std::chrono::steady_clock::now();
  bool preempted = false;
  const TensorReader base(o.run.model.dir);
  const MergeOutput mo =  // the merged checkpoint's shards
      plan_merge_output(base, (run / "merged").string(), o.output.format, o.output.max_shard_bytes);
  std::set<std::string> part;  // this rank's share of the in-memory merge
  if (subsets.size() <= sizes.size()) part = merge_part_of_rank(mo, pg);
  auto mine = unlearn_subsets(o, text, data, subsets, pg, config, part, rt.device, preempted);  // 3. unlearn
  if (preempted) {
    spdlog::warn("spunge: preempted; checkpoints are in {}; rerun the same command with --resume",
                 o.run.train.checkpoint_dir);
    return kExitPreempted;
  }
  Communicator& world = *pg.world;
  world.barrier();
  const double train_wall = seconds_since(t_train);

  auto t_merge = std::chrono::steady_clock::now();
  const std::string merged_dir = (run / "merged").string();
  int rc = merge_subsets(o, subsets, pg, base, mo, mine);  // 4. merge
  if (rc != 0) return rc;
  mine.clear();
  const double merge_s = seconds_since(t_merge);
  spdlog::info("spunge: merged checkpoint written to {} ({}) in {:.1f} s", merged_dir, format_name(o.output.format),
               merge_s);
  // training and merge
  const std::vector<int64_t> peak_mib = log_peak_rss(world, "spunge: peak resident memory per rank through the merge");

  auto evaluate = [&](const std::string& dir, const std::string& out, const std::string& title) {
    EvalJob job;
    job.model = {dir, o.run.model.dtype, ""};
    job.zero_stage = o.run.train.zero_stage == 3 ? 3 : 0;  // at ZeRO 3 no rank loads the merged model whole
    job.max_len = o.run.data.max_len;
    job.eval = o.eval;
    job.report.out = out;
    job.report.title = title;
    job.report.replace = o.run.train.resume;  // the run directory's own, from before the interruption
    return evaluate_checkpoint(job, data.eval_splits, text.tok, text.tmpl, rt.device, world);
  };
  Evaluated ev = evaluate(merged_dir, (run / "eval").string(), "SPUNGE: " + method + " + " + o.merge.method);  // 5.
  json result = {
      {"train_seconds", train_wall}, {"merge_seconds", merge_s}, {"peak_rss_mib", peak_mib}, {"spunge", ev.summary}};
  std::string md = ev.markdown;
  if (o.compare) {  // 6. compare
    const std::string plain_dir = (run / "plain").string();
    auto t_plain = std::chrono::steady_clock::now();
    if (!(o.run.train.resume && is_complete_dir(plain_dir))) {
      spdlog::info("spunge --compare: plain {} on the whole forget set ({} items) on {} rank(s)", method,
                   data.forget.size(), world.size());
      RunOutput plain =
          unlearn_one(o, text, data, data.forget, (fs::path(o.run.train.checkpoint_dir) / "_plain").string(), config,
                      plain_dir, world, rt.device);
      if (plain.result.preempted) return kExitPreempted;
    }
    const double plain_s = seconds_since(t_plain);
    Evaluated pe = evaluate(plain_dir, (run / "eval_plain").string(), "plain " + method);
    Evaluated be = evaluate(o.run.model.dir, (run / "eval_base").string(), "base model");
    result["plain"] = pe.summary;
    result["base"] = be.summary;
    result["plain_train_seconds"] = plain_s;
    md = comparison_markdown(be.summary, pe.summary, ev.summary, plain_s, train_wall, method, describe(o.merge),
                             subsets.size()) +
         "\n" + md;
    if (o.probe) {  // 7. robustness of both
      RelearnBudget budget = o.relearn;
      budget.batch_size = o.run.train.batch_size;
      const int zero_stage = o.run.train.zero_stage == 3 ? 3 : 0;  // as the evaluations: no rank holds a model whole
      Relearner relearn = make_relearner(o.run.data, budget, zero_stage, world, rt.device);
      json tables = json::object();
      for (auto [name, dir] : {std::pair{"plain", plain_dir}, std::pair{"spunge", merged_dir}}) {
        const std::string out = (run / ("probe_" + std::string(name))).string();
        if (o.run.train.resume && is_complete_dir(out)) {
          tables[name] = read_json_file((fs::path(out) / "probe.json").string())["probes"];
          continue;
        }
        EvalJob job;
        job.model = {dir, o.run.model.dtype, ""};
        job.zero_stage = zero_stage;
        job.max_len = o.run.data.max_len;
        job.eval = o.eval;
        job.report.out = out;
        job.report.title = std::string(name == std::string("plain") ? "plain " : "SPUNGE ") + method;
        tables[name] =
            run_probe(job, ProbeOptions(), data.eval_splits, text.tok, text.tmpl, rt.device, world, relearn).table;
      }
      result["probe"] = tables;
      md = robustness_markdown(tables["plain"], tables["spunge"]) + md;
    }
  }
  if (world.rank() == 0) {
    result["seconds"] = seconds_since(t_start);
    write_json_file((run / "result.json").string(), result);
    write_file_atomic((run / "report.md").string(), md);
    std::cout << md << std::flush;
    spdlog::info("spunge: done in {:.1f} s; report in {}", seconds_since(t_start), (run / "report.md").string());
  }
  world.barrier();
  return 0;
}

}  // namespace lethe
