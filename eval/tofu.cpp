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
  // Truth ratio: every record needs a paraphrased answer and a list of perturbed answers.
  std::vector<Example> para, pert;
  std::vector<size_t> owner;
  for (auto& e : examples) {
    const json& a = e.attrs;
    if (!a.contains("paraphrased_answer") || !a["paraphrased_answer"].is_string() || !a.contains("perturbed_answer") ||
        !a["perturbed_answer"].is_array() || a["perturbed_answer"].empty())
      return;
  }
  for (size_t i = 0; i < n; ++i) {
    const json& a = examples[i].attrs;
    para.push_back(
        {examples[i].prompt, a["paraphrased_answer"].get<std::string>(), json::object(), examples[i].response_prefix});
    for (auto& p : a["perturbed_answer"]) {
      if (!p.is_string())
        throw InputError("perturbed_answer of record " + std::to_string(i) + " is not a list of strings");
      pert.push_back({examples[i].prompt, p.get<std::string>(), json::object(), examples[i].response_prefix});
      owner.push_back(i);
    }
  }
  EvalOptions eo = opt;
  eo.generate = false;
  SplitMetrics mp = evaluate_split(model, tok, tmpl, m.name + "/paraphrased", para, eo, max_len, comm);
  SplitMetrics mq = evaluate_split(model, tok, tmpl, m.name + "/perturbed", pert, eo, max_len, comm);
  std::vector<double> pert_sum(n, 0.0), pert_cnt(n, 0.0);
  for (size_t k = 0; k < owner.size(); ++k) {
    pert_sum[owner[k]] += mq.per_item[k].nll;
    pert_cnt[owner[k]] += 1;
  }
  m.has_truth_ratio = true;
  m.truth_ratio_forget = m.truth_ratio_retain = 0;
  for (size_t i = 0; i < n; ++i) {
    double r = std::exp(pert_sum[i] / pert_cnt[i] - mp.per_item[i].nll);
    m.per_item[i].truth_ratio = r;
    m.truth_ratio_forget += std::min(r, 1.0 / r) / double(n);
    m.truth_ratio_retain += std::max(0.0, 1.0 - 1.0 / r) / double(n);
  }
}

}  // namespace lethe
