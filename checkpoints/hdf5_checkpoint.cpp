#include "checkpoints/hdf5_checkpoint.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>

#include <ATen/Parallel.h>

#include "common/error.h"
#include "common/fs.h"
#include "common/hash.h"

namespace fs = std::filesystem;

namespace lethe {

namespace {

// Every HDF5 call is checked; the message names the call, the file and the line.
#define H5_CHECK(expr, what)                                                                                    \
  ([&]() {                                                                                                      \
    errno = 0;                                                                                                  \
    auto _rc = (expr);                                                                                          \
    if (_rc < 0)                                                                                                \
      throw InputError(std::string(what) + (errno ? std::string(": ") + std::strerror(errno) : std::string()) + \
                       " (HDF5 call `" #expr "` failed at " + __FILE__ + ":" + std::to_string(__LINE__) + ")"); \
    return _rc;                                                                                                 \
  }())

// '/' separates groups in HDF5 paths; tensor names may contain it ("block/exp_avg"), so it is
// stored as '|', which no HF parameter name uses.
std::string to_h5_name(std::string n) {
  std::replace(n.begin(), n.end(), '/', '|');
  return n;
}
std::string from_h5_name(std::string n) {
  std::replace(n.begin(), n.end(), '|', '/');
  return n;
}

void silence_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

// RAII for HDF5 identifiers.
struct H5Id {
  hid_t id = -1;
  herr_t (*close)(hid_t) = nullptr;
  H5Id(hid_t i, herr_t (*c)(hid_t)) : id(i), close(c) {}
  ~H5Id() {
    if (id >= 0 && close) close(id);
  }
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  operator hid_t() const { return id; }
};

// One row per dtype a native checkpoint stores: the `dtype` attribute, the file type and the
// memory type. 16-bit floats are stored as their raw bit patterns.
struct Hdf5Dtype {
  torch::ScalarType dtype;
  const char* label;
  hid_t file, mem;
};

const std::vector<Hdf5Dtype>& hdf5_dtypes() {
  static const std::vector<Hdf5Dtype> table = {
      {torch::kFloat, "float32", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT},
      {torch::kBFloat16, "bfloat16", H5T_STD_U16LE, H5T_NATIVE_UINT16},
      {torch::kHalf, "float16", H5T_STD_U16LE, H5T_NATIVE_UINT16},
      {torch::kDouble, "float64", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE},
      {torch::kLong, "int64", H5T_STD_I64LE, H5T_NATIVE_INT64},
      {torch::kInt, "int32", H5T_STD_I32LE, H5T_NATIVE_INT32},
      {torch::kByte, "uint8", H5T_STD_U8LE, H5T_NATIVE_UINT8},
  };
  return table;
}

const Hdf5Dtype& hdf5_dtype(torch::ScalarType t) {
  for (auto& row : hdf5_dtypes())
    if (row.dtype == t) return row;
  throw InputError(std::string("HDF5 checkpoint: unsupported dtype ") + c10::toString(t));
}

const Hdf5Dtype& hdf5_dtype(const std::string& label, const std::string& what) {
  for (auto& row : hdf5_dtypes())
    if (label == row.label) return row;
  throw CorruptError(what + ": unknown dtype attribute '" + label + "'");
}

void write_string_attr(hid_t obj, const std::string& name, const std::string& value) {
  H5Id type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5_CHECK(H5Tset_size(type, value.empty() ? 1 : value.size()), "HDF5 attribute " + name);
  H5Id space(H5Screate(H5S_SCALAR), H5Sclose);
  H5Id attr(H5_CHECK(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), "HDF5 attribute " + name),
            H5Aclose);
  std::string v = value.empty() ? std::string(1, '\0') : value;
  H5_CHECK(H5Awrite(attr, type, v.data()), "HDF5 attribute " + name);
}

// The per-block hashes of a dataset's bytes (common/hash.h block_hashes), as 64-bit
// little-endian integers: what lets a reader check a range of the tensor without reading it all.
void write_block_hashes_attr(hid_t obj, const std::vector<uint64_t>& hashes) {
  const hsize_t n = hashes.size();
  H5Id space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  H5Id attr(H5_CHECK(H5Acreate2(obj, "hash64b_blocks", H5T_STD_U64LE, space, H5P_DEFAULT, H5P_DEFAULT),
                     "HDF5 attribute hash64b_blocks"),
            H5Aclose);
  H5_CHECK(H5Awrite(attr, H5T_NATIVE_UINT64, hashes.data()), "HDF5 attribute hash64b_blocks");
}

std::vector<uint64_t> read_block_hashes_attr(hid_t obj, const std::string& what) {
  H5Id attr(H5Aopen(obj, "hash64b_blocks", H5P_DEFAULT), H5Aclose);
  if (attr.id < 0) throw CorruptError(what + ": attribute 'hash64b_blocks' cannot be opened");
  H5Id type(H5Aget_type(attr), H5Tclose);
  H5Id space(H5Aget_space(attr), H5Sclose);
  if (H5Tget_class(type) != H5T_INTEGER || H5Tget_size(type) != 8 || H5Sget_simple_extent_ndims(space) != 1)
    throw CorruptError(what + ": attribute 'hash64b_blocks' is not a list of 64-bit integers");
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space, &n, nullptr);
  std::vector<uint64_t> out(static_cast<size_t>(n));
  if (n > 0 && H5Aread(attr, H5T_NATIVE_UINT64, out.data()) < 0)
    throw CorruptError(what + ": attribute 'hash64b_blocks' is unreadable");
  return out;
}

std::string read_string_attr(hid_t obj, const std::string& name, const std::string& what) {
  H5Id attr(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose);
  if (attr.id < 0) throw CorruptError(what + ": missing attribute '" + name + "'");
  H5Id type(H5Aget_type(attr), H5Tclose);
  if (H5Tget_class(type) != H5T_STRING) throw CorruptError(what + ": attribute '" + name + "' is not a string");
  std::string v;
  if (H5Tis_variable_str(type) > 0) {  // h5py's default for str attributes
    H5Id mtype(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mtype, H5T_VARIABLE);
    char* text = nullptr;
    if (H5Aread(attr, mtype, &text) < 0 || !text) throw CorruptError(what + ": attribute '" + name + "' is unreadable");
    v = text;
    H5free_memory(text);
  } else {
    size_t n = H5Tget_size(type);
    if (n == 0 || n > (256u << 20)) throw CorruptError(what + ": attribute '" + name + "' has a bad size");
    v.assign(n, '\0');
    // Read as NULLPAD: all n bytes arrive whether the file pads with NULs (NULLPAD, NULLTERM)
    // or not; the padding is dropped below.
    H5Id mtype(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mtype, n);
    H5Tset_strpad(mtype, H5T_STR_NULLPAD);
    if (H5Aread(attr, mtype, v.data()) < 0) throw CorruptError(what + ": attribute '" + name + "' is unreadable");
  }
  while (!v.empty() && v.back() == '\0') v.pop_back();
  return v;
}

// A dataset as lethe wrote it: its dtype attribute names a known dtype, the stored HDF5 type is
// the one that dtype is written as (a changed attribute would reinterpret the bytes), and a
// checksum covers its data: the `hash64b` attribute (hash_blocks of the stored bytes, written
// by this lethe with contiguous datasets) or HDF5's Fletcher32 filter on every chunk (files of
// earlier versions).
struct H5Dataset {
  torch::ScalarType dtype;
  std::vector<int64_t> shape;  // [] for a scalar
  std::vector<int64_t> stored_shape;
  std::string hash64b;         // empty: Fletcher32 guards the chunks
  bool little_endian = false;  // the stored bytes are this machine's (little-endian) order
};

H5Dataset check_dataset(hid_t ds, const std::string& what) {
  const Hdf5Dtype& row = hdf5_dtype(read_string_attr(ds, "dtype", what), what);
  H5Id stored(H5Dget_type(ds), H5Tclose);
  if (stored.id < 0 || H5Tequal(stored, row.file) <= 0)
    throw CorruptError(what + ": stored type does not match its dtype attribute '" + std::string(row.label) + "'");
  H5Dataset d{row.dtype, {}, {}, {}, __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && H5Tget_order(stored) == H5T_ORDER_LE};
  if (H5Aexists(ds, "hash64b") > 0) {
    d.hash64b = read_string_attr(ds, "hash64b", what);
  } else {
    H5Id dcpl(H5Dget_create_plist(ds), H5Pclose);
    bool fletcher = false;
    int nfilters = dcpl.id < 0 ? -1 : H5Pget_nfilters(dcpl);
    for (int i = 0; i < nfilters; ++i) {
      unsigned flags = 0;
      size_t nelmts = 0;
      if (H5Pget_filter2(dcpl, unsigned(i), &flags, &nelmts, nullptr, 0, nullptr, nullptr) == H5Z_FILTER_FLETCHER32)
        fletcher = true;
    }
    if (!fletcher) throw CorruptError(what + ": no checksum (not written by lethe, or rewritten)");
  }
  H5Id space(H5Dget_space(ds), H5Sclose);
  int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 1 || rank > 8) throw CorruptError(what + ": bad rank");
  std::vector<hsize_t> dims(size_t(rank), 0);
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  d.stored_shape.assign(dims.begin(), dims.end());
  const bool scalar = H5Aexists(ds, "scalar") > 0;
  if (scalar && !(rank == 1 && dims[0] == 1)) throw CorruptError(what + ": a scalar must be stored as [1]");
  if (!scalar) d.shape = d.stored_shape;
  return d;
}

}  // namespace

void write_h5_tensors(const std::string& path, const NamedTensors& tensors, const std::map<std::string, json>& attrs) {
  write_h5_tensors(path, tensors, values_of(tensors), attrs);
}

void write_h5_tensors(const std::string& path, const NamedTensors& layout, const TensorSource& value,
                      const std::map<std::string, json>& attrs) {
  silence_hdf5();
  H5Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  // Latest format: metadata blocks carry checksums too, so header corruption is detected.
  H5_CHECK(H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST), path);
  // No modification times in object headers: the same tensors give the same bytes, so a rerun
  // (or a resumed run) writes files identical to an uninterrupted one.
  H5Id fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
  H5_CHECK(H5Pset_obj_track_times(fcpl, false), path);
  H5Id file(H5Fcreate(path.c_str(), H5F_ACC_EXCL, fcpl, fapl), H5Fclose);
  if (file.id < 0) throw InputError(path + ": cannot create HDF5 file (exists or not writable)");
  for (auto& [k, v] : attrs) write_string_attr(file, k, json_text(v));
  int* fd = nullptr;  // the sec2 driver's descriptor, for start_writeback
  if (H5Fget_vfd_handle(file, H5P_DEFAULT, reinterpret_cast<void**>(&fd)) < 0) fd = nullptr;
  for (size_t i = 0; i < layout.size(); ++i) {
    const std::string& name = layout[i].first;
    const std::string what = path + ": dataset '" + name + "'";
    const torch::Tensor t = source_tensor(layout, value, i, path);
    std::vector<hsize_t> dims;
    for (auto d : t.sizes()) dims.push_back(hsize_t(d));
    bool scalar = dims.empty();
    if (scalar) dims.push_back(1);
    // Contiguous: HDF5 writes the tensor's bytes straight from its storage, and the checksum
    // is taken from the same bytes in memory (one pass; no chunk copies or Fletcher32).
    H5Id space(H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose);
    H5Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    H5_CHECK(H5Pset_layout(dcpl, H5D_CONTIGUOUS), what);
    H5_CHECK(H5Pset_obj_track_times(dcpl, false), what);
    H5Id ds(H5_CHECK(H5Dcreate2(file, to_h5_name(name).c_str(), hdf5_dtype(t.scalar_type()).file, space, H5P_DEFAULT,
                                dcpl, H5P_DEFAULT),
                     what),
            H5Dclose);
    const size_t bytes = size_t(t.numel()) * dtype_size(t.scalar_type());
    if (t.numel() > 0)
      H5_CHECK(H5Dwrite(ds, hdf5_dtype(t.scalar_type()).mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()), what);
    write_string_attr(ds, "dtype", hdf5_dtype(t.scalar_type()).label);
    const std::vector<uint64_t> blocks = block_hashes(t.data_ptr(), bytes);
    write_string_attr(ds, "hash64b", hex64(fold_block_hashes(blocks, bytes)));
    if (blocks.size() > 1) write_block_hashes_attr(ds, blocks);  // ranges of it can be read alone
    if (scalar) write_string_attr(ds, "scalar", "1");
    if (fd) start_writeback(*fd);
  }
  H5_CHECK(H5Fflush(file, H5F_SCOPE_GLOBAL), path);
}

namespace {
// The completion marker's data-region finder for .h5 files (common/fs.h); {} when the file
// cannot be read.
DataRegions h5_data_regions(const std::string& path) {
  try {
    return H5Reader(path).data_regions();
  } catch (const std::exception&) {
    return {};
  }
}
const bool h5_finder_set = (set_data_region_finder(".h5", h5_data_regions), true);
}  // namespace

static_assert(sizeof(hid_t) == sizeof(int64_t), "H5Reader keeps the file's hid_t as an int64_t");
constexpr uint64_t kPrefetchBytes = uint64_t(256) << 20;

H5Reader::H5Reader(const std::string& path) : path_(path) {
  silence_hdf5();
  verify_written_file(path);  // damaged bytes never reach the HDF5 parser
  if (!fs::exists(path)) throw InputError(path + ": no such file");
  if (H5Fis_hdf5(path.c_str()) <= 0) throw CorruptError(path + ": not an HDF5 file (truncated or overwritten?)");
  file_ = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file_ < 0) throw CorruptError(path + ": cannot open HDF5 file (corrupt metadata or truncated)");
  H5G_info_t info;
  bool listed = H5Gget_info(file_, &info) >= 0;
  for (hsize_t i = 0; listed && i < info.nlinks; ++i) {
    ssize_t n = H5Lget_name_by_idx(file_, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    listed = n >= 0;
    if (!listed) break;
    std::string name(size_t(n) + 1, '\0');
    H5Lget_name_by_idx(file_, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT);
    name.resize(size_t(n));
    names_.push_back(from_h5_name(name));
  }
  if (!listed) {
    H5Fclose(file_);
    throw CorruptError(path + ": cannot list datasets (corrupt metadata)");
  }
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);  // read-ahead advice, reads in place (-1: none)
}

H5Reader::~H5Reader() {
  if (file_ >= 0) H5Fclose(file_);
  if (fd_ >= 0) ::close(fd_);
}

bool H5Reader::has(const std::string& name) const {
  return std::find(names_.begin(), names_.end(), name) != names_.end();
}

std::map<std::string, H5TensorInfo> H5Reader::infos() const {
  std::map<std::string, H5TensorInfo> out;
  for (auto& name : names_) {
    const std::string what = path_ + ": dataset '" + name + "'";
    H5Id ds(H5Dopen2(file_, to_h5_name(name).c_str(), H5P_DEFAULT), H5Dclose);
    if (ds.id < 0) throw CorruptError(what + " cannot be opened (corrupt metadata)");
    H5Dataset d = check_dataset(ds, what);
    out.emplace(name, H5TensorInfo{d.dtype, d.shape});
  }
  return out;
}

std::map<std::string, json> H5Reader::attributes() const {
  std::vector<std::string> attr_names;
  auto collect = [](hid_t, const char* name, const H5A_info_t*, void* data) -> herr_t {
    static_cast<std::vector<std::string>*>(data)->push_back(name);
    return 0;
  };
  if (H5Aiterate2(file_, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect, &attr_names) < 0)
    throw CorruptError(path_ + ": cannot list attributes (corrupt metadata)");
  std::map<std::string, json> attrs;
  for (auto& nm : attr_names) {
    std::string text = read_string_attr(file_, nm, path_);
    check_json_depth(text, path_ + ": attribute '" + nm + "'");
    try {
      attrs[nm] = json::parse(text);
    } catch (const json::exception&) {  // parse_error, or out_of_range: a number past double
      throw CorruptError(path_ + ": attribute '" + nm + "' is not valid JSON");
    }
  }
  return attrs;
}

namespace {
// Where a dataset's bytes lie in the file when they can be read in place: contiguous, little-
// endian, checksummed by `hash64b`, and `fd` open; 0 otherwise (the superblock is there).
uint64_t offset_in_place(int fd, hid_t ds, const H5Dataset& d) {
  const haddr_t offset = H5Dget_offset(ds);  // HADDR_UNDEF unless contiguous and allocated
  return fd < 0 || offset == HADDR_UNDEF || !d.little_endian || d.hash64b.empty() ? 0 : uint64_t(offset);
}
}  // namespace

// Dataset `name`, checked (dtype attribute against the stored type, its checksum), into `dst`
// when defined (same dtype and element count, contiguous) or a new tensor; the bytes read are
// compared with the dataset's `hash64b` (the marker's checksum does not cover them). Bytes that
// lie in place are read in 1 MiB blocks on the intra-op threads, each hashed as it lands.
torch::Tensor H5Reader::read_dataset(const std::string& name, torch::Tensor dst) const {
  const std::string what = path_ + ": dataset '" + name + "'";
  if (!has(name)) throw InputError(path_ + ": has no tensor '" + name + "'");
  H5Id ds(H5Dopen2(file_, to_h5_name(name).c_str(), H5P_DEFAULT), H5Dclose);
  if (ds.id < 0) throw CorruptError(what + " cannot be opened (corrupt metadata)");
  const H5Dataset d = check_dataset(ds, what);
  torch::Tensor t = dst;
  if (t.defined()) {
    LETHE_CHECK(t.scalar_type() == d.dtype && t.numel() == c10::multiply_integers(d.stored_shape) &&
                    t.is_contiguous() && t.is_cpu(),
                what + ": the destination does not fit the dataset");
  } else {
    t = torch::empty(d.stored_shape, torch::TensorOptions().dtype(d.dtype));
  }
  // The tensors that follow this one in the file (written in the order they are read) are
  // prefetched while this one is read, checksummed and checked, so the disk does not idle.
  const uint64_t offset = offset_in_place(fd_, ds, d);
  if (offset != 0) ::posix_fadvise(fd_, off_t(offset), off_t(kPrefetchBytes), POSIX_FADV_WILLNEED);
  const uint64_t bytes = t.nbytes();
  if (offset != 0 && bytes > 0) {
    std::vector<uint64_t> hashes((bytes + kHashBlockBytes - 1) / kHashBlockBytes);
    if (!pread_pieces(fd_, t.data_ptr(), bytes, offset, kHashBlockBytes,
                      [&](int64_t b, const unsigned char* p, size_t n) { hashes[size_t(b)] = hash_block(p, n); }))
      throw CorruptError(what + " is truncated: the checkpoint is corrupt");
    if (hex64(fold_block_hashes(hashes, bytes)) != d.hash64b)
      throw CorruptError(what + " failed its checksum: the checkpoint is corrupt");
  } else if (bytes > 0) {
    if (H5Dread(ds, hdf5_dtype(d.dtype).mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()) < 0)
      throw CorruptError(what + " failed its checksum or is truncated: the checkpoint is corrupt");
    if (!d.hash64b.empty() && hex64(hash_blocks(t.data_ptr(), bytes)) != d.hash64b)
      throw CorruptError(what + " failed its checksum: the checkpoint is corrupt");
  }
  return dst.defined() ? dst : d.shape.empty() ? t.reshape({}) : t;
}

H5Reader::InPlace H5Reader::in_place(const std::string& name) const {
  const std::string what = path_ + ": dataset '" + name + "'";
  if (!has(name)) throw InputError(path_ + ": has no tensor '" + name + "'");
  H5Id ds(H5Dopen2(file_, to_h5_name(name).c_str(), H5P_DEFAULT), H5Dclose);
  if (ds.id < 0) throw CorruptError(what + " cannot be opened (corrupt metadata)");
  const H5Dataset d = check_dataset(ds, what);
  InPlace p{d.dtype, c10::multiply_integers(d.stored_shape), offset_in_place(fd_, ds, d), d.hash64b, {}};
  if (p.offset != 0 && H5Aexists(ds, "hash64b_blocks") > 0) p.blocks = read_block_hashes_attr(ds, what);
  return p;
}

torch::Tensor H5Reader::read_range(const std::string& name, int64_t first, int64_t count) const {
  const InPlace p = in_place(name);
  LETHE_CHECK(first >= 0 && count >= 0 && first + count <= p.numel, "read_range outside " + name);
  const uint64_t es = dtype_size(p.dtype), total = uint64_t(p.numel) * es;
  if (p.offset == 0 || p.blocks.empty()) return read(name).reshape({-1}).narrow(0, first, count).clone();
  const std::string what = path_ + ": dataset '" + name + "'";
  if (p.blocks.size() != (total + kHashBlockBytes - 1) / kHashBlockBytes ||
      hex64(fold_block_hashes(p.blocks, total)) != p.hash64b)
    throw CorruptError(what + ": its block hashes do not fold to its checksum (corrupt metadata)");
  auto out = torch::empty({count}, torch::TensorOptions().dtype(p.dtype));
  if (count == 0) return out;
  // The whole blocks that cover the range, read on the intra-op threads and each checked against
  // its hash: straight into `out` where a block lies inside the range, through a buffer at its ends.
  const uint64_t lo = uint64_t(first) * es, hi = uint64_t(first + count) * es;
  auto* dst = static_cast<unsigned char*>(out.data_ptr());
  at::parallel_for(int64_t(lo / kHashBlockBytes), int64_t((hi + kHashBlockBytes - 1) / kHashBlockBytes), 1,
                   [&](int64_t b0, int64_t b1) {
                     std::vector<unsigned char> edge;
                     for (int64_t b = b0; b < b1; ++b) {
                       const uint64_t begin = uint64_t(b) * kHashBlockBytes;
                       const uint64_t len = std::min<uint64_t>(kHashBlockBytes, total - begin);
                       const bool inside = begin >= lo && begin + len <= hi;
                       if (!inside) edge.resize(len);
                       unsigned char* block = inside ? dst + (begin - lo) : edge.data();
                       if (pread_full(fd_, block, len, p.offset + begin) != ssize_t(len))
                         throw CorruptError(what + " is truncated: the checkpoint is corrupt");
                       if (hash_block(block, len) != p.blocks[size_t(b)])
                         throw CorruptError(what + " failed its checksum: the checkpoint is corrupt");
                       if (inside) continue;
                       const uint64_t from = std::max(lo, begin), to = std::min(hi, begin + len);
                       std::memcpy(dst + (from - lo), block + (from - begin), to - from);
                     }
                   });
  return out;
}

torch::Tensor H5Reader::read_elements(const std::string& name, const std::vector<int64_t>& index) const {
  const InPlace p = in_place(name);
  for (int64_t k : index) LETHE_CHECK(k >= 0 && k < p.numel, "read_elements outside " + name);
  if (p.offset == 0) return read(name).reshape({-1}).index_select(0, torch::tensor(index, torch::kLong));
  auto out = torch::empty({int64_t(index.size())}, torch::TensorOptions().dtype(p.dtype));
  const size_t es = dtype_size(p.dtype);
  auto* dst = static_cast<char*>(out.data_ptr());
  for (size_t k = 0; k < index.size(); ++k)
    if (pread_full(fd_, dst + k * es, es, p.offset + uint64_t(index[k]) * es) != ssize_t(es))
      throw CorruptError(path_ + ": dataset '" + name + "' is truncated: the checkpoint is corrupt");
  return out;
}

DataRegions H5Reader::data_regions() const {
  DataRegions out;
  for (auto& name : names_) {
    H5Id ds(H5Dopen2(file_, to_h5_name(name).c_str(), H5P_DEFAULT), H5Dclose);
    if (ds.id < 0) throw CorruptError(path_ + ": dataset '" + name + "' cannot be opened (corrupt metadata)");
    if (H5Aexists(ds, "hash64b") <= 0) continue;
    const haddr_t offset = H5Dget_offset(ds);
    const hsize_t bytes = H5Dget_storage_size(ds);
    if (offset != HADDR_UNDEF && bytes > 0) out.emplace_back(uint64_t(offset), uint64_t(bytes));
  }
  return out;
}

torch::Tensor H5Reader::read(const std::string& name) const { return read_dataset(name, torch::Tensor()); }

void H5Reader::read_into(const std::string& name, torch::Tensor dst) const { read_dataset(name, std::move(dst)); }

std::map<std::string, H5TensorInfo> h5_tensor_infos(const std::string& path) { return H5Reader(path).infos(); }

std::map<std::string, json> read_h5_attributes(const std::string& path) { return H5Reader(path).attributes(); }

TensorMap read_h5_tensors(const std::string& path, const std::vector<std::string>& names,
                          std::map<std::string, json>* attrs) {
  H5Reader file(path);
  if (attrs) *attrs = file.attributes();
  TensorMap out;
  for (auto& name : names.empty() ? file.names() : names) out.emplace(name, file.read(name));
  return out;
}

void write_checkpoint_dir(const std::string& dir, const std::map<std::string, CheckpointFile>& files,
                          const std::map<std::string, std::string>& text_files,
                          const std::vector<std::string>& copy_files) {
  write_dir_atomically(
      dir,
      [&](const std::string& tmp) {
        for (auto& [name, f] : files) write_h5_tensors((fs::path(tmp) / name).string(), f.tensors, f.attrs);
        for (auto& [name, text] : text_files) write_file_atomic((fs::path(tmp) / name).string(), text);
        for (auto& src : copy_files) copy_file_checked(src, (fs::path(tmp) / fs::path(src).filename()).string());
      },
      "checkpoint");
}

}  // namespace lethe
