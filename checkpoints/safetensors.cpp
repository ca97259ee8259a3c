#include "checkpoints/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "common/error.h"
#include "common/fs.h"
#include "common/json_io.h"

namespace fs = std::filesystem;

namespace lethe {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the reference implementation's bound

struct DtypeInfo {
  const char* name;
  torch::ScalarType type;
  size_t size;
};
const DtypeInfo kDtypes[] = {
    {"F32", torch::kFloat, 4}, {"F16", torch::kHalf, 2},  {"BF16", torch::kBFloat16, 2}, {"F64", torch::kDouble, 8},
    {"I64", torch::kLong, 8},  {"I32", torch::kInt, 4},   {"I16", torch::kShort, 2},     {"I8", torch::kChar, 1},
    {"U8", torch::kByte, 1},   {"BOOL", torch::kBool, 1},
};

uint64_t file_size(const std::string& path) {
  std::error_code ec;
  auto n = fs::file_size(path, ec);
  if (ec) throw InputError(path + ": cannot stat (" + ec.message() + ")");
  return n;
}

}  // namespace

std::string safetensors_dtype_name(torch::ScalarType t) {
  for (auto& d : kDtypes)
    if (d.type == t) return d.name;
  throw InputError(std::string("unsupported tensor dtype ") + c10::toString(t));
}

std::vector<SafetensorsEntry> read_safetensors_header(const std::string& path, uint64_t* data_offset,
                                                      std::map<std::string, std::string>* metadata) {
  if (!fs::exists(path)) throw InputError(path + ": no such file");
  const uint64_t size = file_size(path);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open");
  if (size < 8) throw CorruptError(path + ": not a safetensors file (shorter than its 8-byte header length)");
  uint8_t lenbuf[8];
  in.read(reinterpret_cast<char*>(lenbuf), 8);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | lenbuf[i];
  if (hlen > kMaxHeaderBytes)
    throw CorruptError(path + ": safetensors header length " + std::to_string(hlen) + " exceeds the 100 MiB bound");
  if (hlen > size - 8)
    throw CorruptError(path + ": truncated (header length " + std::to_string(hlen) + " runs past the end of the file)");
  std::string header(hlen, '\0');
  in.read(header.data(), std::streamsize(hlen));
  if (!in) throw CorruptError(path + ": truncated header");
  json h;
  std::string duplicate;  // the reference library refuses a header that names a tensor twice
  std::set<std::string> keys;
  auto track_keys = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && parsed.is_string() &&
        !keys.insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  check_json_depth(header, path + ": safetensors header");
  try {
    h = json::parse(header, track_keys);
  } catch (const json::exception& e) {  // parse_error, or out_of_range: a number past double
    throw CorruptError(path + ": malformed safetensors header JSON (" + std::string(e.what()) + ")");
  }
  if (!h.is_object()) throw CorruptError(path + ": safetensors header is not a JSON object");
  if (!duplicate.empty()) throw CorruptError(path + ": safetensors header names '" + duplicate + "' twice");
  const uint64_t data_size = size - 8 - hlen;
  std::vector<SafetensorsEntry> entries;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) throw CorruptError(path + ": __metadata__ is not an object");
      if (metadata)
        for (auto m = it.value().begin(); m != it.value().end(); ++m)
          (*metadata)[m.key()] = m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
      continue;
    }
    const std::string what = path + ": tensor '" + it.key() + "'";
    const json& e = it.value();
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
      throw CorruptError(what + " lacks dtype, shape or data_offsets");
    SafetensorsEntry ent;
    ent.name = it.key();
    if (!e["dtype"].is_string()) throw CorruptError(what + ": dtype is not a string");
    std::string dt = e["dtype"].get<std::string>();
    const DtypeInfo* info = nullptr;
    for (auto& d : kDtypes)
      if (dt == d.name) info = &d;
    if (!info) throw CorruptError(what + ": unknown dtype '" + dt + "'");
    ent.dtype = info->type;
    if (!e["shape"].is_array()) throw CorruptError(what + ": shape is not an array");
    uint64_t numel = 1;
    for (auto& d : e["shape"]) {
      if (!d.is_number_unsigned()) throw CorruptError(what + ": shape has a non-integer or negative dimension");
      uint64_t v = d.get<uint64_t>();
      if (v != 0 && numel > (UINT64_MAX / 16) / v) throw CorruptError(what + ": shape overflows");
      numel *= v;
      ent.shape.push_back(int64_t(v));
    }
    const json& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw CorruptError(what + ": data_offsets must be two non-negative integers");
    ent.begin = off[0].get<uint64_t>();
    ent.end = off[1].get<uint64_t>();
    if (ent.end < ent.begin || ent.end > data_size)
      throw CorruptError(what + ": data_offsets [" + std::to_string(ent.begin) + ", " + std::to_string(ent.end) +
                         ") lie outside the file's " + std::to_string(data_size) + "-byte data section (truncated?)");
    if (ent.end - ent.begin != numel * info->size)
      throw CorruptError(what + ": byte length " + std::to_string(ent.end - ent.begin) + " does not match dtype " + dt +
                         " and its shape (" + std::to_string(numel * info->size) + " bytes)");
    entries.push_back(std::move(ent));
  }
  std::vector<const SafetensorsEntry*> sorted;
  for (auto& e : entries) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(),
            [](auto* a, auto* b) { return a->begin != b->begin ? a->begin < b->begin : a->end < b->end; });
  // As the reference library requires: the tensors tile the data section exactly, no overlap,
  // no hole between them and no bytes after the last.
  uint64_t expect = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (sorted[i]->begin < expect)
      throw CorruptError(path + ": tensors '" + sorted[i - 1]->name + "' and '" + sorted[i]->name + "' overlap");
    if (sorted[i]->begin > expect)
      throw CorruptError(path + ": a hole of " + std::to_string(sorted[i]->begin - expect) + " bytes before tensor '" +
                         sorted[i]->name + "' (data_offsets must be contiguous)");
    expect = sorted[i]->end;
  }
  if (expect != data_size)
    throw CorruptError(path + ": " + std::to_string(data_size - expect) +
                       " bytes after the last tensor's data (the file is not what its header describes)");
  if (data_offset) *data_offset = 8 + hlen;
  return entries;
}

namespace {
// A tensor's bytes, `offset` from the file's start, into dst (contiguous, dst.nbytes() long).
void read_tensor_bytes(std::istream& in, const std::string& path, uint64_t offset, const std::string& name,
                       const torch::Tensor& dst) {
  in.seekg(std::streamoff(offset));
  in.read(static_cast<char*>(dst.data_ptr()), std::streamsize(dst.nbytes()));
  if (!in) throw CorruptError(path + ": truncated while reading tensor '" + name + "'");
}
}  // namespace

void read_safetensors_tensor_into(const std::string& path, uint64_t offset, const std::string& name,
                                  const torch::Tensor& dst) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(path + ": cannot open (" + std::strerror(errno) + ")");
  // What follows this tensor in the file is prefetched while it is read and checked (models are
  // read in file order), so the disk does not idle between tensors.
  ::posix_fadvise(fd, off_t(offset), off_t(256) << 20, POSIX_FADV_WILLNEED);
  const bool whole = pread_pieces(fd, dst.data_ptr(), dst.nbytes(), offset, size_t(1) << 20);
  ::close(fd);
  if (!whole) throw CorruptError(path + ": truncated while reading tensor '" + name + "'");
}

TensorMap read_safetensors_subset(const std::string& path, const std::vector<std::string>& names) {
  uint64_t data_offset = 0;
  auto entries = read_safetensors_header(path, &data_offset);
  std::set<std::string> want(names.begin(), names.end());
  std::ifstream in(path, std::ios::binary);
  TensorMap out;
  for (auto& e : entries) {
    if (!want.empty() && !want.count(e.name)) continue;
    auto t = torch::empty(e.shape, torch::TensorOptions().dtype(e.dtype));
    read_tensor_bytes(in, path, data_offset + e.begin, e.name, t);
    out.emplace(e.name, t);
  }
  for (auto& n : want)
    if (!out.count(n)) throw InputError(path + ": has no tensor '" + n + "'");
  return out;
}

TensorMap read_safetensors(const std::string& path) { return read_safetensors_subset(path, {}); }

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_safetensors(path, tensors, values_of(tensors), metadata);
}

void write_safetensors(const std::string& path, const NamedTensors& layout, const TensorSource& value,
                       const std::map<std::string, std::string>& metadata) {
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (auto& [name, t] : layout) {
    const uint64_t nbytes = uint64_t(t.numel()) * dtype_size(t.scalar_type());
    h[name] = {{"dtype", safetensors_dtype_name(t.scalar_type())},
               {"shape", t.sizes().vec()},
               {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // align the data section to 8 bytes
  SequentialFile out(path);
  const uint64_t hlen = header.size();
  uint8_t lenbuf[8];
  for (int i = 0; i < 8; ++i) lenbuf[i] = uint8_t(hlen >> (8 * i));
  out.append(lenbuf, 8);
  out.append(header.data(), header.size());
  for (size_t i = 0; i < layout.size(); ++i) {
    const torch::Tensor t = source_tensor(layout, value, i, path);
    out.append(t.data_ptr(), size_t(tensor_bytes(t)));
  }
  out.close();
}

bool has_hf_weights(const std::string& dir) {
  return fs::exists(fs::path(dir) / "model.safetensors") || fs::exists(fs::path(dir) / "model.safetensors.index.json");
}

TensorMap read_hf_weights(const std::string& dir) {
  fs::path single = fs::path(dir) / "model.safetensors", index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(single)) return read_safetensors(single.string());
  if (!fs::exists(index))
    throw InputError(dir +
                     ": no model.safetensors or model.safetensors.index.json (pickled .bin weights are not read)");
  TensorMap out;
  for (auto& [file, names] : read_weight_index(dir, "model.safetensors.index.json")) {
    auto part = read_safetensors_subset((fs::path(dir) / file).string(), names);
    out.insert(part.begin(), part.end());
  }
  return out;
}

}  // namespace lethe
