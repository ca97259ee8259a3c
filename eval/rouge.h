// ROUGE-L (longest common subsequence) over words, tokenized as the rouge_score package does
// by default: lowercase, non-alphanumerics become spaces, split on whitespace.
#pragma once
#include <string>
#include <vector>

namespace lethe {

struct RougeL {
  double precision = 0, recall = 0, f1 = 0;
};

std::vector<std::string> rouge_tokens(const std::string& s);
RougeL rouge_l(const std::string& prediction, const std::string& reference);

}  // namespace lethe
