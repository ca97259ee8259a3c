#include "launcher/options.h"

#include <iostream>

#include "common/error.h"
#include "common/fs.h"
#include "data/dataset.h"
#include "eval/report.h"
#include "unlearn/trainer.h"

namespace lethe {

const std::vector<Command>& commands() {
  static const std::vector<Command> cmds = {
      {"init", "write a randomly initialised model (HF directory) from an HF config.json", add_init_options, run_init},
      {"synth", "generate KnowUnDo-style privacy/copyright data, deterministic from a seed", add_synth_options, run_synth},
      {"tokenize", "tokenizer.json + UTF-8 lines on stdin -> one line of token ids per input line", add_tokenize_options,
       run_tokenize},
      {"finetune", "train a model on question/answer data (full or LoRA)", add_finetune_options, run_finetune, true},
      {"unlearn", "make a model forget a data set with an unlearning method", add_unlearn_options, run_unlearn, true},
      {"eval", "KnowUnDo metrics per split: JSON, Markdown and per-item JSONL", add_eval_options, run_eval, true},
      {"convert", "convert between an HF directory and a native checkpoint", add_convert_options, run_convert},
      {"merge", "merge checkpoints of one base model from disk (TIES, DARE, task arithmetic, linear)",
       add_merge_command_options, run_merge, true},
      {"spunge", "SPUNGE: split the forget set by an attribute, unlearn the subsets on rank groups in parallel, "
                 "merge, evaluate", add_spunge_options, run_spunge, true},
  };
  return cmds;
}

void add_runtime_options(po::options_description& d) {
  d.add_options()("help,h", "show this help")("config", po::value<std::string>(),
                                             "INI-style file of option = value lines; command-line options win")(
      "threads", po::value<int>()->default_value(0), "LibTorch intra-op threads per rank (0: cores / local ranks)")(
      "log-level", po::value<std::string>()->default_value("info"), "trace, debug, info, warn, error")(
      "log-file", po::value<std::string>()->default_value(""), "also log to this file (per rank: .rankN appended)")(
      "seed", po::value<uint64_t>()->default_value(1234), "random seed");
}

void add_train_options(po::options_description& d) {
  d.add_options()("steps", po::value<int64_t>()->default_value(100), "optimizer steps")(
      "batch-size", po::value<int64_t>()->default_value(8), "items per micro-batch")(
      "grad-accum", po::value<int64_t>()->default_value(1), "micro-batches per optimizer step")(
      "lr", po::value<double>()->default_value(5e-5), "peak learning rate")(
      "schedule", po::value<std::string>()->default_value("cosine"), "cosine, linear or constant after warmup")(
      "warmup-steps", po::value<int64_t>()->default_value(0), "linear warmup steps")(
      "min-lr-ratio", po::value<double>()->default_value(0.0), "final lr as a fraction of --lr")(
      "optimizer", po::value<std::string>()->default_value("adamw"), "adamw or sgd")(
      "weight-decay", po::value<double>()->default_value(0.0), "decoupled weight decay")(
      "momentum", po::value<double>()->default_value(0.0), "SGD momentum")(
      "max-grad-norm", po::value<double>()->default_value(1.0), "global gradient-norm clipping (0: off)")(
      "max-len", po::value<int64_t>()->default_value(256), "longest tokenized item (prompt is cut first)")(
      "template", po::value<std::string>()->default_value("chatml"),
      "chat template: llama2, llama3, chatml, qwen3, gemma, plain, or auto (from the model's tokenizer_config.json)")(
      "system-prompt", po::value<std::string>()->default_value(""), "system prompt opening every conversation")(
      "dtype", po::value<std::string>()->default_value(""), "float32 or bfloat16 (default: the model's torch_dtype)")(
      "lora-rank", po::value<int64_t>()->default_value(0), "LoRA rank (0: train all weights)")(
      "lora-alpha", po::value<double>()->default_value(16.0), "LoRA alpha")(
      "lora-dropout", po::value<double>()->default_value(0.1), "LoRA dropout")(
      "adapter", po::value<std::string>()->default_value(""),
      "start from this peft LoRA adapter (adapter_config.json + adapter_model.safetensors) on --model; it trains")(
      "adapter-out", po::value<std::string>()->default_value(""),
      "also write the trained LoRA adapter in peft's layout to this directory (with --lora-rank or --adapter)")(
      "lora-target", po::value<std::vector<std::string>>()->multitoken(),
      "LoRA target modules by HF name (default: every linear projection of the decoder layers)")(
      "log-every", po::value<int64_t>()->default_value(10), "progress line every N steps")(
      "eval-every", po::value<int64_t>()->default_value(0), "evaluate every N steps (0: at the end only)")(
      "zero-stage", po::value<int>()->default_value(0), "ZeRO stage across ranks: 0 replicated, 1 optimizer state "
      "sharded, 2 + gradients sharded, 3 + parameters sharded (gathered per layer)")(
      "checkpoint-every", po::value<int64_t>()->default_value(0), "write a resumable checkpoint every N steps (0: only on "
      "SIGTERM/SIGUSR1)")(
      "checkpoint-dir", po::value<std::string>()->default_value(""), "resumable checkpoints (default: <out>.ckpt)")(
      "resume", po::bool_switch()->default_value(false), "continue from the newest complete checkpoint in --checkpoint-dir")(
      "first-step-timeout", po::value<double>()->default_value(300.0), "collective deadline (s) until the first step is done")(
      "timeout", po::value<double>()->default_value(100.0), "collective deadline (s) afterwards")(
      "device", po::value<std::string>()->default_value("auto"), "auto, cpu or cuda (rank -> GPU local rank)")(
      "format", po::value<std::string>()->default_value("native"), "output checkpoint format: native or hf")(
      "out", po::value<std::string>(), "output checkpoint directory (must not exist)");
}

TrainOptions read_train_options(const po::variables_map& vm) {
  for (auto* n : {"steps", "batch-size", "grad-accum", "max-len"}) require_positive(vm, n);
  TrainOptions t;
  t.steps = vm["steps"].as<int64_t>();
  t.batch_size = vm["batch-size"].as<int64_t>();
  t.grad_accum = vm["grad-accum"].as<int64_t>();
  t.max_grad_norm = vm["max-grad-norm"].as<double>();
  t.seed = vm["seed"].as<uint64_t>();
  t.log_every = vm["log-every"].as<int64_t>();
  t.eval_every = vm["eval-every"].as<int64_t>();
  t.schedule.kind = vm["schedule"].as<std::string>();
  t.schedule.lr = vm["lr"].as<double>();
  t.schedule.warmup_steps = vm["warmup-steps"].as<int64_t>();
  t.schedule.min_lr_ratio = vm["min-lr-ratio"].as<double>();
  t.optimizer.name = vm["optimizer"].as<std::string>();
  t.optimizer.weight_decay = vm["weight-decay"].as<double>();
  t.optimizer.momentum = vm["momentum"].as<double>();
  t.zero_stage = vm["zero-stage"].as<int>();
  if (t.zero_stage < 0 || t.zero_stage > 3)
    throw InputError("--zero-stage " + std::to_string(t.zero_stage) + " is not supported (0, 1, 2, 3)");
  t.checkpoint_every = vm["checkpoint-every"].as<int64_t>();
  if (t.checkpoint_every < 0) throw InputError("--checkpoint-every must be >= 0");
  t.checkpoint_dir = vm["checkpoint-dir"].as<std::string>();
  if (t.checkpoint_dir.empty() && vm.count("out")) t.checkpoint_dir = vm["out"].as<std::string>() + ".ckpt";
  t.resume = vm["resume"].as<bool>();
  for (auto* n : {"first-step-timeout", "timeout"})
    if (!(vm[n].as<double>() > 0)) throw InputError(std::string("--") + n + " must be positive");
  if (!(t.schedule.lr > 0)) throw InputError("--lr must be positive");
  if (t.eval_every < 0) throw InputError("--eval-every must be >= 0");
  lr_at(t.schedule, 1, t.steps);  // validates --schedule
  if (t.optimizer.name != "adamw" && t.optimizer.name != "sgd")
    throw InputError("--optimizer: unknown optimizer '" + t.optimizer.name + "' (adamw, sgd)");
  return t;
}

void add_split_options(po::options_description& d, const std::string& name, const std::string& help) {
  d.add_options()(name.c_str(), po::value<std::string>(), help.c_str())(
      (name + "-filter").c_str(), po::value<std::vector<std::string>>()->multitoken(),
      ("keep only records whose attribute matches (key=value; repeatable) in --" + name).c_str());
}

std::vector<Example> load_split(const po::variables_map& vm, const std::string& name) {
  std::string path = require_string(vm, name);
  std::vector<std::string> filters;
  if (vm.count(name + "-filter")) filters = vm[name + "-filter"].as<std::vector<std::string>>();
  std::string format = vm.count("data-format") ? vm["data-format"].as<std::string>() : "auto";
  return filter_examples(read_examples(path, format), filters, "--" + name + " " + path);
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  for (size_t p = 0; !s.empty() && p <= s.size();) {
    size_t q = std::min(s.find(',', p), s.size());
    out.push_back(s.substr(p, q - p));
    p = q + 1;
  }
  return out;
}

NamedSplit named_split_option(const std::string& spec, const std::string& option, const std::string& data_format) {
  size_t eq = spec.find('=');
  if (eq == std::string::npos || eq == 0) throw InputError(option + " '" + spec + "' is not NAME=PATH");
  return {spec.substr(0, eq), read_examples(spec.substr(eq + 1), data_format)};
}

ChatTemplate read_chat_template(const po::variables_map& vm, const std::string& model_dir) {
  ChatTemplate t = resolve_chat_template(vm["template"].as<std::string>(), model_dir);
  t.system = vm["system-prompt"].as<std::string>();
  return t;
}

std::string require_string(const po::variables_map& vm, const std::string& name) {
  if (!vm.count(name) || vm[name].as<std::string>().empty()) throw InputError("missing required option --" + name);
  return vm[name].as<std::string>();
}

void require_positive(const po::variables_map& vm, const std::string& name) {
  if (vm[name].as<int64_t>() <= 0) throw InputError("--" + name + " must be positive");
}

json effective_config(const po::variables_map& vm) {
  json j = json::object();
  for (auto& [k, v] : vm) {
    if (k == "help") continue;
    const auto& a = v.value();
    if (auto* s = boost::any_cast<std::string>(&a)) j[k] = *s;
    else if (auto* i = boost::any_cast<int64_t>(&a)) j[k] = *i;
    else if (auto* u = boost::any_cast<uint64_t>(&a)) j[k] = *u;
    else if (auto* n = boost::any_cast<int>(&a)) j[k] = *n;
    else if (auto* d = boost::any_cast<double>(&a)) j[k] = *d;
    else if (auto* b = boost::any_cast<bool>(&a)) j[k] = *b;
    else if (auto* vs = boost::any_cast<std::vector<std::string>>(&a)) j[k] = *vs;
  }
  return j;
}

bool parse_command(const Command& cmd, int argc, const char* const* argv, po::variables_map& vm, json& effective) {
  po::options_description desc("lethe " + cmd.name + ": " + cmd.summary + "\n\nOptions");
  add_runtime_options(desc);
  cmd.add_options(desc);
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
    if (vm.count("help")) {
      std::cout << desc << "\n";
      return false;
    }
    if (vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      std::string text = read_text_file(path);
      std::istringstream in(text);
      po::store(po::parse_config_file(in, desc, false), vm);
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw InputError("lethe " + cmd.name + ": " + std::string(e.what()) + " (see lethe " + cmd.name + " --help)");
  }
  effective = effective_config(vm);
  effective["command"] = cmd.name;
  return true;
}

}  // namespace lethe
