#include "eval/rouge.h"

#include <cctype>
#include <sstream>

namespace lethe {

std::vector<std::string> rouge_tokens(const std::string& s) {
  std::string t;
  for (unsigned char c : s) t += std::isalnum(c) ? char(std::tolower(c)) : ' ';
  std::istringstream in(t);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

RougeL rouge_l(const std::string& prediction, const std::string& reference) {
  auto p = rouge_tokens(prediction), r = rouge_tokens(reference);
  RougeL out;
  if (p.empty() || r.empty()) return out;
  std::vector<size_t> prev(r.size() + 1, 0), cur(r.size() + 1, 0);
  for (size_t i = 1; i <= p.size(); ++i) {
    for (size_t j = 1; j <= r.size(); ++j)
      cur[j] = p[i - 1] == r[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    std::swap(prev, cur);
  }
  double lcs = double(prev[r.size()]);
  out.precision = lcs / double(p.size());
  out.recall = lcs / double(r.size());
  out.f1 = lcs > 0 ? 2 * out.precision * out.recall / (out.precision + out.recall) : 0.0;
  return out;
}

}  // namespace lethe
