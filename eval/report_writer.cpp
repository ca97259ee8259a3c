#include "eval/report_writer.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <optional>

#include "checkpoints/peft_adapter.h"
#include "common/error.h"
#include "common/fs.h"
#include "eval/mia.h"
#include "eval/tofu.h"
#include "model/lora.h"

namespace fs = std::filesystem;

namespace lethe {

std::vector<double> read_reference_truth_ratios(const std::string& path) {
  json ref = read_json_file(path);
  if (ref.is_object() && ref.contains("forget_truth_ratio")) {  // open-unlearning's TOFU_EVAL.json
    const json& f = ref["forget_truth_ratio"];
    if (!f.is_object() || !f.contains("value_by_index") || !f["value_by_index"].is_object())
      throw InputError("--tofu-reference '" + path + "': forget_truth_ratio has no value_by_index object");
    std::vector<std::pair<int64_t, double>> by_index;
    for (auto& [key, v] : f["value_by_index"].items()) {
      int64_t i = 0;
      auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), i);
      if (ec != std::errc() || end != key.data() + key.size())
        throw InputError("--tofu-reference '" + path + "': forget_truth_ratio index '" + key + "' is not a number");
      const std::string what = "--tofu-reference '" + path + "': forget_truth_ratio." + key;
      if (!v.is_object()) throw InputError(what + " is not an object");
      // open-unlearning's versions name the value "score" or "truth_ratio".
      double r = v.contains("score") ? json_get<double>(v, "score", what) : json_get<double>(v, "truth_ratio", what);
      by_index.push_back({i, r});
    }
    std::sort(by_index.begin(), by_index.end());
    std::vector<double> out;
    for (auto& [i, r] : by_index) out.push_back(r);
    return out;
  }
  std::vector<double> out;
  bool current = false;
  try {
    const json& f = ref.at("splits").at("forget");
    out = f.at("truth_ratios").get<std::vector<double>>();
    current = f.contains("truth_ratio_definition");
  } catch (const std::exception&) {
    throw InputError("--tofu-reference '" + path +
                     "': no splits.forget.truth_ratios (evaluate the retain-only "
                     "model with --forget on a TOFU forget file first)");
  }
  if (!current)  // a report of a lethe older than open-unlearning's R: the reciprocal
    for (double& v : out) v = 1.0 / v;
  return out;
}

std::string open_unlearning_prefix(const std::string& split) {
  if (split == "real_authors") return "ra";
  if (split == "world_facts") return "wf";
  return split;
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
  // TOFU model utility: the harmonic mean of Prob (Prob_normalised against the perturbed options
  // on real authors and world facts), ROUGE-L recall and truth ratio on the retain, real-authors
  // and world-facts splits, of those terms the evaluation has; "model_utility_terms" names them.
  std::vector<double> terms;
  json names = json::array();
  for (const char* split : {"retain", "real_authors", "world_facts"})
    for (auto& m : r.splits) {
      if (m.name != split) continue;
      const std::string p = open_unlearning_prefix(m.name);
      auto add = [&](const std::string& name, double v) {
        terms.push_back(v);
        names.push_back(p + "_" + name);
      };
      if (m.has_options)
        add("Q_A_Prob_normalised", m.answer_prob_normalised);
      else
        add("Q_A_Prob", m.answer_prob);
      if (generated) add("Q_A_ROUGE", m.rouge_l_recall);
      if (m.has_truth_ratio) add("Truth_Ratio", m.truth_ratio_retain);
    }
  if (!terms.empty()) {
    tofu["model_utility"] = model_utility(terms);
    tofu["model_utility_terms"] = names;
  }
  return tofu;
}

namespace {
json metric(double agg, json by_index = json()) {
  json m = {{"agg_value", agg}};
  if (!by_index.is_null()) m["value_by_index"] = std::move(by_index);
  return m;
}
}  // namespace

json open_unlearning_eval(const Report& r, const std::vector<NamedExamples>& splits, const json& tofu, const json& mia,
                          bool generated) {
  json out = json::object();
  for (size_t s = 0; s < r.splits.size(); ++s) {
    const SplitMetrics& m = r.splits[s];
    const std::string n = open_unlearning_prefix(m.name);
    json prob = json::object(), norm = json::object(), rouge = json::object(), tr = json::object(), em = json::object(),
         es = json::object();
    for (auto& im : m.per_item) {
      const std::string i = std::to_string(im.index);
      const Example& e = splits[s].examples[size_t(im.index)];
      prob[i] = {{"prob", std::exp(-im.nll)}, {"avg_loss", im.nll}};
      if (m.has_options) norm[i] = {{"prob", im.prob_normalised}};
      if (generated)
        rouge[i] = {{"rougeL_recall", im.rouge_l_recall},
                    {"rougeL_f1", im.rouge_l_f1},
                    {"input", e.prompt},
                    {"ground_truth", e.response},
                    {"generation", im.generation}};
      if (m.has_truth_ratio) tr[i] = {{"score", im.truth_ratio}};
      em[i] = {{"score", im.accuracy}};
      es[i] = {{"score", im.extraction_strength}};
    }
    out[n + "_Q_A_Prob"] = metric(m.answer_prob, prob);
    if (m.has_options) out[n + "_Q_A_Prob_normalised"] = metric(m.answer_prob_normalised, norm);
    if (generated) out[n + "_Q_A_ROUGE"] = metric(m.rouge_l_recall, rouge);
    if (m.has_truth_ratio) {  // forget: closer to 1 is better; elsewhere: true better
      if (n == "forget")
        out["forget_truth_ratio"] = metric(m.truth_ratio_forget, tr);
      else
        out[n + "_Truth_Ratio"] = metric(m.truth_ratio_retain, tr);
    }
    out[n + "_exact_memorization"] = metric(m.exact_memorization, em);
    out[n + "_extraction_strength"] = metric(m.extraction_strength, es);
  }
  if (tofu.is_object()) {
    if (tofu.contains("forget_quality")) out["forget_quality"] = metric(tofu["forget_quality"].get<double>());
    if (tofu.contains("model_utility")) out["model_utility"] = metric(tofu["model_utility"].get<double>());
  }
  if (mia.is_object()) {
    for (auto& [attack, auc] : mia["auc"].items()) out["mia_" + attack] = metric(auc.get<double>());
    if (mia.contains("priv_leak")) out["privleak"] = metric(mia["priv_leak"].get<double>());
  }
  return out;
}

json open_unlearning_summary(const json& eval) {
  json s = json::object();
  for (auto& [k, v] : eval.items()) s[k] = v["agg_value"];
  return s;
}

json membership_inference(const Report& r, const std::string& reference_path) {
  const SplitMetrics *forget = nullptr, *holdout = nullptr;
  for (auto& m : r.splits) {
    if (m.name == "forget") forget = &m;
    if (m.name == "holdout") holdout = &m;
  }
  if (!forget || !holdout) return json();
  json mia = {{"auc", mia_aucs(mia_scores(*forget), mia_scores(*holdout))}};
  if (!reference_path.empty()) {
    // The retain-only model's Min-K% AUC: lethe's report.json (mia.auc.min_k) or open-unlearning's
    // TOFU_EVAL.json (mia_min_k.agg_value).
    json ref = read_json_file(reference_path);
    const std::string what = "--tofu-reference '" + reference_path + "'";
    std::optional<double> ref_auc;
    if (ref.contains("mia") && ref["mia"].is_object() && ref["mia"].contains("auc"))
      ref_auc = json_get<double>(ref["mia"]["auc"], "min_k", what + ": mia.auc");
    else if (ref.contains("mia_min_k"))
      ref_auc = json_get<double>(ref["mia_min_k"], "agg_value", what + ": mia_min_k");
    if (ref_auc) {
      mia["priv_leak"] = priv_leak(mia["auc"]["min_k"].get<double>(), *ref_auc);
      mia["reference_auc_min_k"] = *ref_auc;
    }
  }
  return mia;
}

json split_record(const SplitMetrics& m, SplitFields fields) {
  json row = {{"accuracy", m.accuracy}, {"answer_prob", m.answer_prob}, {"mean_nll", m.mean_nll}};
  if (m.has_truth_ratio) row["truth_ratio"] = m.name == "forget" ? m.truth_ratio_forget : m.truth_ratio_retain;
  if (fields.rouge) row["rouge_l_recall"] = m.rouge_l_recall;
  if (fields.leakage) row["leakage"] = m.leakage;
  if (fields.tofu_terms) {
    row["exact_memorization"] = m.exact_memorization;
    row["extraction_strength"] = m.extraction_strength;
    if (m.has_options) row["answer_prob_normalised"] = m.answer_prob_normalised;
  }
  return row;
}

json report_summary(const Report& r) {
  json s = json::object();
  SplitFields fields;
  fields.rouge = fields.leakage = true;
  for (auto& m : r.splits) s[m.name] = split_record(m, fields);
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

std::unique_ptr<EvalModel> load_sharded_eval_model(const ModelLoadOptions& m, torch::Device device, Communicator& comm,
                                                   bool gradients) {
  auto out = std::make_unique<EvalModel>();
  DeferredWeights deferred;  // read from while the engine is built
  out->model = load_model_without_layers(m.dir, m.dtype, deferred);
  if (!m.adapter.empty()) load_peft_adapter(out->model, m.adapter);
  for (auto& [name, p] : out->model->named_parameters(true).pairs())
    p.set_requires_grad(gradients && !is_lora_parameter(name));
  out->model->to(device);
  OptimizerOptions none;  // nothing steps: SGD without momentum keeps no state
  none.name = "sgd";
  out->engine = std::make_unique<DataParallel>(out->model, comm, 3, none, ActivationCheckpointing::kNone, &deferred);
  spdlog::info("eval: ZeRO 3 over {} rank(s): each rank read and keeps its shard of {}'s decoder layers", comm.size(),
               m.dir);
  return out;
}

std::unique_ptr<EvalModel> load_model_for_eval(const ModelLoadOptions& m, int zero_stage, torch::Device device,
                                               Communicator& comm, bool gradients) {
  if (zero_stage == 3) return load_sharded_eval_model(m, device, comm, gradients);
  auto out = std::make_unique<EvalModel>();
  out->model = load_eval_model(m, device);
  return out;
}

namespace {
// GradNorm and the reference attack compare the forget split with the holdout split.
bool has_membership_splits(const std::vector<NamedExamples>& splits) {
  bool forget = false, holdout = false;
  for (auto& s : splits) {
    forget = forget || s.name == "forget";
    holdout = holdout || s.name == "holdout";
  }
  return forget && holdout;
}
}  // namespace

void add_membership_scores(Report& r, CausalLM& model, const std::vector<NamedExamples>& splits, const Tokenizer& tok,
                           ChatTemplate tmpl, const EvalJob& job, torch::Device device, Communicator& comm,
                           DataParallel* sharded) {
  std::vector<size_t> which;
  for (size_t s = 0; s < r.splits.size(); ++s)
    if (r.splits[s].name == "forget" || r.splits[s].name == "holdout") which.push_back(s);
  if (which.size() < 2) {
    if (!job.report.mia_reference.empty()) throw InputError("--mia-reference needs --forget and --holdout");
    return;
  }
  const int64_t pad = pad_token_id(tok, tmpl);
  for (size_t s : which) {
    auto items = tokenize_items(tok, tmpl, splits[s].examples, job.max_len);
    auto g = sharded ? gradnorm_scores(model, *sharded, items, pad, comm) : gradnorm_scores(model, items, pad, &comm);
    for (auto& im : r.splits[s].per_item) im.mia_gradnorm = g[size_t(im.index)];
    r.splits[s].has_gradnorm = true;
  }
  if (job.report.mia_reference.empty()) return;
  const ModelLoadOptions ref_options{job.report.mia_reference, job.model.dtype, ""};
  std::unique_ptr<EvalModel> loaded = load_model_for_eval(ref_options, job.zero_stage, device, comm);
  CausalLM& ref = loaded->model;
  if (ref->config.vocab_size != model->config.vocab_size)
    throw InputError(
        fmt::format("--mia-reference '{}' has a vocabulary of {} tokens, the model {}: not the same tokenizer",
                    job.report.mia_reference, ref->config.vocab_size, model->config.vocab_size));
  EvalOptions eo = job.eval;
  eo.generate = false;
  eo.tofu = false;
  for (size_t s : which) {
    SplitMetrics m = evaluate_split(ref, tok, tmpl, "reference", splits[s].examples, eo, job.max_len, &comm);
    for (auto& im : r.splits[s].per_item) im.mia_reference = im.nll - m.per_item[size_t(im.index)].nll;
    r.splits[s].has_reference = true;
  }
}

namespace {

// What an evaluation reads and checks before any model work: the reference's truth ratios (bad
// input named before a model is loaded) and a free report directory.
std::vector<double> check_eval_inputs(const ReportOptions& ro) {
  std::vector<double> reference;
  if (!ro.tofu_reference.empty()) reference = read_reference_truth_ratios(ro.tofu_reference);
  if (!ro.out.empty() && !ro.replace && fs::exists(ro.out) && !fs::is_empty(ro.out))
    throw InputError("report directory '" + ro.out + "' already exists and is not empty; refusing to overwrite it");
  return reference;
}

Evaluated evaluate_loaded(CausalLM& model, const EvalJob& job, const std::vector<double>& reference,
                          const std::vector<NamedExamples>& splits, const Tokenizer& tok, ChatTemplate tmpl,
                          torch::Device device, Communicator& comm, DataParallel* sharded) {
  const ReportOptions& ro = job.report;
  Evaluated ev;
  ev.report = evaluate_report(model, tok, tmpl, splits, job.eval, job.max_len, &comm);
  add_membership_scores(ev.report, model, splits, tok, tmpl, job, device, comm, sharded);
  const Report& r = ev.report;
  ev.summary = report_summary(r);
  ev.tofu = tofu_scores(r, job.eval.generate, reference, ro.tofu_reference);
  ev.mia = membership_inference(r, ro.tofu_reference);
  ev.markdown =
      report_markdown(r.splits, r.has_scores ? &r.scores : nullptr, ro.title.empty() ? job.model.dir : ro.title);
  if (ev.tofu.contains("forget_quality"))
    ev.markdown += fmt::format("\nTOFU forget quality (KS p-value vs {}): **{:.3g}** (D = {:.3f})\n", ro.tofu_reference,
                               ev.tofu["forget_quality"].get<double>(), ev.tofu["ks_statistic"].get<double>());
  if (!ev.mia.is_null()) {
    ev.markdown += "\nMembership inference, forget vs holdout (AUC; 0.5: indistinguishable):";
    for (auto& [attack, auc] : ev.mia["auc"].items())
      ev.markdown += fmt::format(" {} {:.3f}", attack, auc.get<double>());
    if (ev.mia.contains("priv_leak"))
      ev.markdown += fmt::format("; PrivLeak {:.1f}% (Min-K%, vs the reference)", ev.mia["priv_leak"].get<double>());
    ev.markdown += "\n";
  }
  if (comm.rank() == 0 && !ro.out.empty()) {
    json meta = job.meta;
    meta["model"] = job.model.dir;
    json rj = report_json(r.splits, r.has_scores ? &r.scores : nullptr, meta);
    if (!ev.tofu.is_null()) rj["tofu"] = ev.tofu;
    if (!ev.mia.is_null()) rj["mia"] = ev.mia;
    if (ro.replace && fs::exists(ro.out)) remove_dir_safely(ro.out);
    // Built under a temporary name and published with its marker: a killed eval leaves no
    // report that looks whole, and the next run is not blocked by a partial one.
    write_dir_atomically(
        ro.out,
        [&](const std::string& tmp) {
          write_json_file((fs::path(tmp) / "report.json").string(), rj);
          write_file_atomic((fs::path(tmp) / "report.md").string(), ev.markdown);
          json ou = open_unlearning_eval(r, splits, ev.tofu, ev.mia, job.eval.generate);
          write_json_file((fs::path(tmp) / "TOFU_EVAL.json").string(), ou);
          write_json_file((fs::path(tmp) / "TOFU_SUMMARY.json").string(), open_unlearning_summary(ou));
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

}  // namespace

Evaluated evaluate_checkpoint(const EvalJob& job, const std::vector<NamedExamples>& splits, const Tokenizer& tok,
                              ChatTemplate tmpl, torch::Device device, Communicator& comm) {
  const std::vector<double> reference = check_eval_inputs(job.report);
  auto m = load_model_for_eval(job.model, job.zero_stage, device, comm, has_membership_splits(splits));
  return evaluate_loaded(m->model, job, reference, splits, tok, tmpl, device, comm, m->engine.get());
}

Evaluated evaluate_model(CausalLM& model, const EvalJob& job, const std::vector<NamedExamples>& splits,
                         const Tokenizer& tok, ChatTemplate tmpl, torch::Device device, Communicator& comm,
                         DataParallel* sharded) {
  LETHE_CHECK(!sharded || !has_membership_splits(splits),
              "GradNorm on a model kept sharded by its training would cover only the weights it trained");
  return evaluate_loaded(model, job, check_eval_inputs(job.report), splits, tok, tmpl, device, comm, sharded);
}

}  // namespace lethe
