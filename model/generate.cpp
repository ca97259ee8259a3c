#include "model/generate.h"

#include <algorithm>

namespace lethe {

std::vector<int64_t> greedy_generate(CausalLM& model, const std::vector<int64_t>& prompt, int64_t max_new_tokens,
                                     const std::vector<int64_t>& stop_ids) {
  torch::NoGradGuard ng;
  std::vector<int64_t> out;
  if (prompt.empty() || max_new_tokens <= 0) return out;
  KVCache cache;
  auto ids = torch::tensor(prompt, torch::kLong).view({1, -1}).to(model->device());
  int64_t limit = model->config.max_position_embeddings;
  for (int64_t step = 0; step < max_new_tokens && cache.length + ids.size(1) <= limit; ++step) {
    auto logits = model->forward(ids, {}, &cache);
    int64_t next = logits.select(1, logits.size(1) - 1).argmax(-1).item<int64_t>();
    if (std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end()) break;
    out.push_back(next);
    ids = torch::tensor({next}, torch::kLong).view({1, 1}).to(model->device());
  }
  return out;
}

}  // namespace lethe
