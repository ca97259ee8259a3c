#include "eval/probe.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>

#include "common/error.h"
#include "common/fs.h"
#include "eval/logit_lens.h"
#include "eval/plot.h"
#include "model/quantize.h"

namespace fs = std::filesystem;

namespace lethe {

namespace {

// The forget questions as TOFU paraphrases them (records without a paraphrase are left out).
std::vector<Example> paraphrased(const std::vector<Example>& forget) {
  std::vector<Example> out;
  for (const Example& e : forget)
    if (e.attrs.contains("paraphrased_question") && e.attrs["paraphrased_question"].is_string()) {
      Example p = e;
      p.prompt = e.attrs["paraphrased_question"].get<std::string>();
      out.push_back(std::move(p));
    }
  return out;
}

std::string cell(const json& row, const std::string& split, const std::string& key) {
  if (!row.contains(split) || !row[split].contains(key)) return "—";
  return fmt::format("{:.4f}", row[split][key].get<double>());
}

std::string tofu_cell(const json& row, const std::string& key) {
  if (!row.contains("tofu") || !row["tofu"].contains(key)) return "—";
  return fmt::format("{:.4g}", row["tofu"][key].get<double>());
}

}  // namespace

void check_probe_options(const ProbeOptions& probe) {
  for (auto& q : probe.quantize) parse_quant_format(q, "--quantize");
  for (auto& p : probe.prompts)
    if (p != "paraphrase" && p != "prefix")
      throw InputError("--prompts: unknown prompt probe '" + p + "' (paraphrase, prefix)");
}

double relearn_ratio(double delta_reference, double delta_probed) {
  if (delta_probed <= 0) return 1.0;
  return std::clamp(delta_reference / delta_probed, 0.0, 1.0);
}

ProbeResult run_probe(const EvalJob& job, const ProbeOptions& probe, const std::vector<NamedExamples>& splits,
                      const Tokenizer& tok, ChatTemplate tmpl, torch::Device device, Communicator& comm,
                      const Relearner& relearn) {
  LETHE_CHECK(!splits.empty() && splits.front().name == "forget", "run_probe: the forget split comes first");
  const ReportOptions& ro = job.report;
  if (!ro.out.empty() && fs::exists(ro.out) && !fs::is_empty(ro.out))
    throw InputError("probe directory '" + ro.out + "' already exists and is not empty; refusing to overwrite it");
  check_probe_options(probe);
  std::vector<QuantFormat> formats;
  for (auto& q : probe.quantize) formats.push_back(parse_quant_format(q, "--quantize"));
  std::vector<double> reference;
  if (!ro.tofu_reference.empty()) reference = read_reference_truth_ratios(ro.tofu_reference);
  const bool generated = job.eval.generate;

  ProbeResult res;
  res.table = json::array();
  std::vector<std::string> notes;
  auto evaluate = [&](CausalLM& model, const std::string& name, const std::vector<NamedExamples>& sp, json extra) {
    spdlog::info("probe: {}", name);
    Report r = evaluate_report(model, tok, tmpl, sp, job.eval, job.max_len, &comm);
    json row = {{"probe", name}};
    SplitFields fields;
    fields.rouge = generated;
    for (auto& m : r.splits) row[m.name] = split_record(m, fields);
    json tofu = tofu_scores(r, generated, reference, ro.tofu_reference);
    if (!tofu.is_null() && !tofu.empty()) row["tofu"] = tofu;
    for (auto& [k, v] : extra.items()) row[k] = v;
    res.table.push_back(row);
  };

  auto load = [&](const ModelLoadOptions& m) { return load_model_for_eval(m, job.zero_stage, device, comm); };
  {  // the model as it is, then the prompt probes and the logit lens on it
    std::unique_ptr<EvalModel> loaded = load(job.model);
    CausalLM& model = loaded->model;
    evaluate(model, "as is", splits, json::object());
    const std::vector<Example>& forget = splits.front().examples;
    for (auto& p : probe.prompts) {
      std::vector<Example> changed;
      std::string name;
      if (p == "paraphrase") {
        changed = paraphrased(forget);
        name = "paraphrased questions";
        if (changed.empty()) {
          notes.push_back("paraphrased questions: the forget data has no paraphrased_question field; skipped");
          continue;
        }
        if (changed.size() < forget.size())
          notes.push_back(
              fmt::format("paraphrased questions: {} of {} forget records have one", changed.size(), forget.size()));
      } else {
        changed = forget;
        for (auto& e : changed) e.response_prefix = probe.prefix + " ";
        name = "prefix \"" + probe.prefix + "\"";
      }
      evaluate(model, name, {{"forget", changed}}, json::object());
    }
    if (probe.logit_lens) {
      const int64_t pad = pad_token_id(tok, tmpl);
      res.logit_lens = {{"layers", model->config.num_hidden_layers}};
      for (auto& s : splits)
        res.logit_lens[s.name] = logit_lens_answer_prob(model, tokenize_items(tok, tmpl, s.examples, job.max_len), pad,
                                                        job.eval.batch_size, &comm);
    }
  }
  if (relearn) {  // learn the first part of the forget set again, test on the rest
    const std::vector<Example>& forget = splits.front().examples;
    const size_t n_learn = size_t(std::ceil(double(forget.size()) * probe.relearn_share));
    if (n_learn == 0 || n_learn >= forget.size())
      throw InputError("--relearn-share " + fmt::format("{}", probe.relearn_share) + " leaves no forget item to " +
                       (n_learn == 0 ? "relearn" : "test") + " (" + std::to_string(forget.size()) + " items)");
    std::vector<Example> learn(forget.begin(), forget.begin() + long(n_learn));
    std::vector<Example> rest(forget.begin() + long(n_learn), forget.end());
    std::vector<NamedExamples> tested = splits;
    tested.front().examples = rest;
    // The probed model, then the retain-only reference when given: before and after relearning.
    std::vector<std::pair<std::string, ModelLoadOptions>> models = {{"", job.model}};
    if (!probe.relearn_reference.empty())
      models.push_back({"reference ", {probe.relearn_reference, job.model.dtype, ""}});
    std::vector<size_t> before, after;
    for (auto& [label, m] : models) {
      {
        std::unique_ptr<EvalModel> loaded = load(m);
        before.push_back(res.table.size());
        evaluate(loaded->model, label + "as is, held-out forget part", {{"forget", rest}},
                 {{"forget_items", rest.size()}});
      }
      std::unique_ptr<EvalModel> relearned = relearn(m, learn);  // on `device`
      after.push_back(res.table.size());
      evaluate(relearned->model, label + "relearned", tested,
               {{"relearned_items", learn.size()}, {"forget_items", rest.size()}});
    }
    if (models.size() == 2) {
      res.relearn_ratio = json::object();
      for (auto& [metric, v] : res.table[after[0]]["forget"].items()) {
        // The scores that rise as the answers come back (not the NLL, not the two-sided truth ratio).
        if (metric != "accuracy" && metric != "answer_prob" && metric != "rouge_l_recall") continue;
        auto delta = [&](size_t k) {
          return res.table[after[k]]["forget"][metric].get<double>() -
                 res.table[before[k]]["forget"][metric].get<double>();
        };
        res.relearn_ratio[metric] = relearn_ratio(delta(1), delta(0));
      }
    }
  }
  for (QuantFormat f : formats) {  // a fresh copy of the model for each format
    std::unique_ptr<EvalModel> loaded = load(job.model);
    QuantizeSummary q;
    if (loaded->engine)  // one gathered layer at a time; every rank keeps its shard of the result
      loaded->engine->update_frozen_layers(
          [&](int64_t layer) { q += quantize_linear_weights(loaded->model, f, probe.quant_block, layer); });
    else
      q = quantize_linear_weights(loaded->model, f, probe.quant_block);
    evaluate(loaded->model, quant_format_name(f), splits,
             {{"quantized_tensors", q.tensors}, {"weight_relative_error", q.relative_error()}});
  }

  // The table and the plot.
  std::string md = "# Robustness probe: " + (ro.title.empty() ? job.model.dir : ro.title) + "\n\n";
  md +=
      "| probe | forget acc | forget prob | forget ROUGE-L | forget truth ratio | retain acc | retain prob | retain "
      "ROUGE-L | model utility | forget quality |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
      "---: |\n";
  for (auto& row : res.table)
    md += fmt::format(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", row["probe"].get<std::string>(),
        cell(row, "forget", "accuracy"), cell(row, "forget", "answer_prob"), cell(row, "forget", "rouge_l_recall"),
        cell(row, "forget", "truth_ratio"), cell(row, "retain", "accuracy"), cell(row, "retain", "answer_prob"),
        cell(row, "retain", "rouge_l_recall"), tofu_cell(row, "model_utility"), tofu_cell(row, "forget_quality"));
  md += fmt::format(
      "\nQuantized: every weight matrix of the decoder layers (embeddings, norms and lm_head kept); int8 per output "
      "channel, NF4/FP4 in blocks of {} with float32 absmax scales. Prompt probes change the forget questions "
      "only (retain: —).\n",
      probe.quant_block);
  if (relearn)
    md += fmt::format(
        "Relearned: finetuned on the first {:.0f}% of the forget items; both relearning rows evaluate the other "
        "forget items.\n",
        100 * probe.relearn_share);
  if (res.relearn_ratio.is_object()) {
    md +=
        "\nRelearning ratio R = min(gain of the retain-only model / gain of this model, 1) on the held-out forget "
        "items (1: relearns no faster than a model that never saw them):";
    for (auto& [metric, r] : res.relearn_ratio.items()) md += fmt::format(" {} {:.3f}", metric, r.get<double>());
    md += "\n";
  }
  if (probe.logit_lens) {
    md += "\n## Logit lens: answer probability read at each decoder layer\n\n| layer |";
    std::vector<PlotSeries> series;
    for (auto& s : splits) {
      md += " " + s.name + " |";
      series.push_back({s.name, res.logit_lens[s.name].get<std::vector<double>>()});
    }
    md += "\n| ---: |";
    for (size_t i = 0; i < splits.size(); ++i) md += " ---: |";
    md += "\n";
    for (int64_t l = 0; l < res.logit_lens["layers"].get<int64_t>(); ++l) {
      md += fmt::format("| {} |", l);
      for (auto& s : series) md += fmt::format(" {:.4f} |", s.y[size_t(l)]);
      md += "\n";
    }
    res.svg = line_plot_svg("Logit lens: " + (ro.title.empty() ? job.model.dir : ro.title), "decoder layer",
                            "answer probability", series);
  }
  for (auto& n : notes) md += "\n- " + n;
  if (!notes.empty()) md += "\n";
  res.markdown = md;

  if (comm.rank() == 0 && !ro.out.empty()) {
    json pj = {{"meta", job.meta},
               {"model", job.model.dir},
               {"probes", res.table},
               {"relearn_ratio", res.relearn_ratio.is_null() ? json::object() : res.relearn_ratio},
               {"logit_lens", res.logit_lens.is_null() ? json::object() : res.logit_lens},
               {"notes", notes}};
    write_dir_atomically(
        ro.out,
        [&](const std::string& tmp) {
          write_json_file((fs::path(tmp) / "probe.json").string(), pj);
          write_file_atomic((fs::path(tmp) / "probe.md").string(), res.markdown);
          if (!res.svg.empty()) write_file_atomic((fs::path(tmp) / "probe.svg").string(), res.svg);
        },
        "probe directory");
    spdlog::info("probe: written to {}", ro.out);
  }
  comm.barrier();
  return res;
}

}  // namespace lethe
