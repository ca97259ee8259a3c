#include "eval/mia.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "common/error.h"
#include "dist/collectives.h"
#include "model/lm_loss.h"

namespace lethe {

AnswerTokenStats answer_token_stats(CausalLM& model, const Batch& b) {
  torch::NoGradGuard ng;
  AnswerRows a = answer_rows(model->hidden(b.input_ids, b.attention_mask), b.labels);
  auto W = model->lm_head_weight();
  const double cap = model->config.final_logit_softcapping;
  const int64_t N = a.rows.size(0), V = W.size(0);
  const int64_t chunk = std::max<int64_t>(1, (int64_t(64) << 20) / (V * 4));  // ~64 MiB of float32 logits
  auto fopt = a.rows.options().dtype(torch::kFloat);
  auto nll = torch::empty({N}, fopt), correct = torch::empty({N}, fopt), z = torch::empty({N}, fopt);
  for (int64_t s = 0; s < N; s += chunk) {
    const int64_t n = std::min(chunk, N - s);
    auto logits = torch::matmul(a.rows.narrow(0, s, n), W.t()).to(torch::kFloat);
    if (cap > 0) logits = torch::tanh(logits / cap) * cap;
    auto t = a.targets.narrow(0, s, n).unsqueeze(1);
    auto lp = torch::log_softmax(logits, -1);
    auto p = lp.exp();
    auto mu = (p * lp).sum(-1);
    auto sigma = ((p * lp * lp).sum(-1) - mu * mu).clamp_min(1e-12).sqrt();
    auto tlp = lp.gather(1, t).squeeze(1);
    nll.narrow(0, s, n).copy_(-tlp);
    z.narrow(0, s, n).copy_((tlp - mu) / sigma);
    correct.narrow(0, s, n).copy_(logits.argmax(-1).eq(t.squeeze(1)));
  }
  return {a.scatter(nll), a.scatter(correct), a.scatter(z), a.mask};
}

std::vector<double> gradnorm_scores(CausalLM& model, const std::vector<TokenizedItem>& items, int64_t pad_id,
                                    Communicator* comm) {
  model->eval();
  std::vector<torch::Tensor> params;
  for (auto& p : model->parameters())
    if (p.requires_grad()) params.push_back(p);
  if (params.empty()) throw InputError("GradNorm: the model has no parameters that take a gradient");
  const int64_t n = int64_t(items.size()), rank = comm ? comm->rank() : 0, world = comm ? comm->size() : 1;
  auto scores = torch::zeros({std::max<int64_t>(n, 1)}, torch::kDouble);
  for (int64_t i = rank; i < n; i += world) {
    Batch b = collate(items, {i}, pad_id).to(model->device());
    TokenLoss tl = model->answer_loss(b.input_ids, b.attention_mask, b.labels);
    auto loss = (tl.nll * tl.mask).sum() / tl.mask.sum().clamp_min(1);
    auto grads = torch::autograd::grad({loss}, params, {}, false, false, /*allow_unused=*/true);
    double sum = 0;
    int64_t count = 0;
    for (auto& g : grads)
      if (g.defined()) {
        sum += g.to(torch::kDouble).norm().item<double>();
        ++count;
      }
    scores[i] = count ? sum / double(count) : 0.0;
  }
  if (comm && world > 1) all_reduce_host(*comm, scores, ReduceOp::Sum);
  std::vector<double> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = scores[i].item<double>();
  return out;
}

std::vector<double> gradnorm_scores(CausalLM& model, DataParallel& engine, const std::vector<TokenizedItem>& items,
                                    int64_t pad_id, Communicator& comm) {
  LETHE_CHECK(engine.zero_stage() > 0, "GradNorm through an engine needs its gradients sharded (ZeRO 1-3)");
  model->eval();
  std::map<std::string, int64_t> index;  // the trained parameters, numbered alike on every rank
  for (auto& [name, p] : model->named_parameters(true).pairs())
    if (p.requires_grad()) index.emplace(name, int64_t(index.size()));
  if (index.empty()) throw InputError("GradNorm: the model has no parameters that take a gradient");
  std::vector<double> out(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    engine.zero_grad();
    Batch b = collate(items, {int64_t(i)}, pad_id).to(model->device());
    TokenLoss tl = model->answer_loss(b.input_ids, b.attention_mask, b.labels);
    ((tl.nll * tl.mask).sum() / tl.mask.sum().clamp_min(1)).backward();
    engine.reduce_gradients();  // the same item on every rank: the average is its gradient
    // Each parameter's sum of squares over this rank's slices, on the device; one copy to the host.
    auto squares =
        torch::zeros({int64_t(index.size())}, torch::TensorOptions().dtype(torch::kDouble).device(model->device()));
    engine.visit_gradient_shards([&](const std::string& name, int64_t, const torch::Tensor& g) {
      squares[index.at(name)] += g.to(torch::kDouble).square().sum();
    });
    squares = squares.to(torch::kCPU);
    all_reduce_host(comm, squares, ReduceOp::Sum);
    out[i] = squares.sqrt().mean().item<double>();
  }
  engine.zero_grad();
  return out;
}

double extraction_strength(const std::vector<bool>& correct) {
  const size_t n = correct.size();
  if (n == 0) return 0;
  size_t k = n;  // the smallest k with every prediction from k on correct
  while (k > 0 && correct[k - 1]) --k;
  return 1.0 - double(k) / double(n);
}

double min_k_score(std::vector<double> values, double k) {
  if (values.empty()) return 0;
  const size_t m = std::max<size_t>(1, size_t(std::floor(double(values.size()) * k)));
  std::partial_sort(values.begin(), values.begin() + long(m), values.end());
  double sum = 0;
  for (size_t i = 0; i < m; ++i) sum += values[i];
  return -sum / double(m);
}

int64_t zlib_length(const std::string& text) {
  uLongf size = compressBound(uLong(text.size()));
  std::vector<Bytef> buf(size);
  int rc = compress(buf.data(), &size, reinterpret_cast<const Bytef*>(text.data()), uLong(text.size()));
  LETHE_CHECK(rc == Z_OK, "zlib compress failed");
  return int64_t(size);
}

double roc_auc(const std::vector<double>& negatives, const std::vector<double>& positives) {
  if (negatives.empty() || positives.empty()) return 0.5;
  // Mann-Whitney U over the sorted union: ties share their average rank.
  std::vector<std::pair<double, int>> all;
  for (double v : negatives) all.push_back({v, 0});
  for (double v : positives) all.push_back({v, 1});
  std::sort(all.begin(), all.end(), [](auto& a, auto& b) { return a.first < b.first; });
  double rank_sum = 0;
  for (size_t i = 0; i < all.size();) {
    size_t j = i;
    while (j < all.size() && all[j].first == all[i].first) ++j;
    const double avg_rank = (double(i + 1) + double(j)) / 2;
    for (size_t k = i; k < j; ++k)
      if (all[k].second == 1) rank_sum += avg_rank;
    i = j;
  }
  const double np = double(positives.size()), nn = double(negatives.size());
  return (rank_sum - np * (np + 1) / 2) / (np * nn);
}

double priv_leak(double auc_model, double auc_retain_model) {
  const double ref = 1 - auc_retain_model;
  if (ref == 0) return 0;
  return 100 * ((1 - auc_model) - ref) / ref;
}

}  // namespace lethe
