// Tokenized question/answer items, padded batches with answer-only labels, and a
// deterministic shuffling iterator (same order for the same seed on any machine).
#pragma once
#include <torch/torch.h>

#include <vector>

#include "data/chat_template.h"
#include "data/dataset.h"
#include "data/tokenizer.h"

namespace lethe {

struct TokenizedItem {
  std::vector<int64_t> ids;
  int64_t prompt_len = 0;  // labels are -100 before this position
};

// Prompt and answer are tokenized separately and joined, so the mask boundary is exact.
// Longer items are cut to max_len (answer tokens go first; the count is logged by callers).
TokenizedItem tokenize_item(const Tokenizer& tok, ChatTemplate tmpl, const Example& e, int64_t max_len);
std::vector<TokenizedItem> tokenize_items(const Tokenizer& tok, ChatTemplate tmpl, const std::vector<Example>& ex,
                                          int64_t max_len);

struct Batch {
  torch::Tensor input_ids;       // [B, T] int64, right-padded
  torch::Tensor attention_mask;  // [B, T] int64
  torch::Tensor labels;          // [B, T] int64, -100 on prompt and padding
  std::vector<int64_t> index;    // item indices in the source list
  int64_t answer_tokens() const { return labels.ne(-100).sum().item<int64_t>(); }
  Batch to(torch::Device d) const { return {input_ids.to(d), attention_mask.to(d), labels.to(d), index}; }
};

// min_len pads further, so every rank's slice of a global batch has the same shape.
Batch collate(const std::vector<TokenizedItem>& items, const std::vector<int64_t>& index, int64_t pad_id,
              int64_t min_len = 0);
int64_t max_length(const std::vector<TokenizedItem>& items, const std::vector<int64_t>& index);

// Cycles through items in a fresh seeded permutation every epoch. Every batch is full: one
// that runs past the end of an epoch continues into the next permutation, so the global
// batch (and data order) is the same whatever the number of ranks that share it.
class BatchIterator {
 public:
  BatchIterator(const std::vector<TokenizedItem>* items, int64_t batch_size, uint64_t seed, int64_t pad_id,
                bool shuffle = true);
  Batch next();
  std::vector<int64_t> next_indices();  // the next global batch, as item indices
  int64_t epoch() const { return epoch_; }
  // Resume support: (epoch, cursor) fully determine the position.
  std::pair<int64_t, int64_t> position() const { return {epoch_, cursor_}; }
  void seek(int64_t epoch, int64_t cursor);

 private:
  const std::vector<TokenizedItem>* items_;
  int64_t batch_size_;
  uint64_t seed_;
  int64_t pad_id_;
  bool shuffle_;
  int64_t epoch_ = 0, cursor_ = 0;
  std::vector<int64_t> order_;
};

}  // namespace lethe
