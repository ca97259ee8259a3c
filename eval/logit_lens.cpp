#include "eval/logit_lens.h"

#include "common/error.h"
#include "dist/collectives.h"

namespace lethe {

std::vector<double> logit_lens_answer_prob(CausalLM& model, const std::vector<TokenizedItem>& items, int64_t pad_id,
                                           int64_t batch_size, Communicator* comm) {
  LETHE_CHECK(batch_size > 0, "logit lens: batch size must be positive");
  torch::NoGradGuard ng;
  model->eval();
  const int64_t layers = int64_t(model->model->layers.size());
  const int64_t n = int64_t(items.size()), rank = comm ? comm->rank() : 0, world = comm ? comm->size() : 1;
  std::vector<int64_t> mine;
  for (int64_t i = rank; i < n; i += world) mine.push_back(i);
  auto sums = torch::zeros({layers + 1}, torch::kDouble);  // per layer: sum over items of the probability; items
  for (size_t start = 0; start < mine.size(); start += size_t(batch_size)) {
    std::vector<int64_t> idx(mine.begin() + long(start),
                             mine.begin() + long(std::min(mine.size(), start + size_t(batch_size))));
    Batch b = collate(items, idx, pad_id).to(model->device());
    std::vector<torch::Tensor> hs;
    model->hidden(b.input_ids, b.attention_mask, nullptr, &hs);
    LETHE_CHECK(int64_t(hs.size()) == layers, "logit lens: one hidden state per decoder layer expected");
    for (int64_t l = 0; l < layers; ++l) {
      TokenLoss tl = model->answer_loss_from_hidden(model->model->norm(hs[size_t(l)]), b.labels);
      auto prob = torch::exp(-item_mean_nll(tl)).to(torch::kDouble).sum();
      sums[l] += prob.cpu();
    }
    sums[layers] += double(idx.size());
  }
  if (comm) all_reduce_host(*comm, sums, ReduceOp::Sum);
  std::vector<double> out(size_t(layers), 0.0);
  const double count = sums[layers].item<double>();
  for (int64_t l = 0; l < layers; ++l) out[size_t(l)] = count > 0 ? sums[l].item<double>() / count : 0.0;
  return out;
}

}  // namespace lethe
