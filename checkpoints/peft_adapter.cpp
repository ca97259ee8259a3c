#include "checkpoints/peft_adapter.h"

#include <cmath>
#include <filesystem>
#include <set>

#include "checkpoints/safetensors.h"
#include "common/error.h"
#include "common/fs.h"

namespace lethe {

namespace fs = std::filesystem;

namespace {

const std::string kPrefix = "base_model.model.";

std::map<std::string, LinearImpl*> linear_modules(const CausalLM& model) {
  auto layers = model->linear_layers();
  return {layers.begin(), layers.end()};
}

// A field that must be absent, null, false, empty or equal to `allowed`.
void refuse_unless_default(const json& cfg, const std::string& key, const json& allowed, const std::string& what) {
  if (!cfg.contains(key) || cfg[key].is_null()) return;
  const json& v = cfg[key];
  bool is_default = v == allowed || (v.is_boolean() && !v.get<bool>() && allowed.is_null()) ||
                    ((v.is_object() || v.is_array()) && v.empty());
  if (!is_default) throw InputError(what + ": '" + key + "' = " + v.dump() + " is not supported by lethe's LoRA");
}

}  // namespace

PeftAdapterInfo load_peft_adapter(CausalLM& model, const std::string& dir) {
  const std::string cfg_path = dir + "/adapter_config.json";
  const std::string weights_path = dir + "/adapter_model.safetensors";
  if (!path_exists(cfg_path)) throw InputError(dir + ": no adapter_config.json (not a peft adapter directory)");
  if (!path_exists(weights_path))
    throw InputError(dir + ": no adapter_model.safetensors (lethe reads peft adapters in safetensors only)");
  json cfg = read_json_file(cfg_path);
  if (!cfg.is_object()) throw InputError(cfg_path + ": expected a JSON object");
  std::string type = json_get_or<std::string>(cfg, "peft_type", "LORA", cfg_path);
  if (type != "LORA") throw InputError(cfg_path + ": peft_type '" + type + "' is not supported (LORA)");
  PeftAdapterInfo info;
  info.rank = json_get<int64_t>(cfg, "r", cfg_path);
  info.alpha = json_get<double>(cfg, "lora_alpha", cfg_path);
  info.dropout = json_get_or<double>(cfg, "lora_dropout", 0.0, cfg_path);
  info.rslora = json_get_or<bool>(cfg, "use_rslora", false, cfg_path);
  if (info.rank <= 0 || !std::isfinite(info.alpha) || info.dropout < 0 || info.dropout >= 1)
    throw InputError(cfg_path + ": 'r' must be positive, 'lora_alpha' finite and 'lora_dropout' in [0, 1)");
  refuse_unless_default(cfg, "use_dora", nullptr, cfg_path);
  refuse_unless_default(cfg, "fan_in_fan_out", nullptr, cfg_path);
  refuse_unless_default(cfg, "bias", "none", cfg_path);
  refuse_unless_default(cfg, "modules_to_save", nullptr, cfg_path);
  refuse_unless_default(cfg, "rank_pattern", nullptr, cfg_path);
  refuse_unless_default(cfg, "alpha_pattern", nullptr, cfg_path);

  TensorMap weights = read_safetensors(weights_path);
  auto modules = linear_modules(model);
  std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> pairs;  // module -> (A, B)
  for (auto& [key, t] : weights) {
    auto fail = [&](const std::string& why) { throw InputError(weights_path + ": tensor '" + key + "' " + why); };
    if (key.rfind(kPrefix, 0) != 0) fail("does not start with '" + kPrefix + "'");
    std::string rest = key.substr(kPrefix.size());
    bool is_a = rest.size() > 14 && rest.compare(rest.size() - 14, 14, ".lora_A.weight") == 0;
    bool is_b = rest.size() > 14 && rest.compare(rest.size() - 14, 14, ".lora_B.weight") == 0;
    if (!is_a && !is_b) fail("is not a LoRA matrix (lora_A.weight / lora_B.weight)");
    std::string module = rest.substr(0, rest.size() - 14);
    if (!modules.count(module)) fail("names no linear module of this " + model->config.model_type + " model");
    if (t.dim() != 2) fail("is not a matrix");
    if (!t.is_floating_point()) fail("is not a floating-point tensor");
    (is_a ? pairs[module].first : pairs[module].second) = t;
  }
  if (pairs.empty()) throw InputError(weights_path + ": holds no LoRA matrices");

  for (auto& p : model->parameters()) p.set_requires_grad(false);
  LoraOptions opt;
  opt.rank = info.rank;
  opt.alpha = info.alpha;
  opt.dropout = info.dropout;
  auto gen = at::detail::createCPUGenerator(0);  // the weights are overwritten below
  std::set<std::string> leaves;
  for (auto& [module, ab] : pairs) {
    auto& [A, B] = ab;
    LinearImpl* lin = modules.at(module);
    if (!A.defined() || !B.defined())
      throw InputError(weights_path + ": module '" + module + "' has only one of lora_A and lora_B");
    if (A.size(0) != info.rank || A.size(1) != lin->in_features || B.size(0) != lin->out_features ||
        B.size(1) != info.rank) {
      std::ostringstream ss;
      ss << weights_path << ": module '" << module << "' has lora_A " << A.sizes() << " and lora_B " << B.sizes()
         << "; r " << info.rank << " on a " << lin->out_features << "x" << lin->in_features << " layer needs ["
         << info.rank << ", " << lin->in_features << "] and [" << lin->out_features << ", " << info.rank << "]";
      throw InputError(ss.str());
    }
    lin->add_lora(opt, gen);
    if (info.rslora) lin->lora_scale = info.alpha / std::sqrt(double(info.rank));
    torch::NoGradGuard ng;
    lin->lora_A->weight.copy_(A);
    lin->lora_B->weight.copy_(B);
    leaves.insert(module.substr(module.rfind('.') + 1));
  }
  info.target_modules.assign(leaves.begin(), leaves.end());
  info.adapted_modules = int64_t(pairs.size());
  return info;
}

void save_peft_adapter(const CausalLM& model, const std::string& dir, const std::string& base_model,
                       const std::map<std::string, torch::Tensor>* values) {
  auto value = [&](const std::string& name, const torch::Tensor& own) {
    if (!values) return own.detach().cpu().contiguous();
    auto it = values->find(name);
    if (it == values->end()) throw InternalError("save_peft_adapter: no value for " + name);
    return it->second.detach().cpu().contiguous();
  };
  NamedTensors tensors;
  std::set<std::string> leaves;
  int64_t rank = 0;
  double scale = 0, dropout = 0;
  for (auto& [name, lin] : linear_modules(model)) {
    if (!lin->has_lora()) continue;
    int64_t r = lin->lora_A->options.out_features();
    if (rank == 0) rank = r, scale = lin->lora_scale, dropout = lin->lora_dropout;
    if (r != rank || lin->lora_scale != scale)
      throw InputError("the model's adapters differ in rank or scale; peft's layout needs one r and lora_alpha");
    tensors.emplace_back(kPrefix + name + ".lora_A.weight", value(name + ".lora_A.weight", lin->lora_A->weight));
    tensors.emplace_back(kPrefix + name + ".lora_B.weight", value(name + ".lora_B.weight", lin->lora_B->weight));
    leaves.insert(name.substr(name.rfind('.') + 1));
  }
  if (tensors.empty()) throw InputError("the model has no LoRA adapters to save (train with --lora-rank)");
  json cfg = {{"peft_type", "LORA"},
              {"task_type", "CAUSAL_LM"},
              {"base_model_name_or_path", base_model},
              {"r", rank},
              {"lora_alpha", scale * double(rank)},
              {"lora_dropout", dropout},
              {"target_modules", std::vector<std::string>(leaves.begin(), leaves.end())},
              {"bias", "none"},
              {"fan_in_fan_out", false},
              {"use_rslora", false},
              {"use_dora", false},
              {"inference_mode", true},
              {"modules_to_save", nullptr},
              {"init_lora_weights", true}};
  // common/fs.h's protocol: `dir` is either whole (with its marker) or absent.
  write_dir_atomically(
      dir,
      [&](const std::string& tmp) {
        write_safetensors(tmp + "/adapter_model.safetensors", tensors, {{"format", "pt"}});
        write_json_file(tmp + "/adapter_config.json", cfg);
      },
      "adapter");
}

}  // namespace lethe
