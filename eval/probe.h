// The robustness probe (`lethe probe`): does the forgetting survive what a user of the model may
// do to it? The model is evaluated as it is and after each probe, with the same metrics as
// `lethe eval`:
//   quantize  its decoder layers' weights rounded to int8, NF4 or FP4 (model/quantize.h);
//   prompts   the forget questions paraphrased (TOFU's paraphrased_question) and the answer's
//             turn started with "Sure, here is the answer:";
//   logit lens  the answer's probability read at every decoder layer (eval/logit_lens.h);
//   relearn   finetuned on part of the forget set, evaluated on the rest (with a Relearner).
// One table (probe.md, probe.json) and one plot (probe.svg: the logit lens).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "eval/report_writer.h"

namespace lethe {

struct ProbeOptions {
  std::vector<std::string> quantize = {"int8", "nf4", "fp4"};  // empty: none
  int64_t quant_block = 64;                                    // NF4 / FP4 block size
  std::vector<std::string> prompts = {"paraphrase", "prefix"};
  std::string prefix = "Sure, here is the answer:";
  bool logit_lens = true;
  // Relearning: the first relearn_share of the forget items are learnt again (by the caller's
  // Relearner), the rest evaluated before and after.
  double relearn_share = 0.5;
  // A retain-only model (same tokenizer) relearnt the same way: open-unlearning's relearning
  // ratio R = min(delta_reference / delta_probed, 1) per forget metric (eval/probe.h).
  std::string relearn_reference;
};

// InputError naming the option for an unknown quantization (--quantize) or prompt probe (--prompts).
void check_probe_options(const ProbeOptions& probe);

// Finetunes a fresh copy of `model` on `relearn` and returns it (the relearning probe; training
// lives above eval/, so the caller supplies it): whole, or at ZeRO 3 kept as the shards of the
// engine that trained it. Collective like run_probe.
using Relearner =
    std::function<std::unique_ptr<EvalModel>(const ModelLoadOptions& model, const std::vector<Example>& relearn)>;

// open-unlearning's relearning ratio of one metric: how much the probed model regains on relearning
// (delta_probed = after - before) against how much a retain-only model gains from the same
// relearning (delta_reference): min(delta_reference / delta_probed, 1), clamped at 0; 1 when the
// probed model regains nothing (delta_probed <= 0). 1: relearns no faster than a model that
// never saw the data.
double relearn_ratio(double delta_reference, double delta_probed);

struct ProbeResult {
  json table;            // [{probe, forget: {...}, retain: {...}, tofu: {...}}]
  json relearn_ratio;    // {accuracy, answer_prob, rouge_l_recall: R} on the forget split with a relearn
                         // reference; else null
  json logit_lens;       // {layers, forget: [...], retain: [...]}
  std::string markdown;  // the table, the logit lens and notes
  std::string svg;       // the logit lens plot
};

// Collective over comm. splits: "forget" first (required), "retain" optional. job.report.out, when
// set, receives probe.json, probe.md and probe.svg (a new directory, published whole). At
// job.zero_stage 3 no rank holds the model whole: each model (as it is, each quantization, the
// relearn reference) is read as shards (load_sharded_eval_model), a quantization rounds one
// gathered layer at a time and every rank keeps its shard of the result, and the relearner
// (made for ZeRO 3) keeps what it trained as shards.
ProbeResult run_probe(const EvalJob& job, const ProbeOptions& probe, const std::vector<NamedExamples>& splits,
                      const Tokenizer& tok, ChatTemplate tmpl, torch::Device device, Communicator& comm,
                      const Relearner& relearn = {});

}  // namespace lethe
