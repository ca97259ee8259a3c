#include "checkpoints/model_io.h"

#include <sys/mman.h>

#include <filesystem>
#include <set>

#include "checkpoints/hdf5_checkpoint.h"
#include "checkpoints/safetensors.h"
#include "checkpoints/tensor_reader.h"
#include "common/error.h"
#include "common/fs.h"

namespace fs = std::filesystem;

namespace lethe {

std::vector<std::string> side_files(const std::string& dir) {
  std::vector<std::string> out;
  for (auto* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                  "tokenizer.model"})
    if (fs::exists(fs::path(dir) / f)) out.push_back((fs::path(dir) / f).string());
  return out;
}

namespace {
// The parameters' fresh storage is faulted in 4 KiB at a time as the checkpoint is read into
// it (a third of a warm load); asking for transparent huge pages on the 2 MiB-aligned part of
// every large tensor cuts the faults 512-fold where the kernel allows (THP "madvise" or
// "always"; elsewhere the advice is ignored). Nothing is allocated beyond the tensor.
void advise_huge_pages(const torch::Tensor& t) {
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  if (!t.is_cpu() || t.nbytes() < 2 * kHuge) return;
  const auto p = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t begin = (p + kHuge - 1) & ~(kHuge - 1), end = (p + t.nbytes()) & ~(kHuge - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

// A checkpoint directory as load_weights reads it: names and shapes from the headers, each
// tensor read when asked (non-floating-point dtypes refused from the header, NaN/Inf on read).
class CheckpointWeights : public WeightSource {
 public:
  explicit CheckpointWeights(const std::string& dir) : reader_(dir) {}
  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    for (auto& [name, info] : reader_.tensors()) {
      if (!torch::isFloatingType(info.dtype))
        throw CorruptError(reader_.dir() + ": tensor '" + name + "' is " + safetensors_dtype_name(info.dtype) +
                           "; model weights are floating point");
      out.push_back(name);
    }
    return out;
  }
  std::vector<int64_t> shape(const std::string& name) const override { return reader_.tensors().at(name).shape; }
  torch::Tensor read(const std::string& name) const override { return reader_.read(name); }
  void read_into(const std::string& name, torch::Tensor dst) const override { reader_.read_into(name, dst); }
  const TensorReader& reader() const { return reader_; }

 private:
  TensorReader reader_;
};

ModelConfig read_model_config(const TensorReader& reader) {
  if (reader.format() == CheckpointFormat::kHf) {
    std::string cfg = (fs::path(reader.dir()) / "config.json").string();
    return ModelConfig::from_json(read_json_file(cfg), cfg);
  }
  if (reader.tensors().empty()) throw CorruptError(reader.dir() + ": the checkpoint holds no tensors");
  const std::string h5 = reader.tensors().begin()->second.file;  // every shard carries the attributes
  auto attrs = read_h5_attributes(h5);
  if (!attrs.count("model_config")) throw CorruptError(h5 + ": missing attribute 'model_config'");
  return ModelConfig::from_json(attrs["model_config"], h5 + " model_config");
}
}  // namespace

namespace {
CausalLM load_model_impl(const std::string& dir, const std::string& dtype, DeferredWeights* deferred) {
  auto weights = std::make_shared<const CheckpointWeights>(dir);
  const ModelConfig config = read_model_config(weights->reader());
  auto st = parse_dtype(dtype.empty() ? config.torch_dtype : dtype, "--dtype");
  CausalLM model(config);
  if (deferred) {
    deferred->shapes.clear();
    torch::NoGradGuard ng;
    for (auto& [name, w] : model->named_weights()) {
      if (CausalLMImpl::parameter_block(name).layer < 0) continue;
      deferred->shapes[name] = w.sizes().vec();
      w.set_data(torch::empty({0}, w.options().dtype(st)));  // never allocated whole
    }
    deferred->read_range = [weights](const std::string& name, int64_t first, int64_t count) {
      return weights->reader().read_range(name, first, count);
    };
    deferred->read_elements = [weights](const std::string& name, const std::vector<int64_t>& index) {
      return weights->reader().read_elements(name, index);
    };
  }
  model->to(st);
  for (auto& [name, w] : model->named_weights()) advise_huge_pages(w);
  model->load_weights(*weights, dir, deferred);
  model->config.torch_dtype = dtype.empty() ? config.torch_dtype : dtype;
  return model;
}
}  // namespace

CausalLM load_model(const std::string& dir, const std::string& dtype) { return load_model_impl(dir, dtype, nullptr); }

CausalLM load_model_without_layers(const std::string& dir, const std::string& dtype, DeferredWeights& deferred) {
  return load_model_impl(dir, dtype, &deferred);
}

std::string tokenizer_path(const std::string& dir) {
  fs::path p = fs::path(dir) / "tokenizer.json";
  if (!fs::exists(p)) throw InputError("model '" + dir + "' has no tokenizer.json");
  return p.string();
}

json read_run_config(const std::string& dir) {
  const fs::path hf = fs::path(dir) / "lethe_run_config.json";
  if (fs::exists(hf)) return read_json_file(hf.string());
  TensorReader reader(dir);
  if (reader.tensors().empty()) return json::object();
  const auto& first = *reader.tensors().begin();
  std::map<std::string, json> attrs;
  read_h5_tensors(first.second.file, {first.first}, &attrs);
  return attrs.count("run_config") ? attrs["run_config"] : json::object();
}

void save_model(CausalLM& model, const std::string& dir, CheckpointFormat format, const json& run_config,
                const std::string& source_dir, uint64_t max_shard_bytes,
                const std::map<std::string, std::string>& extra_files) {
  NamedTensors weights;
  for (auto& [name, t] : model->named_weights()) weights.emplace_back(name, t.detach());
  std::vector<std::string> copies;
  if (!source_dir.empty()) copies = side_files(source_dir);
  const json config = model->config.to_json();
  auto writer = make_checkpoint_writer(format);
  write_dir_atomically(
      dir,
      [&](const std::string& tmp) {
        write_model_files(*writer, tmp, weights, config, run_config, copies, max_shard_bytes);
        for (auto& [name, text] : extra_files) write_file_atomic((fs::path(tmp) / name).string(), text);
      },
      "output directory");
}

}  // namespace lethe
