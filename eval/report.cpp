#include "eval/report.h"

#include <fmt/format.h>

#include "eval/mia.h"
#include "eval/tofu.h"

namespace lethe {

KnowUndoScores knowundo_scores(const SplitMetrics& forget, const SplitMetrics& retain) {
  KnowUndoScores s;
  s.unlearn_success = 100.0 * (1.0 - forget.accuracy);
  s.retention_success = 100.0 * retain.accuracy;
  s.average_success = 0.5 * (s.unlearn_success + s.retention_success);
  return s;
}

json mia_scores(const SplitMetrics& m) {
  std::vector<double> loss, zlib, min_k, min_k_pp, gradnorm, reference;
  for (auto& im : m.per_item) {
    loss.push_back(im.nll);
    zlib.push_back(im.mia_zlib);
    min_k.push_back(im.mia_min_k);
    min_k_pp.push_back(im.mia_min_k_plus_plus);
    gradnorm.push_back(im.mia_gradnorm);
    reference.push_back(im.mia_reference);
  }
  json out = {{"loss", loss}, {"zlib", zlib}, {"min_k", min_k}, {"min_k_plus_plus", min_k_pp}};
  if (m.has_gradnorm) out["gradnorm"] = gradnorm;
  if (m.has_reference) out["reference"] = reference;
  return out;
}

json mia_aucs(const json& forget_scores, const json& holdout_scores) {
  json out = json::object();
  for (auto& [attack, v] : forget_scores.items())
    if (holdout_scores.contains(attack))
      out[attack] = roc_auc(v.get<std::vector<double>>(), holdout_scores[attack].get<std::vector<double>>());
  return out;
}

json report_json(const std::vector<SplitMetrics>& splits, const KnowUndoScores* scores, const json& meta) {
  json j = {{"meta", meta}, {"splits", json::object()}};
  for (auto& m : splits)
    j["splits"][m.name] = {{"items", m.items},
                           {"answer_tokens", m.answer_tokens},
                           {"accuracy", m.accuracy},
                           {"mean_nll", m.mean_nll},
                           {"perplexity", m.perplexity},
                           {"rouge_l_f1", m.rouge_l_f1},
                           {"rouge_l_recall", m.rouge_l_recall},
                           {"answer_prob", m.answer_prob},
                           {"exact_memorization", m.exact_memorization},
                           {"extraction_strength", m.extraction_strength}};
  for (auto& m : splits) {
    json& js = j["splits"][m.name];
    js["mia_scores"] = mia_scores(m);
    if (m.leakage_items > 0) {
      js["leakage"] = m.leakage;
      js["leakage_items"] = m.leakage_items;
    }
    if (m.has_truth_ratio) {
      js["truth_ratio_forget"] = m.truth_ratio_forget;
      js["truth_ratio_retain"] = m.truth_ratio_retain;
      std::vector<double> r;
      for (auto& im : m.per_item) r.push_back(im.truth_ratio);
      js["truth_ratios"] = r;
      js["truth_ratio_definition"] = kTruthRatioDefinition;
    }
    if (m.has_options) {
      js["answer_prob_normalised"] = m.answer_prob_normalised;
      std::vector<double> p;
      for (auto& im : m.per_item) p.push_back(im.prob_normalised);
      js["prob_normalised"] = p;
    }
  }
  if (scores)
    j["knowundo"] = {{"unlearn_success", scores->unlearn_success},
                     {"retention_success", scores->retention_success},
                     {"average_success", scores->average_success}};
  return j;
}

std::string report_markdown(const std::vector<SplitMetrics>& splits, const KnowUndoScores* scores,
                            const std::string& title) {
  std::string md = "### " + title + "\n\n";
  if (scores)
    md += fmt::format("Unlearn Success **{:.1f}** | Retention Success **{:.1f}** | Average Success **{:.1f}**\n\n",
                      scores->unlearn_success, scores->retention_success, scores->average_success);
  md +=
      "| split | items | answer-token acc % | mean NLL | perplexity | ROUGE-L F1 | ROUGE-L recall | answer prob | "
      "answer prob normalised | truth ratio (forget / retain form) | leakage % |\n";
  md += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (auto& m : splits) {
    std::string tr =
        m.has_truth_ratio ? fmt::format("{:.3f} / {:.3f}", m.truth_ratio_forget, m.truth_ratio_retain) : "-";
    std::string leak = m.leakage_items > 0 ? fmt::format("{:.1f} (of {})", 100.0 * m.leakage, m.leakage_items) : "-";
    std::string norm = m.has_options ? fmt::format("{:.3f}", m.answer_prob_normalised) : "-";
    md += fmt::format("| {} | {} | {:.1f} | {:.3f} | {:.4g} | {:.3f} | {:.3f} | {:.3f} | {} | {} | {} |\n", m.name,
                      m.items, 100.0 * m.accuracy, m.mean_nll, m.perplexity, m.rouge_l_f1, m.rouge_l_recall,
                      m.answer_prob, norm, tr, leak);
  }
  return md;
}

Report evaluate_report(CausalLM& model, const Tokenizer& tok, ChatTemplate tmpl,
                       const std::vector<NamedExamples>& splits, const EvalOptions& opt, int64_t max_len,
                       Communicator* comm) {
  Report r;
  const SplitMetrics *forget = nullptr, *retain = nullptr;
  for (auto& s : splits) {
    r.splits.push_back(evaluate_split(model, tok, tmpl, s.name, s.examples, opt, max_len, comm));
    if (opt.tofu) add_tofu_metrics(r.splits.back(), model, tok, tmpl, s.examples, opt, max_len, comm);
  }
  for (auto& m : r.splits) {
    if (m.name == "forget") forget = &m;
    if (m.name == "retain") retain = &m;
  }
  if (forget && retain) {
    r.has_scores = true;
    r.scores = knowundo_scores(*forget, *retain);
  }
  return r;
}

std::string per_item_jsonl(const SplitMetrics& m, const std::vector<Example>& examples) {
  std::string out;
  for (auto& im : m.per_item) {
    const Example& e = examples[size_t(im.index)];
    json j = {{"split", m.name},
              {"index", im.index},
              {"prompt", e.prompt},
              {"answer", e.response},
              {"answer_tokens", im.answer_tokens},
              {"nll", im.nll},
              {"accuracy", im.accuracy},
              {"generation", im.generation},
              {"rouge_l_f1", im.rouge_l_f1},
              {"rouge_l_recall", im.rouge_l_recall},
              {"leaked", im.leaked},
              {"extraction_strength", im.extraction_strength},
              {"mia_zlib", im.mia_zlib},
              {"mia_min_k", im.mia_min_k},
              {"mia_min_k_plus_plus", im.mia_min_k_plus_plus}};
    if (m.has_truth_ratio) j["truth_ratio"] = im.truth_ratio;
    if (m.has_options) j["prob_normalised"] = im.prob_normalised;
    if (m.has_gradnorm) j["mia_gradnorm"] = im.mia_gradnorm;
    if (m.has_reference) j["mia_reference"] = im.mia_reference;
    out += json_text(j) + "\n";
  }
  return out;
}

}  // namespace lethe
