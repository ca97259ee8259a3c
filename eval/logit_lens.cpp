#include "eval/logit_lens.h"

#include "common/error.h"
#include "dist/collectives.h"
#include "eval/evaluate.h"

namespace lethe {

std::vector<double> logit_lens_answer_prob(CausalLM& model, const std::vector<TokenizedItem>& items, int64_t pad_id,
                                           int64_t batch_size, Communicator* comm) {
  torch::NoGradGuard ng;
  model->eval();
  const int64_t layers = int64_t(model->model->layers.size());
  const EvalShare share = eval_share(model, int64_t(items.size()), batch_size, comm);
  auto sums = torch::zeros({layers + 1}, torch::kDouble);  // per layer: sum over items of the probability; items
  for (size_t k = 0; k < share.batches; ++k) {
    const std::vector<int64_t> idx = share.batch(k);
    const bool filler = idx.empty();  // the same passes as the other ranks; nothing recorded
    Batch b = collate(items, filler ? std::vector<int64_t>{0} : idx, pad_id).to(model->device());
    std::vector<torch::Tensor> hs;
    model->hidden(b.input_ids, b.attention_mask, nullptr, &hs);
    LETHE_CHECK(int64_t(hs.size()) == layers, "logit lens: one hidden state per decoder layer expected");
    if (filler) continue;
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
