// Greedy decoding with a KV cache: the prompt is prefilled once, then one token per step.
#pragma once
#include <cstdint>
#include <vector>

#include "model/llama.h"

namespace lethe {

std::vector<int64_t> greedy_generate(CausalLM& model, const std::vector<int64_t>& prompt, int64_t max_new_tokens,
                                     const std::vector<int64_t>& stop_ids);

}  // namespace lethe
