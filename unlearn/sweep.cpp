#include "unlearn/sweep.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>

#include "common/error.h"
#include "common/fs.h"
#include "dist/collectives.h"
#include "dist/sharded_checkpoint.h"
#include "dist/signals.h"
#include "eval/plot.h"
#include "eval/report_writer.h"

namespace fs = std::filesystem;

namespace lethe {

json SweepConfig::to_json() const {
  json j = {{"name", name}, {"method", method}, {"lr", lr}, {"steps", steps}, {"options", options}};
  if (!lora.is_null()) j["lora"] = lora;
  return j;
}

LoraOptions sweep_lora(const LoraOptions& command, const SweepConfig& c) {
  if (c.lora.is_null()) return command;
  LoraOptions l = command;
  l.rank = c.lora.at("rank").get<int64_t>();
  l.alpha = c.lora.at("alpha").get<double>();
  l.dropout = c.lora.at("dropout").get<double>();
  return l;
}

namespace {

constexpr size_t kMaxConfigs = 1000;

std::string value_text(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// Letters, digits, '.', '_' and '-' only: the name is a directory.
std::string safe_name(const std::string& s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-') ? c : '-';
  return out;
}

bool same_type(const json& a, const json& b) {
  if (a.is_boolean()) return b.is_boolean();
  if (a.is_number_integer()) return b.is_number_integer();
  if (a.is_number()) return b.is_number();
  return b.is_string();
}

}  // namespace

std::vector<SweepConfig> expand_sweep_grid(const json& grid, const std::string& source, double default_lr,
                                           int64_t default_steps) {
  auto fail = [&](const std::string& msg) { throw InputError("sweep grid '" + source + "': " + msg); };
  if (!grid.is_object()) fail("not a JSON object");
  for (auto& [k, v] : grid.items())
    if (k != "methods" && k != "lr" && k != "steps" && k != "options" && k != "lora")
      fail("unknown field '" + k + "' (methods, lr, steps, options, lora)");
  if (!grid.contains("methods") || !grid["methods"].is_array() || grid["methods"].empty())
    fail("'methods' must be a non-empty list of method names");
  std::vector<std::string> methods;
  for (auto& m : grid["methods"]) {
    if (!m.is_string()) fail("'methods' holds a value that is not a method name: " + m.dump());
    try {
      find_objective(m.get<std::string>());
    } catch (const InputError& e) {
      fail(e.what());
    }
    methods.push_back(m.get<std::string>());
  }
  auto in_methods = [&](const std::string& m) { return std::find(methods.begin(), methods.end(), m) != methods.end(); };
  auto number_list = [&](const json& v, const std::string& key, bool integer) {
    std::vector<json> out;
    if (!v.is_array() || v.empty()) fail("'" + key + "' must be a non-empty list");
    for (auto& x : v) {
      bool ok = integer ? x.is_number_integer() && x.get<int64_t>() > 0 : x.is_number() && x.get<double>() > 0;
      if (!ok) fail("'" + key + "' holds " + x.dump() + " (positive " + (integer ? "integers" : "numbers") + " only)");
      out.push_back(x);
    }
    return out;
  };
  // "lr" / "steps": one list for every method, or {method: list}; the default where neither says.
  auto per_method = [&](const char* key, bool integer, const json& fallback) {
    std::map<std::string, std::vector<json>> out;
    for (auto& m : methods) out[m] = {fallback};
    if (!grid.contains(key)) return out;
    const json& v = grid[key];
    if (v.is_object()) {
      for (auto& [m, list] : v.items()) {
        if (!in_methods(m)) fail(std::string("'") + key + "' names method '" + m + "', which is not in 'methods'");
        out[m] = number_list(list, std::string(key) + "." + m, integer);
      }
    } else {
      auto list = number_list(v, key, integer);
      for (auto& m : methods) out[m] = list;
    }
    return out;
  };
  auto lrs = per_method("lr", false, json(default_lr));
  auto steps = per_method("steps", true, json(default_steps));
  const json options = grid.value("options", json::object());
  if (!options.is_object()) fail("'options' must be an object {method: {option: [values]}}");
  for (auto& [m, _] : options.items())
    if (!in_methods(m)) fail("'options' names method '" + m + "', which is not in 'methods'");
  const json lora = grid.value("lora", json::object());
  if (!lora.is_object()) fail("'lora' must be an object {method: {\"rank\": R, \"alpha\": A, \"dropout\": D}}");
  std::map<std::string, json> lora_of;
  for (auto& [m, l] : lora.items()) {
    if (!in_methods(m)) fail("'lora' names method '" + m + "', which is not in 'methods'");
    const std::string key = "'lora." + m + "'";
    if (!l.is_object()) fail(key + " must be an object {\"rank\": R, \"alpha\": A, \"dropout\": D}");
    for (auto& [k, _] : l.items())
      if (k != "rank" && k != "alpha" && k != "dropout")
        fail(key + " has unknown field '" + k + "' (rank, alpha, dropout)");
    json set = {{"rank", l.value("rank", json())},
                {"alpha", l.value("alpha", json(16.0))},
                {"dropout", l.value("dropout", json(0.1))}};
    if (!set["rank"].is_number_integer() || set["rank"].get<int64_t>() <= 0)
      fail(key + ": 'rank' must be a positive integer");
    if (!set["alpha"].is_number() || set["alpha"].get<double>() <= 0) fail(key + ": 'alpha' must be a positive number");
    if (!set["dropout"].is_number() || set["dropout"].get<double>() < 0 || set["dropout"].get<double>() >= 1)
      fail(key + ": 'dropout' must be a number in [0, 1)");
    lora_of[m] = set;
  }
  std::vector<SweepConfig> out;
  for (auto& m : methods) {
    const ObjectiveSpec& spec = find_objective(m);
    // The method's option combinations: the cartesian product of the listed values.
    std::vector<json> combos = {json::object()};
    if (options.contains(m)) {
      const json& given = options[m];
      if (!given.is_object()) fail("'options." + m + "' must be an object {option: [values]}");
      for (auto& [name, values] : given.items()) {
        auto decl = std::find_if(spec.options.begin(), spec.options.end(), [&](auto& d) { return d.name == name; });
        if (decl == spec.options.end()) fail("method '" + m + "' has no option '" + name + "'");
        if (!values.is_array() || values.empty()) fail("'options." + m + "." + name + "' must be a non-empty list");
        for (auto& v : values)
          if (!same_type(decl->default_value, v))
            fail("'options." + m + "." + name + "' holds " + v.dump() + ", not of the type of its default " +
                 decl->default_value.dump());
        std::vector<json> next;
        for (auto& c : combos)
          for (auto& v : values) {
            json n = c;
            n[name] = v;
            next.push_back(n);
          }
        combos = std::move(next);
      }
    }
    for (auto& lr : lrs[m])
      for (auto& st : steps[m])
        for (auto& c : combos) {
          SweepConfig cfg;
          cfg.method = m;
          cfg.lr = lr.get<double>();
          cfg.steps = st.get<int64_t>();
          cfg.options = c;
          if (lora_of.count(m)) cfg.lora = lora_of[m];
          std::string name = fmt::format("{}_lr{:g}_s{}", m, cfg.lr, cfg.steps);
          if (!cfg.lora.is_null()) name += fmt::format("_lora{}", cfg.lora["rank"].get<int64_t>());
          for (auto& [k, v] : c.items()) name += "_" + k + value_text(v);
          cfg.name = safe_name(name);
          out.push_back(cfg);
          if (out.size() > kMaxConfigs) fail("more than " + std::to_string(kMaxConfigs) + " configurations");
        }
  }
  for (size_t i = 0; i < out.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (out[i].name == out[j].name)
        fail("two configurations are both named '" + out[i].name + "' (a repeated value?)");
  return out;
}

json sweep_table(json rows, bool with_reference) {
  std::vector<std::pair<double, double>> xy;
  for (auto& r : rows) {
    const json& s = r["summary"];
    const json& t = r.value("tofu", json::object());
    double x = with_reference && t.contains("forget_quality") ? t["forget_quality"].get<double>()
                                                              : 1.0 - s["forget"]["answer_prob"].get<double>();
    double y = t.contains("model_utility") ? t["model_utility"].get<double>() : s["retain"]["accuracy"].get<double>();
    r["x"] = x;
    r["y"] = y;
    xy.push_back({x, y});
  }
  std::vector<size_t> front = pareto_front(xy);
  for (size_t i = 0; i < rows.size(); ++i) rows[i]["pareto"] = std::find(front.begin(), front.end(), i) != front.end();
  return rows;
}

std::string sweep_markdown(const json& table, bool with_reference) {
  std::string md =
      "# Sweep\n\n| configuration | method | lr | steps | options | forget acc % | forget prob | retain acc % | "
      "model utility | " +
      std::string(with_reference ? "forget quality" : "1 - forget prob") +
      " | Pareto |\n|---|---|---:|---:|---|---:|---:|---:|---:|---:|:---:|\n";
  for (auto& r : table) {
    std::string opts;
    if (r.contains("lora"))
      opts = fmt::format("LoRA r{} a{:g} d{:g}", r["lora"]["rank"].get<int64_t>(), r["lora"]["alpha"].get<double>(),
                         r["lora"]["dropout"].get<double>());
    for (auto& [k, v] : r["options"].items()) opts += (opts.empty() ? "" : ", ") + k + "=" + value_text(v);
    const json& s = r["summary"];
    md += fmt::format("| {} | {} | {:g} | {} | {} | {:.1f} | {:.4f} | {:.1f} | {:.4g} | {:.4g} | {} |\n",
                      r["name"].get<std::string>(), r["method"].get<std::string>(), r["lr"].get<double>(),
                      r["steps"].get<int64_t>(), opts.empty() ? "—" : opts, 100 * s["forget"]["accuracy"].get<double>(),
                      s["forget"]["answer_prob"].get<double>(), 100 * s["retain"]["accuracy"].get<double>(),
                      r["y"].get<double>(), r["x"].get<double>(), r["pareto"].get<bool>() ? "●" : "");
  }
  md += fmt::format(
      "\nx: {}; y: model utility. Pareto: no other configuration is at least as good on both and better on one.\n",
      with_reference ? "TOFU forget quality against the retain-only model" : "1 - the forget answer probability");
  return md;
}

namespace {

// The sweep directory: new (its plan written), or with --resume the one an interrupted sweep left
// (the same configurations). Collective over the world.
void open_sweep_dir(const SweepOptions& o, const json& plan, Communicator& world) {
  const fs::path dir(o.out);
  agree_on_error(world, [&]() -> std::string {
    try {
      if (o.run.train.resume && fs::exists(dir / "sweep.json")) {
        if (read_json_file((dir / "sweep.json").string()).value("configs", json()) != plan["configs"])
          return "--resume: '" + o.out + "' holds a sweep of other configurations (" + (dir / "sweep.json").string() +
                 ")";
        return "";
      }
      if (fs::exists(dir) && !fs::is_empty(dir))
        return "--out '" + o.out + "' already exists and is not empty; refusing to overwrite it";
      if (fs::exists(dir)) fs::remove(dir);
      write_dir_atomically(
          o.out,
          [&](const std::string& tmp) {
            fs::create_directories(fs::path(tmp) / "runs");
            write_json_file((fs::path(tmp) / "sweep.json").string(), plan);
          },
          "sweep directory");
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  });
}

}  // namespace

int run_sweep(const SweepOptions& o, const SweepData& data, const Runtime& rt, const json& config) {
  const auto t_start = std::chrono::steady_clock::now();
  const fs::path dir(o.out);
  const size_t K = o.configs.size();
  for (auto& c : o.configs) {  // bad input before any group forms
    const ObjectiveSpec& spec = find_objective(c.method);
    if (spec.make(MethodOptions(spec.options, c.options))->uses_retain() && data.retain.empty())
      throw InputError("sweep configuration " + c.name + ": method " + c.method + " needs --retain");
  }
  GroupOptions g = o.groups;
  if (g.sizes.empty() && g.groups == 0) g.groups = int(std::min<size_t>(K, size_t(rt.world->size())));
  std::vector<int> sizes = plan_group_sizes(std::vector<int64_t>(K, 1), g, rt.world->size());
  ProcessGroups pg = make_process_groups(sizes, *rt.world);
  const size_t G = sizes.size();
  json plan = {{"config", config}, {"group_sizes", sizes}, {"configs", json::array()}};
  for (size_t k = 0; k < K; ++k) {
    json c = o.configs[k].to_json();
    c["group"] = k % G;
    plan["configs"].push_back(c);
  }
  open_sweep_dir(o, plan, *pg.world);
  spdlog::info("sweep: {} configurations on {} group(s) of {} rank(s)", K, G, json(sizes).dump());
  const RunText text = load_run_text(o.run);
  Communicator& group = *pg.group_comm;
  bool stopped = false;
  for (size_t k = size_t(pg.group); k < K && !stopped; k += G) {
    const SweepConfig& c = o.configs[k];
    const fs::path cdir = dir / "runs" / c.name;
    if (fs::exists(cdir / "result.json")) {
      spdlog::info("sweep: {} was finished before", c.name);
      continue;
    }
    RunSpec spec = o.run;
    spec.method = &find_objective(c.method);
    spec.method_options = MethodOptions(spec.method->options, c.options);
    spec.lora = sweep_lora(o.run.lora, c);
    spec.train.schedule.lr = c.lr;
    spec.train.steps = c.steps;
    if (!spec.train.checkpoint_dir.empty())
      spec.train.checkpoint_dir = (fs::path(spec.train.checkpoint_dir) / c.name).string();
    json run_config = config;
    run_config["sweep_config"] = c.to_json();
    spec.train.run_config = run_config;
    const bool uses_retain = spec.method->make(spec.method_options)->uses_retain();
    spdlog::info("sweep: group {} runs {} ({} steps at lr {:g}) on {} rank(s)", pg.group, c.name, c.steps, c.lr,
                 group.size());
    auto t0 = std::chrono::steady_clock::now();
    // At ZeRO 3 the run keeps its layers as shards to the end, and the evaluation gathers them
    // one layer at a time (no rank holds the model whole).
    RunOutput out =
        run_objective(spec, text, data.forget, uses_retain ? &data.retain : nullptr, group, rt.device, {}, {}, true);
    if (out.result.preempted) {
      stopped = true;
      break;
    }
    const double train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (group.rank() == 0) fs::create_directories(cdir);
    group.barrier();
    EvalJob job;
    job.model = {o.run.model.dir, o.run.model.dtype, ""};
    if (o.keep_models) {
      job.model.dir = (cdir / "model").string();
      if (!any_rank(group, is_complete_dir(job.model.dir))) {
        if (out.engine)
          save_model_from_engine(*out.engine, job.model.dir, CheckpointFormat::kHf, run_config, o.run.model.dir,
                                 OutputOptions().max_shard_bytes, group);
        else if (group.rank() == 0)
          save_model(out.model, job.model.dir, CheckpointFormat::kHf, run_config, o.run.model.dir);
      }
      group.barrier();
    }
    job.max_len = o.run.data.max_len;
    job.eval = o.eval;
    job.report.out = (cdir / "eval").string();
    job.report.title = "sweep: " + c.name;
    job.report.tofu_reference = o.tofu_reference;
    job.report.replace = true;  // a report without result.json is from an interrupted run
    job.meta = {{"config", run_config}};
    Evaluated ev =
        evaluate_model(out.model, job, data.eval_splits, text.tok, text.tmpl, rt.device, group, out.engine.get());
    out.engine.reset();
    if (group.rank() == 0) {
      json r = c.to_json();
      r["summary"] = ev.summary;
      r["tofu"] = ev.tofu.is_null() ? json::object() : ev.tofu;
      r["train_seconds"] = train_s;
      r["steps_done"] = out.result.steps_done;
      write_json_file((cdir / "result.json").string(), r);
    }
    group.barrier();
  }
  join_groups(*pg.world);
  if (any_rank(*pg.world, stopped)) {
    spdlog::warn("sweep: preempted; rerun the same command with --resume");
    return kExitPreempted;
  }
  Communicator& world = *pg.world;
  if (world.rank() == 0) {
    json rows = json::array();
    for (auto& c : o.configs) rows.push_back(read_json_file((dir / "runs" / c.name / "result.json").string()));
    const bool with_ref = !o.tofu_reference.empty();
    json table = sweep_table(rows, with_ref);
    std::vector<ScatterPoint> points;
    for (auto& r : table)
      points.push_back(
          {r["name"].get<std::string>(), r["x"].get<double>(), r["y"].get<double>(), r["pareto"].get<bool>()});
    std::string md = sweep_markdown(table, with_ref);
    plan["results"] = table;
    plan["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    write_json_file((dir / "sweep.json").string(), plan);
    write_file_atomic((dir / "sweep.md").string(), md);
    write_file_atomic(
        (dir / "sweep.svg").string(),
        scatter_plot_svg("Sweep: " + std::to_string(K) + " configurations",
                         with_ref ? "forget quality" : "1 - forget answer probability", "model utility", points));
    std::cout << md << std::flush;
    spdlog::info("sweep: done; table in {}", (dir / "sweep.md").string());
  }
  world.barrier();
  return 0;
}

}  // namespace lethe
