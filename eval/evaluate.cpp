#include "eval/evaluate.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/error.h"
#include "common/json_io.h"
#include "dist/collectives.h"
#include "eval/mia.h"
#include "eval/rouge.h"
#include "model/generate.h"

namespace lethe {

std::vector<int64_t> stop_token_ids(const CausalLM& model, const Tokenizer& tok, ChatTemplate tmpl) {
  std::vector<int64_t> ids = model->config.eos_token_ids;
  int64_t eot = tok.token_to_id(end_of_turn(tmpl));
  if (eot >= 0) ids.push_back(eot);
  return ids;
}

int64_t pad_token_id(const Tokenizer& tok, ChatTemplate tmpl) {
  // Padding positions are masked out of attention and loss; any valid id will do.
  int64_t eot = tok.token_to_id(end_of_turn(tmpl));
  return eot >= 0 ? eot : 0;
}

ItemShare item_share(const CausalLM& model, Communicator* comm) {
  if (!comm || comm->size() == 1) return {};
  return {size_t(comm->rank()), size_t(comm->size()), true, model->collective_forward};
}

std::vector<int64_t> ItemShare::items(size_t count) const {
  std::vector<int64_t> v;
  for (size_t j = 0; j < rounds(count) && item(j) < count; ++j) v.push_back(int64_t(item(j)));
  return v;
}

std::vector<int64_t> EvalShare::batch(size_t k) const {
  const size_t start = std::min(mine.size(), k * batch_size), end = std::min(mine.size(), start + batch_size);
  return {mine.begin() + long(start), mine.begin() + long(end)};
}

EvalShare eval_share(const CausalLM& model, int64_t n, int64_t batch_size, Communicator* comm) {
  LETHE_CHECK(batch_size > 0, "evaluation batch size must be positive");
  const ItemShare items = item_share(model, comm);
  EvalShare s;
  s.collective = items.fillers;
  s.mine = items.items(size_t(n));
  s.batch_size = size_t(batch_size);
  const size_t most = s.collective ? items.rounds(size_t(n)) : s.mine.size();
  s.batches = (most + s.batch_size - 1) / s.batch_size;
  return s;
}

SplitMetrics evaluate_split(CausalLM& model, const Tokenizer& tok, ChatTemplate tmpl, const std::string& name,
                            const std::vector<Example>& examples, const EvalOptions& opt, int64_t max_len,
                            Communicator* comm) {
  torch::NoGradGuard ng;
  model->eval();
  auto items = tokenize_items(tok, tmpl, examples, max_len);
  const int64_t pad = pad_token_id(tok, tmpl);
  // A model whose layers are ZeRO 3 shards gathers each layer in every forward, a collective:
  // then every rank runs as many passes as rank 0, which has the most items (a rank short of a
  // batch scores a copy of item 0 and drops it), and generation runs a fixed number of steps.
  const int64_t n = int64_t(items.size()), world = comm ? comm->size() : 1;
  const EvalShare share = eval_share(model, n, opt.batch_size, comm);
  const std::vector<int64_t>& mine = share.mine;
  const bool collective = share.collective;
  const size_t bs = share.batch_size, batches = share.batches;
  // Per item: answer tokens, summed NLL, correct tokens, ROUGE-L F1, ROUGE-L recall, extraction
  // strength, Min-K%, Min-K%++.
  auto table = torch::zeros({std::max<int64_t>(n, 1), 8}, torch::kDouble);
  auto tab = table.accessor<double, 2>();
  for (size_t k = 0; k < batches; ++k) {
    const std::vector<int64_t> idx = share.batch(k);
    const bool filler = idx.empty();  // the same passes as the other ranks; nothing recorded
    Batch b = collate(items, filler ? std::vector<int64_t>{0} : idx, pad).to(model->device());
    AnswerTokenStats ts = answer_token_stats(model, b);
    if (filler) continue;
    auto mask = ts.mask.to(torch::kCPU).to(torch::kBool);
    auto nll = ts.nll.to(torch::kCPU).to(torch::kDouble), z = ts.z.to(torch::kCPU).to(torch::kDouble);
    auto correct = ts.correct.to(torch::kCPU).gt(0.5);
    for (size_t j = 0; j < idx.size(); ++j) {
      auto m = mask[long(j)];
      auto item_nll = nll[long(j)].masked_select(m).contiguous(), item_z = z[long(j)].masked_select(m).contiguous();
      auto item_correct = correct[long(j)].masked_select(m).contiguous();
      const size_t len = size_t(item_nll.numel());
      const double *pn = item_nll.data_ptr<double>(), *pz = item_z.data_ptr<double>();
      const bool* pc = item_correct.data_ptr<bool>();
      std::vector<bool> c(pc, pc + len);
      std::vector<double> logp(len), zs(pz, pz + len);
      for (size_t t = 0; t < len; ++t) logp[t] = -pn[t];
      const int64_t i = idx[j];
      tab[i][0] = double(len);
      tab[i][1] = item_nll.sum().item<double>();
      tab[i][2] = double(std::count(c.begin(), c.end(), true));
      tab[i][5] = extraction_strength(c);
      tab[i][6] = min_k_score(logp);
      tab[i][7] = min_k_score(zs);
    }
  }
  std::vector<std::string> generations;
  if (opt.generate) {
    auto stops = stop_token_ids(model, tok, tmpl);
    // Batches of prompts of similar length (little padding), decoded together with the cache.
    auto prompt_len = [&](int64_t i) { return items[size_t(i)].prompt_len; };
    auto by_length = [&](const std::vector<int64_t>& v) {
      std::vector<size_t> order(v.size());
      for (size_t k = 0; k < order.size(); ++k) order[k] = k;
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return prompt_len(v[a]) < prompt_len(v[b]); });
      return order;
    };
    const std::vector<size_t> order = by_length(mine);
    // Collective: batch k decodes as many steps on every rank, so the context limit is taken at
    // the longest prompt of any rank's batch k (every rank knows every rank's items).
    std::vector<int64_t> longest(batches, 0);
    for (int64_t r = 0; r < (collective ? world : 0); ++r) {
      const std::vector<int64_t> theirs = ItemShare{size_t(r), size_t(world)}.items(size_t(n));
      const std::vector<size_t> o = by_length(theirs);
      for (size_t k = 0; k < o.size(); ++k)
        longest[k / bs] = std::max<int64_t>(longest[k / bs], std::max<int64_t>(1, prompt_len(theirs[o[k]])));
    }
    const int64_t limit = model->config.max_position_embeddings;
    generations.resize(mine.size());
    for (size_t k = 0; k < batches; ++k) {
      const size_t start = std::min(order.size(), k * bs), end = std::min(order.size(), start + bs);
      std::vector<std::vector<int64_t>> prompts;
      for (size_t j = start; j < end; ++j) {
        const auto& it = items[size_t(mine[order[j]])];
        prompts.emplace_back(it.ids.begin(), it.ids.begin() + it.prompt_len);
      }
      int64_t steps = opt.max_new_tokens;
      const bool filler = prompts.empty();  // the same passes as the other ranks; nothing recorded
      if (collective) {
        steps = std::min(steps, std::max<int64_t>(0, limit - longest[k] + 1));
        // An empty prompt decodes nothing (a pass fewer on this rank): a pad token stands in for
        // it, and its output is dropped.
        if (filler) prompts.push_back({pad});
        for (auto& p : prompts)
          if (p.empty()) p.push_back(pad);
      }
      auto outs = greedy_generate_batch(model, prompts, steps, stops);
      if (filler) continue;
      for (size_t j = start; j < end; ++j) {
        const int64_t i = mine[order[j]];
        if (items[size_t(i)].prompt_len == 0) outs[j - start].clear();
        generations[order[j]] = tok.decode(outs[j - start], true);
        RougeL r = rouge_l(generations[order[j]], examples[size_t(i)].response);
        tab[i][3] = r.f1;
        tab[i][4] = r.recall;
      }
    }
  }
  if (world > 1) {
    all_reduce_host(*comm, table, ReduceOp::Sum);
    if (opt.generate) generations = all_gather_strided_strings(*comm, generations);
  }
  SplitMetrics m;
  m.name = name;
  m.items = n;
  double nll_sum = 0, correct_sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    ItemMetrics im;
    im.index = i;
    im.answer_tokens = int64_t(tab[i][0]);
    double cnt = std::max(tab[i][0], 1.0);
    im.nll = tab[i][1] / cnt;
    im.accuracy = tab[i][2] / cnt;
    im.rouge_l_f1 = tab[i][3];
    im.rouge_l_recall = tab[i][4];
    im.extraction_strength = tab[i][5];
    im.mia_min_k = tab[i][6];
    im.mia_min_k_plus_plus = tab[i][7];
    im.mia_zlib = im.nll / double(std::max<int64_t>(zlib_length(examples[size_t(i)].response), 1));
    m.exact_memorization += im.accuracy / double(n);
    m.extraction_strength += im.extraction_strength / double(n);
    if (opt.generate) im.generation = generations[size_t(i)];
    nll_sum += tab[i][1];
    correct_sum += tab[i][2];
    m.answer_tokens += im.answer_tokens;
    m.rouge_l_f1 += im.rouge_l_f1 / double(n);
    m.rouge_l_recall += im.rouge_l_recall / double(n);
    m.per_item.push_back(im);
  }
  double total = std::max<double>(double(m.answer_tokens), 1.0);
  m.accuracy = correct_sum / total;
  m.mean_nll = nll_sum / total;
  m.perplexity = std::exp(m.mean_nll);
  return m;
}

}  // namespace lethe
