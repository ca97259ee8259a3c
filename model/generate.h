// Greedy decoding with a KV cache: the prompts are prefilled once, then one token per step.
#pragma once
#include <cstdint>
#include <vector>

#include "model/llama.h"

namespace lethe {

std::vector<int64_t> greedy_generate(CausalLM& model, const std::vector<int64_t>& prompt, int64_t max_new_tokens,
                                     const std::vector<int64_t>& stop_ids);

// Several prompts at once: left-padded to the longest, pad keys masked and RoPE positions
// counted from each row's first token, so every row decodes as it would alone (up to float
// rounding in the batched GEMMs). A row stops at its first stop id; the batch stops when every
// row has, after max_new_tokens, or when the longest prompt reaches max_position_embeddings.
// While the forward is a collective (model->collective_forward: ZeRO 3 shards), every step runs
// and the rows are cut at their first stop id after, so every rank runs the same passes.
std::vector<std::vector<int64_t>> greedy_generate_batch(CausalLM& model,
                                                        const std::vector<std::vector<int64_t>>& prompts,
                                                        int64_t max_new_tokens, const std::vector<int64_t>& stop_ids);

}  // namespace lethe
