// MemFlex (KnowUnDo): locate the LoRA matrices that carry the knowledge to forget from
// gradient information, then update only those.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "unlearn/objective.h"

namespace lethe {

using NamedGrads = std::vector<std::pair<std::string, torch::Tensor>>;

struct MemflexMatrix {
  std::string name;
  double cos = 0;         // cosine(flatten G_UL, flatten G_RT)
  double mag = 0;         // mean |G_UL|
  bool selected = false;  // cos < mu and mag > sigma
};

// Step 2: per matrix (whole matrix, not element-wise).
std::vector<MemflexMatrix> memflex_localize(const NamedGrads& g_forget, const NamedGrads& g_retain, double mu,
                                            double sigma);

// Step 1: the gradient of every trainable LoRA matrix, averaged over `copies` copies of each
// item in which half of the answer tokens (positions drawn with replacement) carry uniform
// random labels; eval mode, one item at a time. Items are split across the ranks of comm and
// the sums all-reduced, so every rank returns the same averages.
NamedGrads memflex_gradient_information(CausalLM& model, const std::vector<TokenizedItem>& items, int64_t max_items,
                                        int64_t copies, uint64_t seed, uint64_t stream, int64_t vocab, int64_t pad_id,
                                        Communicator* comm);

// The same two steps on a model kept sharded (ZeRO 3), through `engine` (built over the
// adapters): this rank's slice of each matrix's averaged gradient, name -> (first element of the
// slice in the flattened matrix, the fp32 slice). Every rank runs the same passes: item
// k * world + rank in round k, a rank with no item left runs item 0 at weight 0; the engine
// averages each pass's gradient across ranks. Collective.
using GradientShards = std::map<std::string, std::pair<int64_t, torch::Tensor>>;
GradientShards memflex_gradient_shards(CausalLM& model, DataParallel& engine, const std::vector<TokenizedItem>& items,
                                       int64_t max_items, int64_t copies, uint64_t seed, uint64_t stream, int64_t vocab,
                                       int64_t pad_id, Communicator& comm);
// Step 2 from the slices: per matrix (numels: every matrix's element count, by name) the sums
// of the slices, all-reduced, give the whole matrix's cosine and mean |G|. Collective.
std::vector<MemflexMatrix> memflex_localize_shards(const GradientShards& g_forget, const GradientShards& g_retain,
                                                   const std::map<std::string, int64_t>& numels, double mu,
                                                   double sigma, Communicator& comm);

}  // namespace lethe
