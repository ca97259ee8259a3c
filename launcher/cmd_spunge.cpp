// `lethe spunge`: SPUNGE (split, unlearn, merge; docs/METHODS.md). The forget set is split by an
// attribute, every subset is unlearned from the same base model on its own group of ranks (all
// groups at once), the per-group deltas are merged shard by shard over the cross-group merge
// communicators, and the merged model is written, evaluated and, with --compare, set against
// plain unlearning of the whole forget set with the same method and budget.
#include <spdlog/spdlog.h>

#include <cctype>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <set>

#include "checkpoints/hdf5_checkpoint.h"
#include "checkpoints/model_io.h"
#include "common/error.h"
#include "common/fs.h"
#include "dist/mpi_env.h"
#include "dist/process_groups.h"
#include "dist/signals.h"
#include "eval/report.h"
#include "launcher/train_common.h"
#include "merge/merge_io.h"
#include "unlearn/objective.h"

namespace fs = std::filesystem;

namespace lethe {

namespace {

struct Subset {
  std::string name;
  std::vector<Example> examples;
};

// The attribute value of record i: a field (strings as they are, other JSON values dumped), or
// with --split-block N the block i / N (TOFU's forget files hold 20 rows per author).
std::string attribute_value(const Example& e, size_t i, const std::string& attr, int64_t block) {
  if (block > 0) return std::to_string(int64_t(i) / block);
  if (e.attrs.contains(attr) && e.attrs[attr].is_null()) return "";  // null counts as missing
  return attr_string(e, attr);
}

// "value=subset,value=subset" (or @file.json holding {"value": "subset"}): values not named keep
// their own subset.
std::map<std::string, std::string> read_split_map(const std::string& spec) {
  std::map<std::string, std::string> m;
  if (spec.empty()) return m;
  if (spec[0] == '@') {
    json j = read_json_file(spec.substr(1));
    if (!j.is_object()) throw InputError("--split-map " + spec + ": expected a JSON object {\"value\": \"subset\"}");
    for (auto& [k, v] : j.items()) {
      if (!v.is_string()) throw InputError("--split-map " + spec + ": the subset of '" + k + "' is not a string");
      m[k] = v.get<std::string>();
    }
    return m;
  }
  for (auto& item : split_commas(spec)) {
    size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size())
      throw InputError("--split-map: '" + item + "' is not VALUE=SUBSET");
    m[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return m;
}

std::vector<Subset> split_forget_set(const std::vector<Example>& forget, const po::variables_map& vm) {
  const std::string attr = vm["split-by"].as<std::string>();
  const int64_t block = vm["split-block"].as<int64_t>();
  if (attr.empty() == (block <= 0)) throw InputError("give exactly one of --split-by ATTRIBUTE and --split-block N");
  const std::string what = block > 0 ? "--split-block " + std::to_string(block) : "--split-by " + attr;
  auto map = read_split_map(vm["split-map"].as<std::string>());
  std::map<std::string, std::vector<Example>> by_name;
  std::set<std::string> seen_values;
  for (size_t i = 0; i < forget.size(); ++i) {
    std::string v = attribute_value(forget[i], i, attr, block);
    if (v.empty())
      throw InputError(what + ": forget record " + std::to_string(i + 1) + " has no attribute '" + attr +
                       "' (every record needs one; filter them with --forget-filter or use --split-map)");
    seen_values.insert(v);
    auto it = map.find(v);
    by_name[it == map.end() ? v : it->second].push_back(forget[i]);
  }
  for (auto& [value, subset] : map)
    if (!seen_values.count(value))
      throw InputError("--split-map: value '" + value + "' (subset '" + subset + "') matches no forget record: the "
                       "subset would be empty");
  std::vector<Subset> out;
  for (auto& [name, ex] : by_name) {
    for (char c : name)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
        throw InputError(what + ": subset name '" + name + "' may only hold letters, digits, '-', '_' and '.' (name it "
                         "with --split-map VALUE=NAME)");
    out.push_back({name, ex});
  }
  if (out.size() < 2)
    throw InputError(what + ": the forget set has " + std::to_string(out.size()) +
                     " subset(s); SPUNGE needs two or more (use `lethe unlearn` for one)");
  return out;
}

std::vector<int> parse_sizes(const std::string& s) {
  std::vector<int> out;
  for (auto& item : split_commas(s)) {
    try {
      size_t used = 0;
      int v = std::stoi(item, &used);
      if (used != item.size() || v <= 0) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw InputError("--group-sizes: '" + item + "' is not a positive rank count");
    }
  }
  return out;
}

json split_summary(const SplitMetrics& m) {
  return {{"accuracy", m.accuracy}, {"mean_nll", m.mean_nll}, {"rouge_l_recall", m.rouge_l_recall},
          {"answer_prob", m.answer_prob}, {"leakage", m.leakage}};
}

struct Evaluated {
  json summary;
  std::string markdown;
};

// Distributed evaluation of a checkpoint over `comm`; rank 0 writes report.json and report.md.
Evaluated evaluate_dir(const std::string& model_dir, const std::string& out, const std::string& title,
                       const std::vector<NamedSplit>& splits, const po::variables_map& vm, const Tokenizer& tok,
                       ChatTemplate tmpl, torch::Device device, Communicator& comm) {
  CausalLM model = load_model(model_dir, vm["dtype"].as<std::string>());
  model->to(device);
  EvalOptions eo;
  eo.generate = !vm["no-generate"].as<bool>();
  eo.max_new_tokens = vm["max-new-tokens"].as<int64_t>();
  Report r = evaluate_report(model, tok, tmpl, splits, eo, vm["max-len"].as<int64_t>(), &comm);
  Evaluated ev;
  ev.summary = json::object();
  for (auto& m : r.splits) ev.summary[m.name] = split_summary(m);
  if (r.has_scores)
    ev.summary["knowundo"] = {{"unlearn_success", r.scores.unlearn_success},
                              {"retention_success", r.scores.retention_success},
                              {"average_success", r.scores.average_success}};
  ev.markdown = report_markdown(r.splits, r.has_scores ? &r.scores : nullptr, title);
  if (comm.rank() == 0) {
    create_output_dir(out, "report directory");
    write_json_file((fs::path(out) / "report.json").string(),
                    report_json(r.splits, r.has_scores ? &r.scores : nullptr, {{"model", model_dir}}));
    write_file_atomic((fs::path(out) / "report.md").string(), ev.markdown);
  }
  comm.barrier();
  return ev;
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
      r += fmt::format(" {:.1f} | {:.1f} | {:.1f} |", j["knowundo"]["unlearn_success"].get<double>(),
                       j["knowundo"]["retention_success"].get<double>(), j["knowundo"]["average_success"].get<double>());
    return r + "\n";
  };
  md += row("base model (before unlearning)", before, -1);
  md += row("plain (whole forget set)", plain, plain_s);
  md += row("SPUNGE (split, unlearn, merge)", spunge, spunge_s);
  return md;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void add_spunge_options(po::options_description& d) {
  add_unlearn_options(d);
  po::options_description s("spunge options");
  s.add_options()("split-by", po::value<std::string>()->default_value(""),
                  "forget-record attribute whose values define the subsets (e.g. domain, kind)")(
      "split-block", po::value<int64_t>()->default_value(0),
      "instead of an attribute: consecutive blocks of N records (TOFU forget files: 20 rows per author)")(
      "split-map", po::value<std::string>()->default_value(""),
      "VALUE=SUBSET,... or @file.json: gather attribute values into named subsets")(
      "group-sizes", po::value<std::string>()->default_value(""),
      "ranks per group, comma-separated (default: proportional to subset sizes, one group per subset)")(
      "groups", po::value<int>()->default_value(0),
      "number of equal rank groups when subsets outnumber them (subsets queue, round-robin; default: one per subset)")(
      "compare", po::bool_switch()->default_value(false),
      "also unlearn the whole forget set on all ranks with the same method and budget, and compare")(
      "split-only", po::bool_switch()->default_value(false),
      "only write the subsets (<out>/subsets/NAME.jsonl, <out>/subsets.txt) and stop: for one job per subset "
      "(slurm/spunge-array.sh)")(
      "keep-subset-models", po::bool_switch()->default_value(false),
      "write every subset's unlearned model to <out>/unlearned/<subset> (native)")(
      "eval-split", po::value<std::vector<std::string>>()->multitoken(),
      "further evaluation splits NAME=PATH (repeatable)")(
      "no-generate", po::bool_switch()->default_value(false), "evaluation without greedy generation (no ROUGE-L)")(
      "max-new-tokens", po::value<int64_t>()->default_value(32), "evaluation generation length limit");
  add_merge_options(s);
  d.add(s);
}

int run_spunge(const po::variables_map& vm, const json& cfg) {
  const auto t_start = std::chrono::steady_clock::now();
  const ObjectiveSpec& spec = find_objective(vm["method"].as<std::string>());
  const std::string base_dir = require_string(vm, "model"), out = require_string(vm, "out");
  if (!vm["adapter-out"].as<std::string>().empty())
    throw InputError("--adapter-out: spunge merges its subsets' models; it writes no single adapter");
  const std::string format = vm["format"].as<std::string>();
  if (format != "native" && format != "hf") throw InputError("--format: unknown format '" + format + "' (native, hf)");
  auto forget = load_split(vm, "forget");
  std::vector<Subset> subsets = split_forget_set(forget, vm);
  const size_t K = subsets.size();
  std::vector<Example> retain;
  const bool uses_retain = spec.make(vm)->uses_retain();
  if (uses_retain) {
    if (!vm.count("retain")) throw InputError("--method " + spec.name + " needs --retain data");
    retain = load_split(vm, "retain");
  }
  std::vector<NamedSplit> eval_splits = {{"forget", forget}};
  if (vm.count("retain")) eval_splits.push_back({"retain", uses_retain ? retain : load_split(vm, "retain")});
  if (vm.count("eval-split"))
    for (auto& s : vm["eval-split"].as<std::vector<std::string>>())
      eval_splits.push_back(named_split_option(s, "--eval-split", vm["data-format"].as<std::string>()));
  MergeOptions mopt = read_merge_options(vm);
  auto rule = make_merge_method(mopt, K);
  const uint64_t max_shard = parse_byte_size(vm["max-shard-size"].as<std::string>(), "--max-shard-size");
  TensorReader base(base_dir);
  Tokenizer tok = Tokenizer::from_file(tokenizer_path(base_dir));
  const ChatTemplate tmpl = read_chat_template(vm, base_dir);
  const int64_t max_len = vm["max-len"].as<int64_t>();
  TrainOptions to = read_train_options(vm);
  const bool resume = vm["resume"].as<bool>();

  // Rank groups: given sizes; or one group per subset, sized in proportion to the subsets; or
  // G equal groups that the subsets queue on (subset k runs on group k mod G).
  RankInfo ri = mpi_init(nullptr, nullptr);
  std::vector<int> sizes;
  if (!vm["group-sizes"].as<std::string>().empty()) {
    sizes = parse_sizes(vm["group-sizes"].as<std::string>());
  } else if (vm["groups"].as<int>() > 0 && size_t(vm["groups"].as<int>()) < K) {
    const int G = vm["groups"].as<int>();
    if (ri.world_size % G) throw InputError("--groups " + std::to_string(G) + " does not divide the " +
                                            std::to_string(ri.world_size) + " ranks");
    sizes.assign(size_t(G), ri.world_size / G);
  } else {
    if (size_t(ri.world_size) < K)
      throw InputError(std::to_string(K) + " subsets need at least " + std::to_string(K) + " ranks for one group each (" +
                       std::to_string(ri.world_size) + " given); use --groups G to queue them on G groups");
    std::vector<int64_t> counts;
    for (auto& s : subsets) counts.push_back(int64_t(s.examples.size()));
    sizes = proportional_group_sizes(counts, ri.world_size);
  }
  if (sizes.size() > K)
    throw InputError(std::to_string(sizes.size()) + " rank groups for " + std::to_string(K) + " subsets: at most one group per subset");
  const torch::Device device = select_device(vm["device"].as<std::string>());
  ProcessGroups pg = make_process_groups(sizes, device);
  Communicator& world = *pg.world;
  Communicator& group = *pg.group_comm;
  const size_t G = sizes.size();
  const bool queued = K > G;
  const bool keep = queued || vm["keep-subset-models"].as<bool>() || to.checkpoint_every > 0 || resume;

  // The run directory: new, or (with --resume) the one an interrupted run left.
  const fs::path run(out);
  check_on_rank0(world, [&]() -> std::string {
    try {
      if (resume) {
        if (!fs::exists(run / "spunge.json")) return "--resume: '" + out + "' is not a SPUNGE run directory";
        return "";
      }
      create_output_dir(out, "--out");
      fs::create_directories(run / "subsets");
      json plan = {{"config", cfg}, {"group_sizes", sizes}, {"subsets", json::array()}};
      std::string names;
      for (auto& sub : subsets) names += sub.name + "\n";
      write_file_atomic((run / "subsets.txt").string(), names);
      for (size_t k = 0; k < K; ++k) {
        plan["subsets"].push_back({{"name", subsets[k].name}, {"items", subsets[k].examples.size()},
                                   {"group", k % G}});
        write_examples_jsonl((run / "subsets" / (subsets[k].name + ".jsonl")).string(), subsets[k].examples);
      }
      write_json_file((run / "spunge.json").string(), plan);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  });
  if (world.rank() == 0) {
    std::string line;
    for (size_t k = 0; k < K; ++k)
      line += fmt::format("{}{} ({} items) -> group {}", k ? ", " : "", subsets[k].name, subsets[k].examples.size(), k % G);
    spdlog::info("spunge: {} subsets by {}: {}; groups of {} rank(s); method {}; merge {}", K,
                 vm["split-by"].as<std::string>().empty() ? "block" : vm["split-by"].as<std::string>(), line,
                 json(sizes).dump(), spec.name, describe(mopt));
  }

  if (vm["split-only"].as<bool>()) {
    spdlog::info("spunge --split-only: subsets written to {} (names in {})", (run / "subsets").string(),
                 (run / "subsets.txt").string());
    return 0;
  }

  // 1. Unlearn: every group runs its subsets (one, or several in turn when they queue).
  auto t_train = std::chrono::steady_clock::now();
  CausalLM mine{nullptr};  // this group's unlearned model when there is one subset per group
  bool preempted = false;
  for (size_t k = size_t(pg.group); k < K && !preempted; k += G) {
    const Subset& sub = subsets[k];
    const std::string saved = (run / "unlearned" / sub.name).string();
    if (resume && fs::exists(fs::path(saved) / kCompleteMarker)) {
      spdlog::info("spunge: subset {} was finished before; loading {}", sub.name, saved);
      if (!queued) {
        mine = load_model(saved, vm["dtype"].as<std::string>());
        mine->to(device);
      }
      continue;
    }
    TrainOptions sto = to;
    sto.checkpoint_dir = (fs::path(to.checkpoint_dir) / sub.name).string();
    sto.run_config = cfg;
    sto.run_config["subset"] = sub.name;
    CausalLM model = load_for_training(vm, base_dir, tok, device, group);
    auto obj = spec.make(vm);
    spdlog::info("spunge: group {} unlearns subset {} ({} items) on {} rank(s)", pg.group, sub.name,
                 sub.examples.size(), group.size());
    TrainResult res = fit_objective(model, *obj, tok, tmpl, max_len, sub.examples, uses_retain ? &retain : nullptr, sto,
                                    group, [](int64_t) { return false; }, nullptr);
    if (res.preempted) {
      preempted = true;
      break;
    }
    model->merge_lora();
    obj->finish(model);
    if (keep) {
      if (group.rank() == 0) save_model(model, saved, "native", sto.run_config, base_dir);
      group.barrier();
    }
    if (!queued) mine = model;
  }
  auto flag = torch::tensor({preempted ? 1.0 : 0.0}, torch::kDouble);
  all_reduce_host(world, flag, ReduceOp::Sum);
  if (flag.item<double>() > 0) {
    spdlog::warn("spunge: preempted; checkpoints are in {}; rerun the same command with --resume", to.checkpoint_dir);
    return kExitPreempted;
  }
  world.barrier();
  const double train_wall = seconds_since(t_train);

  // 2. Merge, shard by shard: with one subset per group, merge communicator i (local rank i of
  // every group) owns shard i of the tensors; its members all-gather their K deltas of one
  // tensor at a time and member (j mod K) merges and stages the shard's j-th tensor. Queued
  // subsets were saved and merge from disk over all ranks instead.
  auto t_merge = std::chrono::steady_clock::now();
  const std::string merged_dir = (run / "merged").string();
  MergeOutput mo = plan_merge_output(base, merged_dir, format, max_shard);
  json job = merge_job_json(mopt, format, max_shard);
  job["base"] = base_dir;
  job["subsets"] = json::array();
  for (auto& s : subsets) job["subsets"].push_back(s.name);
  open_merge_output(mo, job, world);
  if (queued) {
    std::vector<TensorReader> models;
    for (auto& s : subsets) models.emplace_back((run / "unlearned" / s.name).string());
    int rc = merge_from_disk(base, models, *rule, mo, job, world, 0);
    if (rc != 0) return rc;
  } else {
    const int S = *std::min_element(sizes.begin(), sizes.end());
    if (group.rank() < S) {
      std::map<std::string, torch::Tensor> theta;
      for (auto& [n, t] : mine->named_weights()) theta[n] = t.detach();
      merge_sharded(base, theta, *rule, mo, *pg.merge_comm, group.rank(), S);
    }
    world.barrier();
    assemble_merge_output(mo, base, job, world);
  }
  mine = nullptr;
  const double merge_s = seconds_since(t_merge);
  spdlog::info("spunge: merged checkpoint written to {} ({}) in {:.1f} s", merged_dir, format, merge_s);

  // 3. Evaluate the merged model; 4. with --compare, plain unlearning of the whole forget set.
  Evaluated ev = evaluate_dir(merged_dir, (run / "eval").string(), "SPUNGE: " + spec.name + " + " + mopt.method,
                              eval_splits, vm, tok, tmpl, device, world);
  json result = {{"train_seconds", train_wall}, {"merge_seconds", merge_s}, {"spunge", ev.summary}};
  std::string md = ev.markdown;
  if (vm["compare"].as<bool>()) {
    const std::string plain_dir = (run / "plain").string();
    auto t_plain = std::chrono::steady_clock::now();
    if (!(resume && fs::exists(fs::path(plain_dir) / kCompleteMarker))) {
      TrainOptions pto = to;
      pto.checkpoint_dir = (fs::path(to.checkpoint_dir) / "_plain").string();
      pto.run_config = cfg;
      CausalLM model = load_for_training(vm, base_dir, tok, device, world);
      auto obj = spec.make(vm);
      spdlog::info("spunge --compare: plain {} on the whole forget set ({} items) on {} rank(s)", spec.name,
                   forget.size(), world.size());
      TrainResult res = fit_objective(model, *obj, tok, tmpl, max_len, forget, uses_retain ? &retain : nullptr, pto,
                                      world, [](int64_t) { return false; }, nullptr);
      if (res.preempted) return kExitPreempted;
      model->merge_lora();
      obj->finish(model);
      if (world.rank() == 0) save_model(model, plain_dir, "native", pto.run_config, base_dir);
      world.barrier();
    }
    const double plain_s = seconds_since(t_plain);
    Evaluated pe = evaluate_dir(plain_dir, (run / "eval_plain").string(), "plain " + spec.name, eval_splits, vm, tok,
                                tmpl, device, world);
    Evaluated be = evaluate_dir(base_dir, (run / "eval_base").string(), "base model", eval_splits, vm, tok, tmpl,
                                device, world);
    result["plain"] = pe.summary;
    result["base"] = be.summary;
    result["plain_train_seconds"] = plain_s;
    md = comparison_markdown(be.summary, pe.summary, ev.summary, plain_s, train_wall, spec.name, describe(mopt), K) +
         "\n" + md;
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
