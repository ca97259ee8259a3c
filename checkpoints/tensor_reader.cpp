#include "checkpoints/tensor_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <ATen/Parallel.h>

#include "checkpoints/hdf5_checkpoint.h"
#include "checkpoints/safetensors.h"
#include "checkpoints/tensor_index.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/json_io.h"

namespace fs = std::filesystem;

namespace lethe {

namespace {

std::string shape_string(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// The files of a checkpoint: `single` when it exists, else every file its index names.
std::vector<std::string> weight_files(const std::string& dir, const std::string& single, const std::string& index) {
  if (fs::exists(fs::path(dir) / single)) return {(fs::path(dir) / single).string()};
  std::vector<std::string> files;
  for (auto& [file, names] : read_weight_index(dir, index)) files.push_back((fs::path(dir) / file).string());
  return files;
}

}  // namespace

int64_t TensorInfo::numel() const { return c10::multiply_integers(shape); }

int64_t TensorInfo::bytes() const { return numel() * int64_t(dtype_size(dtype)); }

TensorReader::TensorReader(const std::string& dir) : dir_(dir) {
  auto add = [&](const std::string& name, TensorInfo info) {
    if (!infos_.emplace(name, std::move(info)).second)
      throw CorruptError(dir + ": tensor '" + name + "' appears in more than one file");
  };
  format_ = detect_format(dir);
  if (format_ == CheckpointFormat::kNative) {
    require_complete(dir);
    for (auto& f : weight_files(dir, "model.h5", kNativeIndex)) {
      auto file = std::make_shared<const H5Reader>(f);
      for (auto& [name, i] : file->infos()) add(name, {i.dtype, i.shape, f});
      h5_[f] = std::move(file);
    }
  } else {
    for (auto& f : weight_files(dir, "model.safetensors", "model.safetensors.index.json")) {
      uint64_t data_offset = 0;
      for (auto& e : read_safetensors_header(f, &data_offset))
        add(e.name, {e.dtype, e.shape, f, data_offset + e.begin});
    }
  }
}

const TensorInfo& TensorReader::info(const std::string& name) const {
  auto it = infos_.find(name);
  if (it == infos_.end()) throw InputError(dir_ + ": has no tensor '" + name + "'");
  return it->second;
}

void TensorReader::fill(const std::string& name, const TensorInfo& info, const torch::Tensor& dst) const {
  if (format_ == CheckpointFormat::kNative)
    h5_.at(info.file)->read_into(name, dst);
  else
    read_safetensors_tensor_into(info.file, info.file_offset, name, dst);
  require_finite(dir_, name, dst);
}

torch::Tensor TensorReader::read(const std::string& name) const {
  const TensorInfo& i = info(name);
  auto t = torch::empty(i.shape, torch::TensorOptions().dtype(i.dtype));
  fill(name, i, t);
  return t;
}

void TensorReader::read_into(const std::string& name, torch::Tensor dst) const {
  const TensorInfo& i = info(name);
  if (dst.is_cpu() && dst.is_contiguous() && dst.scalar_type() == i.dtype && dst.numel() == i.numel())
    fill(name, i, dst);
  else
    dst.copy_(read(name).view(dst.sizes()));
}

torch::Tensor TensorReader::read_range(const std::string& name, int64_t first, int64_t count) const {
  const TensorInfo& i = info(name);
  if (first < 0 || count < 0 || first + count > i.numel())
    throw InternalError("read_range: elements [" + std::to_string(first) + ", " + std::to_string(first + count) +
                        ") of '" + name + "' (" + std::to_string(i.numel()) + " elements)");
  if (format_ == CheckpointFormat::kNative) {
    auto t = h5_.at(i.file)->read_range(name, first, count);
    require_finite(dir_, name, t);
    return t;
  }
  auto t = torch::empty({count}, torch::TensorOptions().dtype(i.dtype));
  read_safetensors_tensor_into(i.file, i.file_offset + uint64_t(first) * dtype_size(i.dtype), name, t);
  require_finite(dir_, name, t);
  return t;
}

torch::Tensor TensorReader::read_elements(const std::string& name, const std::vector<int64_t>& index) const {
  const TensorInfo& i = info(name);
  for (int64_t k : index)
    if (k < 0 || k >= i.numel())
      throw InternalError("read_elements: element " + std::to_string(k) + " of '" + name + "'");
  if (format_ == CheckpointFormat::kNative) {
    auto t = h5_.at(i.file)->read_elements(name, index);
    require_finite(dir_, name, t);
    return t;
  }
  auto t = torch::empty({int64_t(index.size())}, torch::TensorOptions().dtype(i.dtype));
  const size_t esz = dtype_size(i.dtype);
  const int fd = ::open(i.file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(i.file + ": cannot open (" + std::strerror(errno) + ")");
  auto* out = static_cast<char*>(t.data_ptr());
  for (size_t k = 0; k < index.size(); ++k)
    if (pread_full(fd, out + k * esz, esz, i.file_offset + uint64_t(index[k]) * esz) != ssize_t(esz)) {
      ::close(fd);
      throw CorruptError(i.file + ": truncated while reading tensor '" + name + "'");
    }
  ::close(fd);
  require_finite(dir_, name, t);
  return t;
}

namespace {
// One pass over the bits, no temporary, on the intra-op threads: an IEEE value is NaN or Inf
// when its exponent is all ones.
template <typename U>
bool all_finite_bits(const void* data, int64_t n, U exponent) {
  const U* p = static_cast<const U*>(data);
  std::atomic<bool> ok{true};
  at::parallel_for(0, n, int64_t(1) << 18, [&](int64_t b, int64_t e) {
    U bad = 0;
    for (int64_t i = b; i < e; ++i) bad |= U((p[i] & exponent) == exponent);
    if (bad != 0) ok = false;
  });
  return ok;
}
}  // namespace

void require_finite(const std::string& where, const std::string& name, const torch::Tensor& t) {
  if (!t.is_floating_point() || t.numel() == 0) return;
  bool ok;
  if (t.is_cpu() && t.is_contiguous() && t.scalar_type() == torch::kFloat)
    ok = all_finite_bits<uint32_t>(t.data_ptr(), t.numel(), 0x7f800000u);
  else if (t.is_cpu() && t.is_contiguous() && t.scalar_type() == torch::kBFloat16)
    ok = all_finite_bits<uint16_t>(t.data_ptr(), t.numel(), 0x7f80u);
  else if (t.is_cpu() && t.is_contiguous() && t.scalar_type() == torch::kHalf)
    ok = all_finite_bits<uint16_t>(t.data_ptr(), t.numel(), 0x7c00u);
  else
    ok = torch::isfinite(t).all().item<bool>();
  if (!ok) throw CorruptError(where + ": tensor '" + name + "' holds NaN or Inf values");
}

void require_same_tensors(const TensorReader& a, const TensorReader& b) {
  for (auto& [name, ia] : a.tensors()) {
    auto it = b.tensors().find(name);
    if (it == b.tensors().end())
      throw InputError("mismatched checkpoints: '" + b.dir() + "' has no tensor '" + name + "' (present in '" +
                       a.dir() + "')");
    if (it->second.dtype != ia.dtype)
      throw InputError("mismatched checkpoints: tensor '" + name + "' is " + safetensors_dtype_name(ia.dtype) +
                       " in '" + a.dir() + "' but " + safetensors_dtype_name(it->second.dtype) + " in '" + b.dir() +
                       "'");
    if (it->second.shape != ia.shape)
      throw InputError("mismatched checkpoints: tensor '" + name + "' has shape " + shape_string(ia.shape) + " in '" +
                       a.dir() + "' but " + shape_string(it->second.shape) + " in '" + b.dir() + "'");
  }
  for (auto& [name, ib] : b.tensors())
    if (!a.tensors().count(name))
      throw InputError("mismatched checkpoints: '" + b.dir() + "' has a tensor '" + name + "' that '" + a.dir() +
                       "' lacks");
}

}  // namespace lethe
