#include "data/batching.h"

#include "common/error.h"
#include "common/rng.h"

namespace lethe {

TokenizedItem tokenize_item(const Tokenizer& tok, ChatTemplate tmpl, const Example& e, int64_t max_len) {
  ChatText ct = apply_chat_template(tmpl, e.prompt, e.response);
  ct.prompt += e.response_prefix;
  TokenizedItem it;
  it.ids = tok.encode(ct.prompt, false);
  it.prompt_len = int64_t(it.ids.size());
  auto ans = tok.encode(ct.response, false);
  it.ids.insert(it.ids.end(), ans.begin(), ans.end());
  if (int64_t(it.ids.size()) > max_len) {
    // Keep the whole answer where possible: cut the prompt from the left.
    int64_t excess = int64_t(it.ids.size()) - max_len;
    int64_t cut = std::min(excess, std::max<int64_t>(it.prompt_len - 1, 0));
    it.ids.erase(it.ids.begin(), it.ids.begin() + cut);
    it.prompt_len -= cut;
    if (int64_t(it.ids.size()) > max_len) it.ids.resize(size_t(max_len));
  }
  // At least one answer token must be predicted from a token before it.
  if (int64_t(it.ids.size()) <= std::max<int64_t>(it.prompt_len, 1))
    throw InputError("an item keeps no answer token within --max-len " + std::to_string(max_len) + " (question '" +
                     e.prompt.substr(0, 60) + "')");
  return it;
}

std::vector<TokenizedItem> tokenize_items(const Tokenizer& tok, ChatTemplate tmpl, const std::vector<Example>& ex,
                                          int64_t max_len) {
  std::vector<TokenizedItem> out;
  out.reserve(ex.size());
  for (auto& e : ex) out.push_back(tokenize_item(tok, tmpl, e, max_len));
  return out;
}

int64_t max_length(const std::vector<TokenizedItem>& items, const std::vector<int64_t>& index) {
  int64_t T = 0;
  for (auto i : index) T = std::max<int64_t>(T, int64_t(items[size_t(i)].ids.size()));
  return T;
}

Batch collate(const std::vector<TokenizedItem>& items, const std::vector<int64_t>& index, int64_t pad_id,
              int64_t min_len) {
  int64_t B = int64_t(index.size()), T = std::max(min_len, max_length(items, index));
  auto ids = torch::full({B, T}, pad_id, torch::kLong);
  auto mask = torch::zeros({B, T}, torch::kLong);
  auto labels = torch::full({B, T}, -100, torch::kLong);
  auto pi = ids.accessor<int64_t, 2>(), pm = mask.accessor<int64_t, 2>(), pl = labels.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const auto& it = items[size_t(index[size_t(b)])];
    for (int64_t t = 0; t < int64_t(it.ids.size()); ++t) {
      pi[b][t] = it.ids[size_t(t)];
      pm[b][t] = 1;
      if (t >= it.prompt_len) pl[b][t] = it.ids[size_t(t)];
    }
  }
  return {ids, mask, labels, index};
}

BatchIterator::BatchIterator(const std::vector<TokenizedItem>* items, int64_t batch_size, uint64_t seed, int64_t pad_id,
                             bool shuffle)
    : items_(items), batch_size_(batch_size), seed_(seed), pad_id_(pad_id), shuffle_(shuffle) {
  if (items_->empty()) throw InputError("cannot iterate over an empty data set");
  if (batch_size_ <= 0) throw InputError("--batch-size must be positive");
}

void BatchIterator::seek(int64_t epoch, int64_t cursor) {
  epoch_ = epoch;
  cursor_ = cursor;
  const int64_t n = int64_t(items_->size());
  if (shuffle_) {
    order_ = permutation(n, seed_ * 1000003ULL + uint64_t(epoch_));
  } else {
    order_.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) order_[size_t(i)] = i;
  }
}

std::vector<int64_t> BatchIterator::next_indices() {
  const int64_t n = int64_t(items_->size());
  if (order_.empty()) seek(0, 0);
  std::vector<int64_t> idx;
  while (int64_t(idx.size()) < batch_size_) {
    if (cursor_ >= n) seek(epoch_ + 1, 0);
    idx.push_back(order_[size_t(cursor_++)]);
  }
  return idx;
}

Batch BatchIterator::next() { return collate(*items_, next_indices(), pad_id_); }

}  // namespace lethe
