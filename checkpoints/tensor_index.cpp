#include "checkpoints/tensor_index.h"

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "common/error.h"

namespace fs = std::filesystem;

namespace lethe {

size_t dtype_size(torch::ScalarType t) { return c10::elementSize(t); }

uint64_t tensor_bytes(const torch::Tensor& t) { return uint64_t(t.numel()) * dtype_size(t.scalar_type()); }

std::vector<std::vector<size_t>> plan_shards(const std::vector<uint64_t>& bytes, uint64_t max_shard_bytes) {
  std::vector<std::vector<size_t>> shards;
  uint64_t in_shard = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (shards.empty() || (max_shard_bytes > 0 && in_shard > 0 && in_shard + bytes[i] > max_shard_bytes)) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(i);
    in_shard += bytes[i];
  }
  return shards;
}

std::string shard_file_name(size_t j, size_t n, const std::string& ext) {
  if (n == 1) return "model." + ext;
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.", j + 1, n);
  return buf + ext;
}

std::map<std::string, std::vector<std::string>> read_weight_index(const std::string& dir,
                                                                  const std::string& index_name) {
  const std::string index = (fs::path(dir) / index_name).string();
  json idx = read_json_file(index);
  if (!idx.contains("weight_map") || !idx["weight_map"].is_object())
    throw CorruptError(index + ": missing 'weight_map' object");
  std::map<std::string, std::vector<std::string>> by_file;
  for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
    if (!it.value().is_string()) throw CorruptError(index + ": weight_map entry '" + it.key() + "' is not a file name");
    std::string file = it.value().get<std::string>();
    if (file.find('/') != std::string::npos || file.find("..") != std::string::npos)
      throw CorruptError(index + ": shard name '" + file + "' must be a plain file name in the directory");
    by_file[file].push_back(it.key());
  }
  return by_file;
}

void write_weight_index(const std::string& dir, const std::string& index_name, const json& weight_map,
                        uint64_t total_bytes) {
  write_json_file((fs::path(dir) / index_name).string(),
                  json{{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}});
}

namespace {
std::string dtype_and_shape(const torch::Tensor& t) {
  std::ostringstream out;
  out << c10::toString(t.scalar_type()) << " " << t.sizes();
  return out.str();
}
}  // namespace

TensorSource values_of(const NamedTensors& tensors) {
  return [&tensors](size_t i) { return tensors[i].second; };
}

torch::Tensor source_tensor(const NamedTensors& layout, const TensorSource& value, size_t i, const std::string& path) {
  const torch::Tensor& want = layout[i].second;
  torch::Tensor t = value(i).detach().to(torch::kCPU).contiguous();
  if (t.scalar_type() != want.scalar_type() || t.sizes() != want.sizes())
    throw InternalError(path + ": tensor '" + layout[i].first + "' is " + dtype_and_shape(t) +
                        ", its file was laid out for " + dtype_and_shape(want));
  return t;
}

}  // namespace lethe
