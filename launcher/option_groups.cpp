#include "launcher/option_groups.h"

#include <memory>

#include "common/error.h"
#include "common/fs.h"
#include "common/text.h"
#include "data/chat_template.h"

namespace lethe {

void bind_runtime(OptionSet& o, RuntimeOptions& r, bool distributed, bool uses_device) {
  o.group("runtime", "Runtime");
  o.add("threads", &r.threads, "LibTorch intra-op threads per rank (0: cores / local ranks)",
        Check<int>([](const int& v) { return v >= 0 && v <= 1024 ? "" : "must be in [0, 1024]"; }));
  o.add("log-level", &r.log_level, "trace, debug, info, warn, error",
        one_of({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  o.add("log-file", &r.log_file, "also log to this file (per rank: .rankN appended)");
  o.add("seed", &r.seed, "random seed");
  if (distributed) {
    o.add("first-step-timeout", &r.first_step_timeout_s, "collective deadline (s) until the first step is done",
          positive<double>());
    o.add("timeout", &r.timeout_s, "collective deadline (s) afterwards", positive<double>());
    o.add("join-timeout", &r.join_timeout_s,
          "deadline (s) for rank groups that finished their own work (SPUNGE subsets, sweep configurations) to "
          "wait for the slowest group",
          positive<double>());
  }
  if (uses_device)
    o.add("device", &r.device, "auto, cpu or cuda (rank -> GPU local rank)", one_of({"auto", "cpu", "cuda"}));
}

void bind_dtype(OptionSet& o, std::string& dtype) {
  o.add("dtype", &dtype, "float32 or bfloat16 (default: the model's torch_dtype)", one_of({"", "float32", "bfloat16"}));
}

void bind_model(OptionSet& o, ModelLoadOptions& m, const std::string& flag, bool with_adapter) {
  o.group("model", "Model");
  o.require(flag, &m.dir, "model directory (HF or native checkpoint)");
  bind_dtype(o, m.dtype);
  if (with_adapter)
    o.add("adapter", &m.adapter,
          "a peft LoRA adapter (adapter_config.json + adapter_model.safetensors) on --model: trained further by "
          "finetune/unlearn, merged for eval");
}

void bind_lora(OptionSet& o, LoraOptions& l, const RuntimeOptions& rt) {
  o.group("lora", "LoRA");
  o.add("lora-rank", &l.rank, "LoRA rank (0: train all weights)", non_negative<int64_t>());
  o.add("lora-alpha", &l.alpha, "LoRA alpha", finite());
  o.add("lora-dropout", &l.dropout, "LoRA dropout", in_range(0, 1));
  o.add("lora-target", &l.target_modules,
        "LoRA target modules by HF name (default: every linear projection of the decoder layers)");
  o.then([&l, &rt](const po::variables_map&, std::vector<std::string>&) { l.seed = rt.seed; });
}

void bind_data(OptionSet& o, DataOptions& d, bool with_text) {
  o.group("data", "Data");
  o.add("data-format", &d.format, "auto, tofu, knowundo or jsonl", one_of({"auto", "tofu", "knowundo", "jsonl"}));
  if (!with_text) return;
  o.add("template", &d.chat_template,
        "chat template: llama2, llama3, chatml, qwen3, gemma, plain, or auto (from the model's tokenizer_config.json)",
        Check<std::string>([](const std::string& v) -> std::string {
          if (v == "auto") return "";
          try {
            parse_chat_template(v);
          } catch (const InputError& e) {
            return std::string(": ") + e.what();
          }
          return "";
        }));
  o.add("system-prompt", &d.system_prompt, "system prompt opening every conversation");
  o.add("max-len", &d.max_len, "longest tokenized item (the prompt is cut first)", Check<int64_t>([](const int64_t& v) {
          return v >= 2 ? "" : "must be at least 2 (a prompt and an answer token)";
        }));
}

void bind_source(OptionSet& o, DataSource& s, const std::string& name, const std::string& help, bool required) {
  o.group("data", "Data");
  o.add(name, &s.path, help, {}, required);
  o.add(name + "-filter", &s.filters, "keep only records whose attribute matches (key=value; repeatable) in --" + name);
}

void bind_activation_checkpointing(OptionSet& o, TrainOptions& t) {
  auto recompute = std::make_shared<std::string>(activation_checkpointing_name(t.activation_checkpointing));
  o.add("activation-checkpointing", recompute.get(),
        "recompute decoder layers in backward instead of keeping their activations: none, selective (every "
        "second layer) or full (every layer); ZeRO 3 always recomputes",
        one_of({"none", "selective", "full"}));
  o.then([&t, recompute](const po::variables_map&, std::vector<std::string>&) {
    t.activation_checkpointing = parse_activation_checkpointing(*recompute);
  });
}

void bind_zero3_overlap(OptionSet& o, TrainOptions& t) {
  o.add("zero3-overlap", &t.zero3_overlap,
        "ZeRO 3: start each layer's all-gather while the layer before it runs (a second layer whole at a time) and "
        "reduce-scatter each layer's gradient while the next one's backward runs: auto (on where collectives "
        "overlap compute: NCCL), on or off; the result is the same",
        one_of({"auto", "on", "off"}));
}

void bind_train(OptionSet& o, TrainOptions& t, const RuntimeOptions& rt) {
  o.group("train", "Training");
  o.add("steps", &t.steps, "optimizer steps", positive<int64_t>());
  o.add("batch-size", &t.batch_size, "global items per micro-batch (divisible by the ranks)", positive<int64_t>());
  o.add("grad-accum", &t.grad_accum, "micro-batches per optimizer step", positive<int64_t>());
  o.add("lr", &t.schedule.lr, "peak learning rate", positive<double>());
  o.add("schedule", &t.schedule.kind, "cosine, linear or constant after warmup",
        one_of({"cosine", "linear", "constant"}));
  o.add("warmup-steps", &t.schedule.warmup_steps, "linear warmup steps", non_negative<int64_t>());
  o.add("min-lr-ratio", &t.schedule.min_lr_ratio, "final lr as a fraction of --lr", in_range(0, 1));
  o.add("optimizer", &t.optimizer.name, "adamw or sgd", one_of({"adamw", "sgd"}));
  o.add("weight-decay", &t.optimizer.weight_decay, "decoupled weight decay", in_range(0, 1e9));
  o.add("momentum", &t.optimizer.momentum, "SGD momentum", in_range(0, 1));
  o.add("max-grad-norm", &t.max_grad_norm, "global gradient-norm clipping (0: off)", in_range(0, 1e30));
  o.add("log-every", &t.log_every, "progress line every N steps", positive<int64_t>());
  o.add("eval-every", &t.eval_every, "evaluate every N steps (0: at the end only)", non_negative<int64_t>());
  o.add("zero-stage", &t.zero_stage,
        "ZeRO stage across ranks: 0 replicated, 1 optimizer state sharded, 2 + gradients sharded, 3 + parameters "
        "sharded (gathered per layer)",
        Check<int>([](const int& v) { return v >= 0 && v <= 3 ? "" : "is not supported (0, 1, 2, 3)"; }));
  bind_activation_checkpointing(o, t);
  bind_zero3_overlap(o, t);
  o.add("checkpoint-every", &t.checkpoint_every,
        "write a resumable checkpoint every N steps (0: only on SIGTERM/SIGUSR1)", non_negative<int64_t>());
  o.add("checkpoint-dir", &t.checkpoint_dir, "resumable checkpoints (default: <out>.ckpt)");
  o.add("resume", &t.resume, "continue from the newest complete checkpoint in --checkpoint-dir");
  o.then([&t, &rt](const po::variables_map&, std::vector<std::string>&) { t.seed = rt.seed; });
}

void bind_out_dir(OptionSet& o, std::string& out, const std::string& help, bool required) {
  o.group("output", "Output");
  o.add("out", &out, help, {}, required);
  o.then([&out](const po::variables_map&, std::vector<std::string>&) { out = without_trailing_slash(out); });
}

void bind_format(OptionSet& o, CheckpointFormat& format, const std::string& flag, const std::string& help) {
  auto name = std::make_shared<std::string>(format_name(format));
  o.add(flag, name.get(), help + ": native or hf", one_of(checkpoint_format_names()));
  o.then([&format, name, flag](const po::variables_map&, std::vector<std::string>& errors) {
    try {
      format = parse_checkpoint_format(*name, "--" + flag);
    } catch (const InputError& e) {
      errors.push_back(e.what());
    }
  });
}

void bind_merge_inputs(OptionSet& o, std::string& base, std::vector<std::string>& models) {
  o.require("base", &base, "the base model theta_0 (HF or native checkpoint)");
  o.add("models", &models, "the models to merge (two or more directories)",
        Check<std::vector<std::string>>([](const std::vector<std::string>& v) {
          return v.size() >= 2 ? "" : ": give two or more model directories to merge";
        }),
        true);
}

void bind_output(OptionSet& o, OutputOptions& out, const std::string& format_flag, bool with_adapter_out) {
  bind_out_dir(o, out.out, "output directory (must not exist)");
  auto shard = std::make_shared<std::string>("5GB");
  bind_format(o, out.format, format_flag, "output checkpoint format");
  o.add("max-shard-size", shard.get(),
        "largest output shard (bytes, or with KB/MB/GB); also bounds the memory of "
        "shard assembly");
  if (with_adapter_out)
    o.add("adapter-out", &out.adapter_out,
          "also write the trained LoRA adapter in peft's layout to this directory (with --lora-rank or --adapter)");
  o.then([&out, shard](const po::variables_map&, std::vector<std::string>& errors) {
    try {
      out.max_shard_bytes = parse_byte_size(*shard, "--max-shard-size");
    } catch (const InputError& e) {
      errors.push_back(e.what());
    }
  });
}

void bind_eval(OptionSet& o, EvalOptions& e) {
  o.group("eval", "Evaluation");
  auto no_generate = std::make_shared<bool>(!e.generate);
  o.add("eval-batch-size", &e.batch_size, "items per evaluation forward pass", positive<int64_t>());
  o.add("no-generate", no_generate.get(), "evaluation without greedy generation (no ROUGE-L)");
  o.add("max-new-tokens", &e.max_new_tokens, "evaluation generation length limit", positive<int64_t>());
  o.then([&e, no_generate](const po::variables_map&, std::vector<std::string>&) { e.generate = !*no_generate; });
}

void bind_report(OptionSet& o, ReportOptions& r) {
  o.group("report", "Report");
  o.add("title", &r.title, "report title (default: the model path)");
  o.add("per-item", &r.per_item, "also write per_item.jsonl (NLL, accuracy, generation)");
  o.add("tofu-reference", &r.tofu_reference,
        "report.json of a model trained on the retain set only, evaluated on the same --forget data: adds TOFU "
        "forget quality (KS-test p-value between the two models' forget truth ratios)");
}

void bind_eval_zero_stage(OptionSet& o, int& zero_stage, const std::string& more) {
  o.add("zero-stage", &zero_stage,
        "0: every rank loads the model whole; 3: every rank reads and keeps only its shard of the decoder layers, "
        "gathered one layer at a time in each forward (for models that do not fit one device; the ranks still share "
        "the items" +
            more + ")",
        Check<int>([](const int& v) { return v == 0 || v == 3 ? "" : "is not supported (0 or 3)"; }));
}

void bind_merge(OptionSet& o, MergeOptions& m) {
  o.group("merge", "Merge");
  std::string rules;
  for (auto& r : merge_rule_registry()) rules += "\n  " + r.name + ": " + r.summary;
  auto weights = std::make_shared<std::string>();
  o.add("merge", &m.method, "merge rule:" + rules);
  o.add("merge.weights", weights.get(), "comma-separated weight per model (default: 1 each)");
  o.add("merge.density", &m.density, "ties: share of each delta kept; dare: keep probability");
  o.add("merge.lambda", &m.lambda, "scale of the merged delta (not linear)");
  o.add("merge.seed", &m.seed, "dare: seed of the drop masks");
  o.add("merge.rescale", &m.rescale,
        "dare: rescale kept entries by 1/density (inverse), to the delta's L1 norm (l1, mergekit's rescale) or not "
        "(none)");
  o.add(
      "merge.trim", &m.trim,
      "ties: keep entries >= the k-th magnitude (threshold) or exactly the top k, lower index first (topk, mergekit)");
  o.add("merge.normalize", &m.normalize,
        "divide the merged delta by the weights: auto (linear, ties, dare_ties), true or false (mergekit's normalize)");
  o.then([&m, weights](const po::variables_map&, std::vector<std::string>& errors) {
    m.weights.clear();
    for (auto& item : split_commas(*weights)) {
      try {
        size_t used = 0;
        m.weights.push_back(std::stod(item, &used));
        if (used != item.size()) throw std::invalid_argument(item);
      } catch (const std::exception&) {
        errors.push_back("--merge.weights: '" + item + "' is not a number");
      }
    }
    std::string bad = validate(m);
    if (!bad.empty()) errors.push_back(bad);
  });
}

void bind_split(OptionSet& o, SplitOptions& s) {
  o.group("split", "SPUNGE split");
  o.add("split-by", &s.by, "forget-record attribute whose values define the subsets (e.g. domain, kind)");
  o.add("split-block", &s.block,
        "instead of an attribute: consecutive blocks of N records (TOFU forget files: 20 rows per author)",
        non_negative<int64_t>());
  o.add("split-map", &s.map, "VALUE=SUBSET,... or @file.json: gather attribute values into named subsets");
  o.rule([&s] { return validate(s); });
}

void bind_groups(OptionSet& o, GroupOptions& g) {
  o.group("groups", "SPUNGE groups");
  auto sizes = std::make_shared<std::string>();
  o.add("group-sizes", sizes.get(),
        "ranks per group, comma-separated (default: proportional to subset sizes, one group per subset)");
  o.add("groups", &g.groups,
        "number of equal rank groups when subsets outnumber them (subsets queue, round-robin; default: one per subset)",
        non_negative<int>());
  o.then([&g, sizes](const po::variables_map&, std::vector<std::string>& errors) {
    try {
      g.sizes = parse_group_sizes(*sizes);
    } catch (const InputError& e) {
      errors.push_back(e.what());
    }
  });
}

void bind_named_splits(OptionSet& o, std::vector<std::string>& specs, const std::string& flag) {
  o.group("eval", "Evaluation");
  o.add(flag, &specs, "further evaluation splits NAME=PATH (repeatable)");
}

void bind_method(OptionSet& o, MethodChoice& m) {
  std::string methods;
  for (auto& spec : objective_registry()) methods += "\n  " + spec.name + ": " + spec.summary;
  o.group("", "Method");
  o.add("method", &m.name, "unlearning method:" + methods);
  // Every method's options, typed by their defaults; storage lives as long as the option set.
  struct Values {
    std::vector<std::unique_ptr<double>> d;
    std::vector<std::unique_ptr<int64_t>> i;
    std::vector<std::unique_ptr<std::string>> s;
    std::vector<std::unique_ptr<bool>> b;
    std::map<std::string, std::function<json()>> get;
  };
  auto values = std::make_shared<Values>();
  for (auto& spec : objective_registry()) {
    o.group("", spec.name + " options");
    for (auto& d : spec.options) {
      const json& v = d.default_value;
      if (v.is_boolean()) {
        values->b.push_back(std::make_unique<bool>(v.get<bool>()));
        bool* p = values->b.back().get();
        o.add(d.name, p, d.help);
        values->get[d.name] = [p] { return json(*p); };
      } else if (v.is_number_integer()) {
        values->i.push_back(std::make_unique<int64_t>(v.get<int64_t>()));
        int64_t* p = values->i.back().get();
        o.add(d.name, p, d.help);
        values->get[d.name] = [p] { return json(*p); };
      } else if (v.is_number()) {
        values->d.push_back(std::make_unique<double>(v.get<double>()));
        double* p = values->d.back().get();
        o.add(d.name, p, d.help);
        values->get[d.name] = [p] { return json(*p); };
      } else {
        values->s.push_back(std::make_unique<std::string>(v.get<std::string>()));
        std::string* p = values->s.back().get();
        o.add(d.name, p, d.help);
        values->get[d.name] = [p] { return json(*p); };
      }
    }
  }
  o.group("method", "Method");
  o.then([&m, values](const po::variables_map&, std::vector<std::string>& errors) {
    try {
      m.spec = &find_objective(m.name);
      json given = json::object();
      for (auto& d : m.spec->options) given[d.name] = values->get.at(d.name)();
      m.options = MethodOptions(m.spec->options, given);
      m.uses_retain = m.spec->make(m.options)->uses_retain();  // the method validates its options here
    } catch (const InputError& e) {
      errors.push_back(e.what());
      m.spec = nullptr;
    }
  });
  o.report([&m](json& j) {
    j["method"] = m.name;
    for (auto& [k, v] : m.options.values().items()) j[k] = v;
  });
}

void require_retain_if_used(OptionSet& o, const MethodChoice& m, const DataSource& retain) {
  o.rule([&m, &retain] {
    return m.spec && m.uses_retain && !retain.given() ? "--method " + m.name + " needs --retain data" : "";
  });
}

}  // namespace lethe
