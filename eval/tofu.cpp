#include "eval/tofu.h"

#include <algorithm>
#include <cmath>
#include <regex>
#include <set>

#include "common/error.h"
#include "dist/collectives.h"

namespace lethe {

std::vector<std::string> sensitive_strings(const Example& e) {
  std::vector<std::string> out;
  if (e.attrs.contains("sensitive") && e.attrs["sensitive"].is_array()) {
    for (auto& s : e.attrs["sensitive"])
      if (s.is_string() && !s.get<std::string>().empty()) out.push_back(s.get<std::string>());
    return out;
  }
  static const std::regex email(R"([A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)");
  static const std::regex number(R"(\d[\d,.]*\d)");
  static const std::regex name(R"([A-Z][a-z]+(?:[ -][A-Z][a-z]+)+)");
  std::set<std::string> seen;
  for (auto* re : {&email, &number, &name})
    for (std::sregex_iterator it(e.response.begin(), e.response.end(), *re), end; it != end; ++it)
      if (seen.insert(it->str()).second) out.push_back(it->str());
  return out;
}

KsTest ks_two_sample(std::vector<double> a, std::vector<double> b) {
  if (a.empty() || b.empty()) throw InputError("KS test: an empty sample");
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  const double n = double(a.size()), m = double(b.size());
  size_t i = 0, j = 0;
  double d = 0;
  while (i < a.size() && j < b.size()) {
    double x = std::min(a[i], b[j]);
    while (i < a.size() && a[i] <= x) ++i;
    while (j < b.size() && b[j] <= x) ++j;
    d = std::max(d, std::abs(double(i) / n - double(j) / m));
  }
  KsTest t;
  t.statistic = d;
  const double lambda = std::sqrt(n * m / (n + m)) * d;
  if (lambda < 1e-3) return t;  // p = 1
  double sum = 0;
  for (int k = 1; k <= 200; ++k) {
    double term = std::exp(-2.0 * k * k * lambda * lambda);
    sum += (k % 2 ? 1.0 : -1.0) * term;
    if (term < 1e-16) break;
  }
  t.p_value = std::clamp(2.0 * sum, 0.0, 1.0);
  return t;
}

void add_tofu_metrics(SplitMetrics& m, CausalLM& model, const Tokenizer& tok, ChatTemplate tmpl,
                      const std::vector<Example>& examples, const EvalOptions& opt, int64_t max_len,
                      Communicator* comm) {
  const size_t n = examples.size();
  m.answer_prob = 0;
  for (auto& im : m.per_item) m.answer_prob += std::exp(-im.nll) / double(std::max<size_t>(n, 1));
  if (opt.generate) {
    int64_t with = 0, leaked = 0;
    for (auto& im : m.per_item) {
      auto s = sensitive_strings(examples[size_t(im.index)]);
      if (s.empty()) continue;
      ++with;
      for (auto& str : s)
        if (im.generation.find(str) != std::string::npos) {
          im.leaked = true;
          ++leaked;
          break;
        }
    }
    m.leakage_items = with;
    m.leakage = with ? double(leaked) / double(with) : 0.0;
  }
  // Truth ratio: every record needs a list of perturbed (wrong) answers. The correct answer it is
  // measured against is the paraphrased one when every record has it (TOFU forget / retain
  // files), else the answer itself (real authors, world facts), which also gives Prob_normalised.
  for (auto& e : examples) {
    const json& a = e.attrs;
    if (!a.contains("perturbed_answer") || !a["perturbed_answer"].is_array() || a["perturbed_answer"].empty()) return;
  }
  const bool paraphrased = std::all_of(examples.begin(), examples.end(), [](const Example& e) {
    return e.attrs.contains("paraphrased_answer") && e.attrs["paraphrased_answer"].is_string();
  });
  std::vector<Example> para, pert;
  std::vector<size_t> owner;
  for (size_t i = 0; i < n; ++i) {
    const json& a = examples[i].attrs;
    if (paraphrased)
      para.push_back({examples[i].prompt, a["paraphrased_answer"].get<std::string>(), json::object(),
                      examples[i].response_prefix});
    for (auto& p : a["perturbed_answer"]) {
      if (!p.is_string())
        throw InputError("perturbed_answer of record " + std::to_string(i) + " is not a list of strings");
      pert.push_back({examples[i].prompt, p.get<std::string>(), json::object(), examples[i].response_prefix});
      owner.push_back(i);
    }
  }
  EvalOptions eo = opt;
  eo.generate = false;
  std::vector<double> correct_nll(n);
  if (paraphrased) {
    SplitMetrics mp = evaluate_split(model, tok, tmpl, m.name + "/paraphrased", para, eo, max_len, comm);
    for (size_t i = 0; i < n; ++i) correct_nll[i] = mp.per_item[i].nll;
  } else {
    for (size_t i = 0; i < n; ++i) correct_nll[i] = m.per_item[i].nll;
  }
  SplitMetrics mq = evaluate_split(model, tok, tmpl, m.name + "/perturbed", pert, eo, max_len, comm);
  std::vector<double> pert_nll(n, 0.0), pert_cnt(n, 0.0), pert_prob(n, 0.0);
  for (size_t k = 0; k < owner.size(); ++k) {
    pert_nll[owner[k]] += mq.per_item[k].nll;
    pert_cnt[owner[k]] += 1;
    pert_prob[owner[k]] += std::exp(-mq.per_item[k].nll);
  }
  m.has_truth_ratio = true;
  m.truth_ratio_forget = m.truth_ratio_retain = 0;
  m.has_options = !paraphrased;
  m.answer_prob_normalised = 0;
  for (size_t i = 0; i < n; ++i) {
    double r = truth_ratio(correct_nll[i], pert_nll[i] / pert_cnt[i]);
    m.per_item[i].truth_ratio = r;
    m.truth_ratio_forget += std::min(r, 1.0 / r) / double(n);
    m.truth_ratio_retain += std::max(0.0, 1.0 - r) / double(n);
    if (m.has_options) {
      m.per_item[i].prob_normalised = prob_normalised(correct_nll[i], pert_prob[i]);
      m.answer_prob_normalised += m.per_item[i].prob_normalised / double(n);
    }
  }
}

double truth_ratio(double correct_nll, double mean_wrong_nll) { return std::exp(correct_nll - mean_wrong_nll); }

double prob_normalised(double correct_nll, double wrong_prob_sum) {
  const double p = std::exp(-correct_nll);
  return p / (p + wrong_prob_sum + 1e-10);
}

double model_utility(const std::vector<double>& terms) {
  if (terms.empty()) return 0;
  double inv = 0;
  for (double v : terms) {
    if (v <= 0) return 0;  // as scipy's hmean: a zero term makes the mean zero
    inv += 1.0 / v;
  }
  return double(terms.size()) / inv;
}

}  // namespace lethe
