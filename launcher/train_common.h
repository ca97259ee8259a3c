// Pieces of `lethe unlearn` that `lethe spunge` reuses for every subset.
#pragma once
#include <functional>

#include "data/chat_template.h"
#include "data/dataset.h"
#include "data/tokenizer.h"
#include "launcher/options.h"
#include "model/llama.h"
#include "unlearn/trainer.h"

namespace lethe {

// Loads `dir` in --dtype, adds LoRA adapters when --lora-rank > 0, moves it to `device`.
CausalLM load_for_training(const po::variables_map& vm, const std::string& dir, const Tokenizer& tok,
                           torch::Device device, Communicator& comm);

// Tokenizes, prepares the objective at theta_0 (reference caches, derived items) and runs the
// training loop over `comm`. The caller merges LoRA and calls obj.finish() afterwards.
TrainResult fit_objective(CausalLM& model, Objective& obj, const Tokenizer& tok, ChatTemplate tmpl, int64_t max_len,
                          const std::vector<Example>& primary, const std::vector<Example>* retain, const TrainOptions& to,
                          Communicator& comm, const std::function<bool(int64_t)>& on_eval, json* description);

}  // namespace lethe
