#include "eval/report_writer.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <filesystem>

#include "checkpoints/peft_adapter.h"
#include "common/error.h"
#include "common/fs.h"
#include "eval/tofu.h"

namespace fs = std::filesystem;

namespace lethe {

std::vector<double> read_reference_truth_ratios(const std::string& path) {
  json ref = read_json_file(path);
  try {
    return ref.at("splits").at("forget").at("truth_ratios").get<std::vector<double>>();
  } catch (const std::exception&) {
    throw InputError("--tofu-reference '" + path +
                     "': no splits.forget.truth_ratios (evaluate the retain-only "
                     "model with --forget on a TOFU forget file first)");
  }
}

json tofu_scores(const Report& r, bool generated, const std::vector<double>& reference,
                 const std::string& reference_path) {
  json tofu;
  if (!reference.empty() && !r.splits.empty()) {
    const SplitMetrics& f = r.splits.front();  // --forget is the first split
    if (!f.has_truth_ratio)
      throw InputError("--tofu-reference: the --forget data has no paraphrased_answer/perturbed_answer fields");
    std::vector<double> mine;
    for (auto& im : f.per_item) mine.push_back(im.truth_ratio);
    KsTest ks = ks_two_sample(mine, reference);
    tofu = {{"forget_quality", ks.p_value}, {"ks_statistic", ks.statistic}, {"reference", reference_path}};
  }
  for (auto& m : r.splits)
    if (m.name == "retain") {  // TOFU model utility: harmonic mean of the retain metrics available
      std::vector<double> parts = {m.answer_prob};
      if (generated) parts.push_back(m.rouge_l_recall);
      if (m.has_truth_ratio) parts.push_back(m.truth_ratio_retain);
      double inv = 0;
      for (double v : parts) inv += 1.0 / std::max(v, 1e-12);
      tofu["model_utility"] = double(parts.size()) / inv;
    }
  return tofu;
}

json report_summary(const Report& r) {
  json s = json::object();
  for (auto& m : r.splits)
    s[m.name] = {{"accuracy", m.accuracy},
                 {"mean_nll", m.mean_nll},
                 {"rouge_l_recall", m.rouge_l_recall},
                 {"answer_prob", m.answer_prob},
                 {"leakage", m.leakage}};
  if (r.has_scores)
    s["knowundo"] = {{"unlearn_success", r.scores.unlearn_success},
                     {"retention_success", r.scores.retention_success},
                     {"average_success", r.scores.average_success}};
  return s;
}

CausalLM load_eval_model(const ModelLoadOptions& m, torch::Device device) {
  CausalLM model = load_model(m.dir, m.dtype);
  if (!m.adapter.empty()) {  // evaluated merged: the same function as peft's
    load_peft_adapter(model, m.adapter);
    model->merge_lora();
  }
  model->to(device);
  return model;
}

Evaluated evaluate_checkpoint(const EvalJob& job, const std::vector<NamedExamples>& splits, const Tokenizer& tok,
                              ChatTemplate tmpl, torch::Device device, Communicator& comm) {
  const ReportOptions& ro = job.report;
  std::vector<double> reference;
  if (!ro.tofu_reference.empty()) reference = read_reference_truth_ratios(ro.tofu_reference);
  if (!ro.out.empty() && !ro.replace && fs::exists(ro.out) && !fs::is_empty(ro.out))
    throw InputError("report directory '" + ro.out + "' already exists and is not empty; refusing to overwrite it");
  CausalLM model = load_eval_model(job.model, device);
  Evaluated ev;
  ev.report = evaluate_report(model, tok, tmpl, splits, job.eval, job.max_len, &comm);
  const Report& r = ev.report;
  ev.summary = report_summary(r);
  ev.tofu = tofu_scores(r, job.eval.generate, reference, ro.tofu_reference);
  ev.markdown =
      report_markdown(r.splits, r.has_scores ? &r.scores : nullptr, ro.title.empty() ? job.model.dir : ro.title);
  if (ev.tofu.contains("forget_quality"))
    ev.markdown += fmt::format("\nTOFU forget quality (KS p-value vs {}): **{:.3g}** (D = {:.3f})\n", ro.tofu_reference,
                               ev.tofu["forget_quality"].get<double>(), ev.tofu["ks_statistic"].get<double>());
  if (comm.rank() == 0 && !ro.out.empty()) {
    json meta = job.meta;
    meta["model"] = job.model.dir;
    json rj = report_json(r.splits, r.has_scores ? &r.scores : nullptr, meta);
    if (!ev.tofu.is_null()) rj["tofu"] = ev.tofu;
    if (ro.replace && fs::exists(ro.out)) remove_dir_safely(ro.out);
    // Built under a temporary name and published with its marker: a killed eval leaves no
    // report that looks whole, and the next run is not blocked by a partial one.
    write_dir_atomically(
        ro.out,
        [&](const std::string& tmp) {
          write_json_file((fs::path(tmp) / "report.json").string(), rj);
          write_file_atomic((fs::path(tmp) / "report.md").string(), ev.markdown);
          if (ro.per_item) {
            std::string lines;
            for (size_t i = 0; i < r.splits.size(); ++i) lines += per_item_jsonl(r.splits[i], splits[i].examples);
            write_file_atomic((fs::path(tmp) / "per_item.jsonl").string(), lines);
          }
        },
        "report directory");
    spdlog::info("eval: report written to {}", ro.out);
  }
  comm.barrier();
  return ev;
}

}  // namespace lethe
