#include "unlearn/method_support.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <fstream>

#include "common/error.h"
#include "common/rng.h"
#include "dist/collectives.h"
#include "unlearn/losses.h"

namespace lethe {

uint64_t item_seed(uint64_t seed, uint64_t stream, int64_t item) {
  SplitMix64 a(seed ^ (stream * 0x9E3779B97F4A7C15ULL));
  SplitMix64 b(a.next() + uint64_t(item));
  return b.next();
}

std::vector<torch::Tensor> cache_per_item(CausalLM& model, const std::vector<TokenizedItem>& items,
                                          const std::vector<int64_t>& which, int64_t pad_id, int64_t pad_to,
                                          const ItemForward& fn, const std::string& what, Communicator* comm) {
  torch::NoGradGuard ng;
  const auto t0 = std::chrono::steady_clock::now();
  const bool was_training = model->is_training();
  model->eval();
  for (int64_t i : which) LETHE_CHECK(i >= 0 && i < int64_t(items.size()), "cache_per_item: index out of range");
  std::vector<torch::Tensor> cache(items.size());
  // Round j: each rank computes its item of the round (item_share), and every rank receives the
  // round's values; a rank past the end computes nothing, or a filler pass that it drops.
  const ItemShare share = item_share(model, comm);
  const size_t N = share.ranks;
  int64_t bytes = 0;
  for (size_t j = 0; j < share.rounds(which.size()); ++j) {
    const size_t pos = share.item(j);
    const bool filler = pos >= which.size();
    torch::Tensor mine;
    if (!filler || share.fillers) {
      Batch one = collate(items, {which[filler ? 0 : pos]}, pad_id, pad_to).to(model->device());
      auto v = fn(one);
      if (!filler) mine = (v.dim() > 0 ? v.squeeze(0) : v).detach().to(torch::kCPU).contiguous();
    }
    std::vector<torch::Tensor> round = share.split ? all_gather_tensors(*comm, mine) : std::vector<torch::Tensor>{mine};
    for (size_t q = 0; q < N && j * N + q < which.size(); ++q) {
      cache[size_t(which[j * N + q])] = round[q];
      bytes += round[q].numel() * int64_t(round[q].element_size());
    }
  }
  if (was_training) model->train();
  spdlog::info("{}: reference values of {} items cached ({:.1f} MiB{}) in {:.1f} s", what, which.size(),
               double(bytes) / 1048576.0, N > 1 ? fmt::format(", computed 1/{} per rank", N) : "",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return cache;
}

torch::Tensor gather_cached(const std::vector<torch::Tensor>& cache, const std::vector<int64_t>& index, int64_t T,
                            torch::Device device) {
  std::vector<torch::Tensor> rows;
  for (int64_t i : index) {
    LETHE_CHECK(i >= 0 && i < int64_t(cache.size()) && cache[size_t(i)].defined(),
                "no cached reference value for item " + std::to_string(i));
    auto v = cache[size_t(i)];
    if (v.dim() > 0) {
      if (v.size(0) >= T) {
        v = v.narrow(0, 0, T);
      } else {
        auto shape = v.sizes().vec();
        shape[0] = T - v.size(0);
        v = torch::cat({v, torch::zeros(shape, v.options())}, 0);
      }
    }
    rows.push_back(v);
  }
  return torch::stack(rows).to(device);
}

void add_retain_term(ObjectiveResult& out, CausalLM& model, const Batch* retain, double weight) {
  if (weight == 0) return;
  auto r = mean_item_nll(model, *retain);
  out.loss = out.loss + weight * r;
  out.parts["retain_nll"] = r.item<double>();
}

torch::Tensor summed_logp(CausalLM& model, const Batch& b) {
  return -item_sum_nll(model->answer_loss(b.input_ids, b.attention_mask, b.labels));
}

Batch with_labels(const Batch& b, const torch::Tensor& labels) {
  Batch out = b;
  out.labels = labels;
  return out;
}

namespace {
// x shifted left by one position along dim 1, `fill` in the last position.
torch::Tensor shift_left(const torch::Tensor& x, double fill) {
  auto out = torch::full(x.sizes(), fill, x.options());
  const int64_t T = x.size(1);
  if (T > 1) out.narrow(1, 0, T - 1).copy_(x.narrow(1, 1, T - 1));
  return out;
}
}  // namespace

torch::Tensor answer_prediction_mask(const torch::Tensor& labels) {
  return next_token_targets(labels).ne(-100).to(torch::kFloat);
}

torch::Tensor next_token_targets(const torch::Tensor& labels) { return shift_left(labels.to(torch::kLong), -100); }

torch::Tensor next_token_mask(const torch::Tensor& attention_mask) {
  return shift_left(attention_mask.to(torch::kFloat), 0);
}

std::vector<std::string> load_refusals(const std::string& path, const std::string& option) {
  if (path.empty())
    return {"I'm not able to share that.",
            "I don't have any information about that.",
            "That is not something I can talk about.",
            "Sorry, I can't help with that question.",
            "I have no knowledge of that.",
            "I'd rather not say anything about that.",
            "I can't answer that.",
            "That's beyond what I can tell you."};
  std::ifstream in(path);
  if (!in) throw InputError(option + ": cannot read refusal file '" + path + "'");
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    // A JSON string per line is accepted too.
    if (line.size() >= 2 && line.front() == '"' && line.back() == '"') {
      try {
        line = json::parse(line).get<std::string>();
      } catch (const std::exception&) {
      }
    }
    if (!line.empty()) out.push_back(line);
  }
  if (out.empty()) throw InputError(option + ": refusal file '" + path + "' has no lines");
  return out;
}

std::vector<TokenizedItem> refusal_items(const ObjectiveContext& ctx, const std::vector<Example>& examples,
                                         const std::vector<std::string>& refusals, uint64_t stream) {
  std::vector<Example> ex;
  for (size_t i = 0; i < examples.size(); ++i) {
    SplitMix64 r(item_seed(ctx.seed, stream, int64_t(i)));
    ex.push_back({examples[i].prompt, refusals[r.below(refusals.size())], examples[i].attrs});
  }
  return tokenize_items(*ctx.tok, ctx.tmpl, ex, ctx.max_len);
}

ObjectiveResult preference_result(CausalLM& model, const Batch& forget, const std::vector<TokenizedItem>& win,
                                  const std::vector<torch::Tensor>& ref_w, const std::vector<torch::Tensor>& ref_l,
                                  double beta, int64_t pad_id, const std::string& name, const std::string& preferred) {
  const auto dev = forget.input_ids.device();
  auto lw = summed_logp(model, collate(win, forget.index, pad_id).to(dev));
  auto ll = summed_logp(model, forget);
  auto f =
      dpo_loss(lw, gather_cached(ref_w, forget.index, 0, dev), ll, gather_cached(ref_l, forget.index, 0, dev), beta);
  return {f,
          {{name, f.item<double>()},
           {preferred + "_logp", lw.mean().item<double>()},
           {"answer_logp", ll.mean().item<double>()}}};
}

}  // namespace lethe
