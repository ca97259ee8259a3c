#include "eval/evaluate.h"

#include <cmath>

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

SplitMetrics evaluate_split(CausalLM& model, const Tokenizer& tok, ChatTemplate tmpl, const std::string& name,
                            const std::vector<Example>& examples, const EvalOptions& opt, int64_t max_len) {
  torch::NoGradGuard ng;
  model->eval();
  auto items = tokenize_items(tok, tmpl, examples, max_len);
  const int64_t pad = pad_token_id(tok, tmpl);
  SplitMetrics m;
  m.name = name;
  m.items = int64_t(items.size());
  double nll_sum = 0, correct_sum = 0;
  for (int64_t start = 0; start < m.items; start += opt.batch_size) {
    std::vector<int64_t> idx;
    for (int64_t i = start; i < std::min(m.items, start + opt.batch_size); ++i) idx.push_back(i);
    Batch b = collate(items, idx, pad);
    TokenLoss tl = token_loss(model->forward(b.input_ids, b.attention_mask), b.labels);
    auto n_tok = tl.mask.sum(1), nll = tl.nll.sum(1), correct = tl.correct.sum(1);
    for (size_t k = 0; k < idx.size(); ++k) {
      ItemMetrics im;
      im.index = idx[k];
      im.answer_tokens = int64_t(n_tok[long(k)].item<float>());
      double n = std::max<double>(double(im.answer_tokens), 1.0);
      im.nll = nll[long(k)].item<double>() / n;
      im.accuracy = correct[long(k)].item<double>() / n;
      nll_sum += nll[long(k)].item<double>();
      correct_sum += correct[long(k)].item<double>();
      m.answer_tokens += im.answer_tokens;
      m.per_item.push_back(im);
    }
  }
  double n = std::max<double>(double(m.answer_tokens), 1.0);
  m.accuracy = correct_sum / n;
  m.mean_nll = nll_sum / n;
  m.perplexity = std::exp(m.mean_nll);
  if (opt.generate) {
    auto stops = stop_token_ids(model, tok, tmpl);
    for (auto& im : m.per_item) {
      const auto& it = items[size_t(im.index)];
      std::vector<int64_t> prompt(it.ids.begin(), it.ids.begin() + it.prompt_len);
      im.generation = tok.decode(greedy_generate(model, prompt, opt.max_new_tokens, stops), true);
      RougeL r = rouge_l(im.generation, examples[size_t(im.index)].response);
      im.rouge_l_f1 = r.f1;
      im.rouge_l_recall = r.recall;
      m.rouge_l_f1 += r.f1 / double(m.items);
      m.rouge_l_recall += r.recall / double(m.items);
    }
  }
  return m;
}

}  // namespace lethe
