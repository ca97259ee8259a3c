// Logit lens: each decoder layer's output read through the final norm and lm_head as if it were
// the last layer, and the answer's probability under that reading. Knowledge an unlearning
// method only hides in the last layers shows up again in the middle ones.
#pragma once
#include <vector>

#include "data/batching.h"
#include "dist/communicator.h"
#include "model/llama.h"

namespace lethe {

// Per decoder layer l (0 .. L-1; the last equals the model's own output), the mean over items of
// exp(-mean answer-token NLL) read from layer l. Distributed when comm is given: rank r reads
// items r, r+N, ...; the sums are reduced, so every rank returns the whole curve. When the
// forward is a collective (ZeRO 3 shards), every rank runs as many passes (eval_share).
std::vector<double> logit_lens_answer_prob(CausalLM& model, const std::vector<TokenizedItem>& items, int64_t pad_id,
                                           int64_t batch_size, Communicator* comm = nullptr);

}  // namespace lethe
