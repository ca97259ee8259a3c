#include "model/generate.h"

#include <algorithm>

namespace lethe {

namespace {
// Cuts `tokens` before its first stop id.
void cut_at_stop(std::vector<int64_t>& tokens, const std::vector<int64_t>& stop_ids) {
  tokens.erase(std::find_first_of(tokens.begin(), tokens.end(), stop_ids.begin(), stop_ids.end()), tokens.end());
}
}  // namespace

std::vector<int64_t> greedy_generate(CausalLM& model, const std::vector<int64_t>& prompt, int64_t max_new_tokens,
                                     const std::vector<int64_t>& stop_ids) {
  return greedy_generate_batch(model, {prompt}, max_new_tokens, stop_ids)[0];
}

std::vector<std::vector<int64_t>> greedy_generate_batch(CausalLM& model,
                                                        const std::vector<std::vector<int64_t>>& prompts,
                                                        int64_t max_new_tokens, const std::vector<int64_t>& stop_ids) {
  torch::NoGradGuard ng;
  const int64_t B = int64_t(prompts.size());
  std::vector<std::vector<int64_t>> out(prompts.size());
  std::vector<int64_t> rows;  // the rows that decode (an empty prompt yields nothing)
  size_t P = 0;
  for (int64_t b = 0; b < B; ++b)
    if (!prompts[size_t(b)].empty()) rows.push_back(b), P = std::max(P, prompts[size_t(b)].size());
  if (rows.empty() || max_new_tokens <= 0) return out;
  const int64_t R = int64_t(rows.size());
  auto ids = torch::zeros({R, int64_t(P)}, torch::kLong);
  auto mask = torch::zeros({R, int64_t(P)}, torch::kLong);
  auto offset = torch::zeros({R}, torch::kLong);
  bool padded = false;
  for (int64_t r = 0; r < R; ++r) {
    const auto& p = prompts[size_t(rows[size_t(r)])];
    const int64_t pad = int64_t(P - p.size());
    ids[r].narrow(0, pad, int64_t(p.size())).copy_(torch::tensor(p, torch::kLong));
    mask[r].narrow(0, pad, int64_t(p.size())).fill_(1);
    offset[r] = pad;
    padded = padded || pad > 0;
  }
  const auto dev = model->device();
  KVCache cache;
  torch::Tensor key_mask;  // undefined when no row is padded: plain causal attention
  if (padded) {
    cache.position_offset = offset.to(dev);
    key_mask = mask.to(dev);
  }
  ids = ids.to(dev);
  std::vector<bool> done(size_t(R), false);
  int64_t live = R;
  // A forward that is a collective (ZeRO 3 layers gathered per pass) must run the same number of
  // steps on every rank whatever the values: then every step runs, and the rows are cut at their
  // first stop id after (what stopping there gives: greedy tokens do not depend on later ones).
  const bool fixed_steps = model->collective_forward;
  const std::vector<int64_t> no_stops;
  const std::vector<int64_t>& stops = fixed_steps ? no_stops : stop_ids;
  const int64_t limit = model->config.max_position_embeddings;
  for (int64_t step = 0; step < max_new_tokens && live > 0 && cache.length + ids.size(1) <= limit; ++step) {
    auto logits = model->forward(ids, key_mask, &cache);
    auto next = logits.select(1, logits.size(1) - 1).argmax(-1).to(torch::kCPU);
    auto acc = next.accessor<int64_t, 1>();
    for (int64_t r = 0; r < R; ++r) {
      if (done[size_t(r)]) continue;
      if (std::find(stops.begin(), stops.end(), acc[r]) != stops.end()) {
        done[size_t(r)] = true;
        --live;
      } else {
        out[size_t(rows[size_t(r)])].push_back(acc[r]);
      }
    }
    ids = next.view({R, 1}).to(dev);
    if (key_mask.defined()) key_mask = torch::cat({key_mask, torch::ones({R, 1}, key_mask.options())}, 1);
  }
  if (fixed_steps)
    for (auto& o : out) cut_at_stop(o, stop_ids);
  return out;
}

}  // namespace lethe
