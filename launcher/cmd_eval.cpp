#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>

#include "checkpoints/model_io.h"
#include "checkpoints/peft_adapter.h"
#include "common/error.h"
#include "common/fs.h"
#include "data/dataset.h"
#include "eval/report.h"
#include "eval/tofu.h"
#include "dist/process_groups.h"
#include "launcher/options.h"

namespace fs = std::filesystem;

namespace lethe {

void add_eval_options(po::options_description& d) {
  d.add_options()("model", po::value<std::string>(), "model directory (HF or native checkpoint)");
  add_split_options(d, "forget", "unlearn-scope data (Unlearn Success = 100 - its answer-token accuracy)");
  add_split_options(d, "retain", "retention-scope data (Retention Success = its answer-token accuracy)");
  d.add_options()("split", po::value<std::vector<std::string>>()->multitoken(), "further splits as NAME=PATH (repeatable)")(
      "data-format", po::value<std::string>()->default_value("auto"), "auto, tofu, knowundo or jsonl")(
      "out", po::value<std::string>()->default_value(""), "report directory (report.json, report.md; must not exist)")(
      "per-item", po::bool_switch()->default_value(false), "also write per_item.jsonl (NLL, accuracy, generation)")(
      "no-generate", po::bool_switch()->default_value(false), "skip greedy generation (no ROUGE-L)")(
      "max-new-tokens", po::value<int64_t>()->default_value(64), "generation length limit")(
      "batch-size", po::value<int64_t>()->default_value(16), "items per forward pass")(
      "max-len", po::value<int64_t>()->default_value(256), "longest tokenized item")(
      "template", po::value<std::string>()->default_value("chatml"),
      "chat template: llama2, llama3, chatml, qwen3, gemma, plain, or auto (from the model's tokenizer_config.json)")(
      "system-prompt", po::value<std::string>()->default_value(""), "system prompt opening every conversation")(
      "adapter", po::value<std::string>()->default_value(""), "a peft LoRA adapter to apply to --model")(
      "dtype", po::value<std::string>()->default_value(""), "float32 or bfloat16 (default: the model's)")(
      "device", po::value<std::string>()->default_value("auto"), "auto, cpu or cuda (rank -> GPU local rank)")(
      "title", po::value<std::string>()->default_value(""), "report title (default: the model path)")(
      "tofu-reference", po::value<std::string>()->default_value(""),
      "report.json of a model trained on the retain set only, evaluated on the same --forget data: adds TOFU "
      "forget quality (KS-test p-value between the two models' forget truth ratios)");
}

int run_eval(const po::variables_map& vm, const json& cfg) {
  std::string model_dir = require_string(vm, "model");
  for (auto* n : {"batch-size", "max-len"}) require_positive(vm, n);
  std::vector<NamedSplit> splits;
  if (vm.count("forget")) splits.push_back({"forget", load_split(vm, "forget")});
  if (vm.count("retain")) splits.push_back({"retain", load_split(vm, "retain")});
  if (vm.count("split"))
    for (auto& s : vm["split"].as<std::vector<std::string>>())
      splits.push_back(named_split_option(s, "--split", vm["data-format"].as<std::string>()));
  if (splits.empty()) throw InputError("nothing to evaluate: give --forget, --retain or --split");
  // The reference's truth ratios are checked before the (slow) evaluation.
  std::vector<double> ref_ratios;
  const std::string ref_path = vm["tofu-reference"].as<std::string>();
  if (!ref_path.empty()) {
    json ref = read_json_file(ref_path);
    try {
      ref_ratios = ref.at("splits").at("forget").at("truth_ratios").get<std::vector<double>>();
    } catch (const std::exception&) {
      throw InputError("--tofu-reference '" + ref_path + "': no splits.forget.truth_ratios (evaluate the retain-only "
                       "model with --forget on a TOFU forget file first)");
    }
    if (!vm.count("forget")) throw InputError("--tofu-reference needs --forget (TOFU forget data)");
  }
  std::string out = vm["out"].as<std::string>();
  const torch::Device device = select_device(vm["device"].as<std::string>());
  auto comm = make_device_communicator(device);
  if (!out.empty() && fs::exists(out) && !fs::is_empty(out))  // checked before the (slow) evaluation
    throw InputError("--out '" + out + "' already exists and is not empty; refusing to overwrite it");
  CausalLM model = load_model(model_dir, vm["dtype"].as<std::string>());
  if (!vm["adapter"].as<std::string>().empty()) {  // evaluated merged: the same function as peft's
    load_peft_adapter(model, vm["adapter"].as<std::string>());
    model->merge_lora();
  }
  model->to(device);
  Tokenizer tok = Tokenizer::from_file(tokenizer_path(model_dir));
  ChatTemplate tmpl = read_chat_template(vm, model_dir);
  EvalOptions eo;
  eo.batch_size = vm["batch-size"].as<int64_t>();
  eo.generate = !vm["no-generate"].as<bool>();
  eo.max_new_tokens = vm["max-new-tokens"].as<int64_t>();
  Report r = evaluate_report(model, tok, tmpl, splits, eo, vm["max-len"].as<int64_t>(), comm.get());
  if (comm->rank() != 0) return 0;
  std::string title = vm["title"].as<std::string>().empty() ? model_dir : vm["title"].as<std::string>();
  std::string md = report_markdown(r.splits, r.has_scores ? &r.scores : nullptr, title);
  json tofu;
  if (!ref_ratios.empty()) {
    const SplitMetrics& f = r.splits.front();  // --forget is the first split
    if (!f.has_truth_ratio)
      throw InputError("--tofu-reference: the --forget data has no paraphrased_answer/perturbed_answer fields");
    std::vector<double> mine;
    for (auto& im : f.per_item) mine.push_back(im.truth_ratio);
    KsTest ks = ks_two_sample(mine, ref_ratios);
    tofu = {{"forget_quality", ks.p_value}, {"ks_statistic", ks.statistic}, {"reference", ref_path}};
    md += fmt::format("\nTOFU forget quality (KS p-value vs {}): **{:.3g}** (D = {:.3f})\n", ref_path, ks.p_value,
                      ks.statistic);
  }
  for (auto& m : r.splits)
    if (m.name == "retain") {  // TOFU model utility: harmonic mean of the retain metrics available
      std::vector<double> parts = {m.answer_prob};
      if (eo.generate) parts.push_back(m.rouge_l_recall);
      if (m.has_truth_ratio) parts.push_back(m.truth_ratio_retain);
      double inv = 0;
      for (double v : parts) inv += 1.0 / std::max(v, 1e-12);
      tofu["model_utility"] = double(parts.size()) / inv;
    }
  std::cout << md << std::flush;
  if (!out.empty()) {
    create_output_dir(out, "--out");
    json meta = {{"model", model_dir}, {"config", cfg}};
    json rj = report_json(r.splits, r.has_scores ? &r.scores : nullptr, meta);
    if (!tofu.is_null()) rj["tofu"] = tofu;
    write_json_file((fs::path(out) / "report.json").string(), rj);
    write_file_atomic((fs::path(out) / "report.md").string(), md);
    if (vm["per-item"].as<bool>()) {
      std::string lines;
      for (size_t i = 0; i < r.splits.size(); ++i) lines += per_item_jsonl(r.splits[i], splits[i].examples);
      write_file_atomic((fs::path(out) / "per_item.jsonl").string(), lines);
    }
    spdlog::info("eval: report written to {}", out);
  }
  return 0;
}

}  // namespace lethe
