// Native HDF5 checkpoints: round trips (fp32, bf16, int64, attributes), atomic directories
// with a completion marker, and corruption (truncation, flipped bits) always rejected.
#include "checkpoints/hdf5_checkpoint.h"

#include <hdf5.h>

#include <ATen/Parallel.h>

#include <chrono>
#include <cmath>
#include <functional>

#include "checkpoints/model_io.h"
#include "checkpoints/tensor_reader.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/hash.h"
#include "tests/test_util.h"

namespace lethe {
namespace {

NamedTensors sample() {
  torch::manual_seed(1);
  return {{"model.layers.0.w", torch::randn({300, 700})},  // several chunks
          {"model.norm.weight", torch::randn({64}).to(torch::kBFloat16)},
          {"step", torch::tensor({42}, torch::kLong)},
          {"scalar", torch::tensor(3.5f)}};
}

TEST(Hdf5, RoundTripWithAttributes) {
  test::TempDir tmp;
  write_h5_tensors(tmp / "m.h5", sample(), {{"model_config", json{{"a", 1}}}, {"note", "x"}});
  std::map<std::string, json> attrs;
  auto got = read_h5_tensors(tmp / "m.h5", {}, &attrs);
  EXPECT_EQ(attrs["model_config"]["a"], 1);
  EXPECT_EQ(attrs["note"], "x");
  for (auto& [n, t] : sample()) {
    ASSERT_TRUE(got.count(n)) << n;
    EXPECT_EQ(got[n].scalar_type(), t.scalar_type()) << n;
    EXPECT_EQ(got[n].sizes(), t.sizes()) << n;
    EXPECT_TRUE(torch::equal(got[n], t)) << n;
  }
  auto one = read_h5_tensors(tmp / "m.h5", {"model.norm.weight"});
  EXPECT_EQ(one.size(), 1u);
  EXPECT_THROW(read_h5_tensors(tmp / "m.h5", {"nope"}), InputError);
}

TEST(Hdf5, CheckpointDirectoryIsAtomicAndNeverOverwritten) {
  test::TempDir tmp;
  std::string dir = tmp / "ckpt";
  write_checkpoint_dir(dir, {{"model.h5", {sample(), {}}}}, {{"config.json", "{}"}}, {});
  EXPECT_TRUE(fs::exists(dir + "/COMPLETE"));
  EXPECT_NO_THROW(require_complete(dir));
  auto before = test::slurp(dir + "/model.h5");
  EXPECT_THROW(write_checkpoint_dir(dir, {{"model.h5", {sample(), {}}}}, {}, {}), InputError);
  EXPECT_EQ(test::slurp(dir + "/model.h5"), before);
  for (auto& e : fs::directory_iterator(tmp.path))  // no temporary left behind
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
  fs::remove(dir + "/COMPLETE");
  try {
    require_complete(dir);
    FAIL();
  } catch (const CorruptError& e) {
    EXPECT_NE(std::string(e.what()).find("incomplete"), std::string::npos);
  }
}

TEST(Hdf5, TruncatedFilesAreRejected) {
  test::TempDir tmp;
  write_h5_tensors(tmp / "m.h5", sample(), {});
  std::string full = test::slurp(tmp / "m.h5");
  for (double frac : {0.01, 0.3, 0.7, 0.99}) {
    test::spit(tmp / "t.h5", full.substr(0, size_t(double(full.size()) * frac)));
    EXPECT_THROW(read_h5_tensors(tmp / "t.h5"), InputError) << frac;
  }
}

TEST(Hdf5, FlippedBitsAreDetected) {
  // The dataset checksum covers its bytes, and the latest file format checksums metadata:
  // a single flipped bit anywhere in the file is refused, never silently loaded.
  test::TempDir tmp;
  write_h5_tensors(tmp / "m.h5", sample(), {{"model_config", json{{"a", 1}}}});
  std::string full = test::slurp(tmp / "m.h5");
  int rejected = 0, tried = 0;
  for (size_t pos = 0; pos < full.size(); pos += full.size() / 97 + 1) {
    std::string bad = full;
    bad[pos] = char(bad[pos] ^ 0x04);
    test::spit(tmp / "f.h5", bad);
    ++tried;
    try {
      std::map<std::string, json> attrs;
      auto got = read_h5_tensors(tmp / "f.h5", {}, &attrs);
      // Accepted: then it must be bit-identical (the flip hit unused padding).
      bool same = attrs["model_config"]["a"] == 1;
      for (auto& [n, t] : sample()) same = same && got.count(n) && torch::equal(got[n], t);
      EXPECT_TRUE(same) << "flip at " << pos << " loaded altered data";
    } catch (const InputError&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, tried * 9 / 10);
}

std::string corrupt_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const CorruptError& e) {
    return e.what();
  }
  return "(accepted)";
}

// Rewrites the string attribute `name` of dataset `ds` (or the file when ds is empty) with the
// given padding, as other HDF5 tools may write it.
void set_string_attr(const std::string& path, const std::string& ds, const std::string& name, const std::string& value,
                     H5T_str_t pad = H5T_STR_NULLTERM, bool variable = false) {
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  hid_t obj = ds.empty() ? file : H5Dopen2(file, ds.c_str(), H5P_DEFAULT);
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, variable ? H5T_VARIABLE : value.size());
  H5Tset_strpad(type, pad);
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attr = H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT);
  const char* text = value.c_str();
  if (variable)
    H5Awrite(attr, type, &text);
  else
    H5Awrite(attr, type, value.data());
  H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
  if (!ds.empty()) H5Dclose(obj);
  H5Fclose(file);
}

TEST(Hdf5, DtypeAttributeMustAgreeWithTheStoredType) {
  // A float32 dataset relabelled as another dtype would be reinterpreted (zeroed or truncated
  // weights); every relabelling is refused.
  for (const char* label : {"int32", "bfloat16", "float16", "uint8", "int64", "float64"}) {
    test::TempDir tmp;
    write_h5_tensors(tmp / "m.h5", {{"w", torch::randn({4, 4})}}, {});
    set_string_attr(tmp / "m.h5", "w", "dtype", label);
    std::string e = corrupt_message([&] { read_h5_tensors(tmp / "m.h5"); });
    EXPECT_NE(e.find("stored type does not match its dtype attribute '" + std::string(label) + "'"), std::string::npos)
        << e;
    e = corrupt_message([&] { h5_tensor_infos(tmp / "m.h5"); });
    EXPECT_NE(e.find("stored type does not match"), std::string::npos) << e;
  }
}

// A float32 dataset [4] = {1, 2, 3, 4} named "w" written with the HDF5 API directly: chunked
// under Fletcher32 as earlier versions of lethe wrote every dataset, or contiguous without
// any checksum as other tools write.
void write_raw_dataset(const std::string& path, bool fletcher) {
  hid_t file = H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
  hsize_t dims[1] = {4}, chunk[1] = {2};
  hid_t space = H5Screate_simple(1, dims, nullptr);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (fletcher) {
    H5Pset_chunk(dcpl, 1, chunk);
    H5Pset_fletcher32(dcpl);
  }
  hid_t ds = H5Dcreate2(file, "w", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  float v[4] = {1, 2, 3, 4};
  H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
  H5Dclose(ds);
  H5Pclose(dcpl);
  H5Sclose(space);
  H5Fclose(file);
  set_string_attr(path, "w", "dtype", "float32");
}

TEST(Hdf5, DatasetsWithoutAChecksumAreRefused) {
  test::TempDir tmp;
  write_raw_dataset(tmp / "m.h5", /*fletcher=*/false);
  std::string e = corrupt_message([&] { read_h5_tensors(tmp / "m.h5"); });
  EXPECT_NE(e.find("dataset 'w': no checksum"), std::string::npos) << e;
}

TEST(Hdf5, FilesOfEarlierVersionsUnderFletcher32StillLoad) {
  test::TempDir tmp;
  write_raw_dataset(tmp / "m.h5", /*fletcher=*/true);
  EXPECT_TRUE(torch::equal(read_h5_tensors(tmp / "m.h5")["w"], torch::tensor({1.f, 2.f, 3.f, 4.f})));
}

// The dataset checksum is taken from the bytes handed to HDF5 and compared with the bytes read
// back: values changed through HDF5 itself (metadata intact, no marker) are refused.
TEST(Hdf5, DatasetChecksumRefusesChangedValues) {
  test::TempDir tmp;
  write_h5_tensors(tmp / "m.h5", {{"w", torch::tensor({1.f, 2.f, 3.f, 4.f})}}, {});
  EXPECT_NO_THROW(read_h5_tensors(tmp / "m.h5"));
  hid_t file = H5Fopen((tmp / "m.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t ds = H5Dopen2(file, "w", H5P_DEFAULT);
  float v[4] = {1, 2, 3, 5};
  H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
  H5Dclose(ds);
  H5Fclose(file);
  std::string e = corrupt_message([&] { read_h5_tensors(tmp / "m.h5"); });
  EXPECT_NE(e.find("dataset 'w' failed its checksum"), std::string::npos) << e;
}

// A range of a tensor (a ZeRO 3 shard) is read in the 1 MiB blocks that cover it, each checked
// against the dataset's block hashes: ranges match the whole tensor's in every dtype, a changed
// value is refused by the ranges that cover it and only by those, and block hashes that do not
// fold to the dataset's checksum are refused. Sampled elements are read in place.
TEST(Hdf5, RangesAreReadAndCheckedBlockByBlock) {
  test::TempDir tmp;
  torch::manual_seed(5);
  auto w = torch::randn({1024, 1100});  // 4.3 MiB: five blocks
  auto h = torch::randn({3, 700000}).to(torch::kBFloat16);
  auto small = torch::randn({7});  // one block: no block hashes, read whole
  write_h5_tensors(tmp / "m.h5", {{"w", w}, {"h", h}, {"small", small}}, {});
  const int64_t per_block = int64_t(kHashBlockBytes / 4);
  {
    H5Reader r(tmp / "m.h5");
    for (auto [first, count] : std::vector<std::pair<int64_t, int64_t>>{
             {0, 10}, {per_block - 3, 6}, {2 * per_block, per_block}, {w.numel() - 5, 5}, {0, w.numel()}, {17, 0}})
      EXPECT_TRUE(torch::equal(r.read_range("w", first, count), w.reshape(-1).narrow(0, first, count)))
          << first << " + " << count;
    EXPECT_TRUE(torch::equal(r.read_range("h", 1000001, 500000), h.reshape(-1).narrow(0, 1000001, 500000)));
    EXPECT_TRUE(torch::equal(r.read_range("small", 2, 3), small.narrow(0, 2, 3)));
    std::vector<int64_t> index = {0, 5, per_block, w.numel() - 1};
    EXPECT_TRUE(torch::equal(r.read_elements("w", index), w.reshape(-1).index_select(0, torch::tensor(index))));
  }
  // One value of the fourth block changed through HDF5 (metadata intact).
  hid_t file = H5Fopen((tmp / "m.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t ds = H5Dopen2(file, "w", H5P_DEFAULT);
  auto changed = w.clone();
  changed.reshape(-1)[3 * per_block + 9] = 7.f;
  H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, changed.data_ptr());
  H5Dclose(ds);
  H5Fclose(file);
  {
    H5Reader r(tmp / "m.h5");
    EXPECT_TRUE(torch::equal(r.read_range("w", 0, 2 * per_block), w.reshape(-1).narrow(0, 0, 2 * per_block)));
    std::string e = corrupt_message([&] { r.read_range("w", 3 * per_block - 1, 2); });
    EXPECT_NE(e.find("dataset 'w' failed its checksum"), std::string::npos) << e;
    e = corrupt_message([&] { r.read("w"); });
    EXPECT_NE(e.find("dataset 'w' failed its checksum"), std::string::npos) << e;
  }
  // Block hashes edited to match the changed bytes no longer fold to the dataset's checksum.
  file = H5Fopen((tmp / "m.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ds = H5Dopen2(file, "w", H5P_DEFAULT);
  auto blocks = block_hashes(changed.data_ptr(), size_t(changed.numel()) * 4);
  hid_t attr = H5Aopen(ds, "hash64b_blocks", H5P_DEFAULT);
  H5Awrite(attr, H5T_NATIVE_UINT64, blocks.data());
  H5Aclose(attr);
  H5Dclose(ds);
  H5Fclose(file);
  std::string e = corrupt_message([&] { H5Reader(tmp / "m.h5").read_range("w", 3 * per_block, 1); });
  EXPECT_NE(e.find("do not fold to its checksum"), std::string::npos) << e;
}

// In a checkpoint directory the marker's checksum covers every byte outside the tensor data
// (refused before libhdf5 parses the file) and each dataset's checksum its data: every flipped
// byte is refused, wherever it is.
TEST(Hdf5, EveryFlippedByteOfAPublishedFileIsRefused) {
  test::TempDir tmp;
  const std::string dir = tmp / "ckpt", h5 = dir + "/model.h5";
  write_checkpoint_dir(dir, {{"model.h5", {sample(), {{"model_config", json{{"a", 1}}}}}}}, {}, {});
  json marker = json::parse(test::slurp(dir + "/COMPLETE"));
  ASSERT_TRUE(marker["files"]["model.h5"].contains("meta64")) << marker.dump();
  ASSERT_EQ(marker["files"]["model.h5"]["data"].size(), sample().size());
  EXPECT_NO_THROW(read_h5_tensors(h5));
  const std::string full = test::slurp(h5);
  const auto written = fs::last_write_time(h5);
  int refused_by_marker = 0, tried = 0;
  for (size_t pos = 0; pos < full.size(); pos += full.size() / 211 + 1) {
    std::string bad = full;
    bad[pos] = char(bad[pos] ^ 0x04);
    test::spit(h5, bad);
    fs::last_write_time(h5, written + std::chrono::seconds(++tried));  // a new version: checked again
    std::string e = corrupt_message([&] { read_h5_tensors(h5); });
    EXPECT_NE(e, "(accepted)") << "flip at " << pos;
    refused_by_marker += e.find("its checksum differs from the one") != std::string::npos;
  }
  EXPECT_GT(refused_by_marker, 0);
  EXPECT_LT(refused_by_marker, tried);  // the data bytes are left to the datasets' checksums
}

// Markers written by earlier versions record hash_file's checksum under "hash64": still checked.
TEST(Hdf5, MarkersOfEarlierVersionsAreStillChecked) {
  test::TempDir tmp;
  const std::string dir = tmp / "ckpt";
  write_checkpoint_dir(dir, {{"model.h5", {sample(), {}}}}, {}, {});
  const std::string h5 = dir + "/model.h5";
  json marker = json::parse(test::slurp(dir + "/COMPLETE"));
  ASSERT_TRUE(marker["files"]["model.h5"].contains("meta64"));
  marker["files"]["model.h5"].erase("meta64");
  marker["files"]["model.h5"].erase("data");
  marker["files"]["model.h5"]["hash64"] = hex64(hash_file(h5));
  test::spit(dir + "/COMPLETE", marker.dump());
  EXPECT_TRUE(verify_written_file(h5));
  marker["files"]["model.h5"]["hash64"] = hex64(hash_file(h5) ^ 1);
  test::spit(dir + "/COMPLETE", marker.dump());
  fs::last_write_time(h5, fs::last_write_time(h5) + std::chrono::seconds(1));  // a new version for the cache
  std::string e = corrupt_message([&] { verify_written_file(h5); });
  EXPECT_NE(e.find("its checksum differs"), std::string::npos) << e;
}

// hash_blocks: the same value on any thread count, for a file read in pieces, and a different
// one for any flipped bit.
TEST(Hash, BlockChecksumIsIndependentOfThreadsAndReadsAndSeesEveryBit) {
  test::TempDir tmp;
  std::string bytes(size_t(17) << 20, '\0');  // more than one 16 MiB read, a partial last block
  bytes.resize(bytes.size() + 12345);
  uint64_t x = 88172645463325252ULL;
  for (auto& c : bytes) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = char(x);
  }
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const uint64_t one = hash_blocks(bytes.data(), bytes.size());
  at::set_num_threads(2);
  EXPECT_EQ(hash_blocks(bytes.data(), bytes.size()), one);
  at::set_num_threads(threads);
  test::spit(tmp / "f", bytes);
  EXPECT_EQ(hash_file_blocks(tmp / "f"), one);
  for (size_t pos : {size_t(0), size_t(1) << 20, bytes.size() / 2 + 3, bytes.size() - 1}) {
    std::string bad = bytes;
    bad[pos] = char(bad[pos] ^ 0x10);
    EXPECT_NE(hash_blocks(bad.data(), bad.size()), one) << pos;
  }
  EXPECT_NE(hash_blocks(bytes.data(), bytes.size() - 1), one);
}

TEST(Hdf5, StringAttributesFromOtherToolsReadWhole) {
  // NULLPAD (h5py's fixed-length strings) and variable-length strings (h5py's str default).
  test::TempDir tmp;
  write_h5_tensors(tmp / "m.h5", {{"w", torch::ones({2})}}, {{"note", "x"}});
  set_string_attr(tmp / "m.h5", "w", "dtype", "float32", H5T_STR_NULLPAD);
  set_string_attr(tmp / "m.h5", "", "note", "\"padded\"", H5T_STR_NULLPAD);
  std::map<std::string, json> attrs;
  auto got = read_h5_tensors(tmp / "m.h5", {}, &attrs);
  EXPECT_TRUE(torch::equal(got["w"], torch::ones({2})));
  EXPECT_EQ(attrs["note"], "padded");
  set_string_attr(tmp / "m.h5", "w", "dtype", "float32", H5T_STR_NULLTERM, /*variable=*/true);
  EXPECT_TRUE(torch::equal(read_h5_tensors(tmp / "m.h5")["w"], torch::ones({2})));
}

TEST(ModelIo, NonFiniteAndNonFloatWeightsAreRefusedWithTheirName) {
  test::TempDir tmp;
  json j = {{"model_type", "llama"},   {"vocab_size", 30},       {"hidden_size", 16},
            {"intermediate_size", 32}, {"num_hidden_layers", 1}, {"num_attention_heads", 2}};
  CausalLM model(ModelConfig::from_json(j, "cfg"));
  model->init_weights(1);
  {
    torch::NoGradGuard ng;
    for (auto& [name, w] : model->named_weights())
      if (name == "model.embed_tokens.weight") w[3][1] = std::nanf("");
  }
  for (auto format : {CheckpointFormat::kNative, CheckpointFormat::kHf}) {
    const std::string dir = tmp / (format_name(format) + "-nan");
    save_model(model, dir, format, json::object(), "");
    std::string e = corrupt_message([&] { load_model(dir); });
    EXPECT_NE(e.find("tensor 'model.embed_tokens.weight' holds NaN or Inf values"), std::string::npos) << e;
    e = corrupt_message([&] { TensorReader(dir).read("model.embed_tokens.weight"); });
    EXPECT_NE(e.find("holds NaN or Inf"), std::string::npos) << e;
  }
}

// The finite check scans the bits of float32, bfloat16 and float16 without a temporary: NaN,
// +Inf and -Inf anywhere (first, middle, last element) are found; the largest finite values pass.
TEST(ModelIo, FiniteCheckFindsNanAndInfAnywhereInEveryFloatDtype) {
  for (auto dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf, torch::kDouble}) {
    auto ok = torch::randn({1001}).to(dtype);
    ok[7] = dtype == torch::kHalf ? 65504.0 : 3.0e38;
    ok[8] = dtype == torch::kHalf ? -65504.0 : -3.0e38;
    EXPECT_NO_THROW(require_finite("x", "t", ok)) << dtype;
    for (int64_t at : {int64_t(0), int64_t(500), int64_t(1000)})
      for (double bad : {double(NAN), double(INFINITY), -double(INFINITY)}) {
        auto t = ok.clone();
        t[at] = bad;
        EXPECT_THROW(require_finite("x", "t", t), CorruptError) << dtype << " at " << at << " " << bad;
      }
  }
}

TEST(ModelIo, NativeAndHfRoundTripThroughTheModel) {
  test::TempDir tmp;
  json j = {{"model_type", "qwen2"},  {"vocab_size", 40},         {"hidden_size", 16},       {"intermediate_size", 32},
            {"num_hidden_layers", 1}, {"num_attention_heads", 2}, {"num_key_value_heads", 1}};
  CausalLM m(ModelConfig::from_json(j, "cfg"));
  m->init_weights(5);
  save_model(m, tmp / "native", CheckpointFormat::kNative, json{{"why", "test"}}, "");
  save_model(m, tmp / "hf", CheckpointFormat::kHf, json::object(), "", 1000);
  for (auto dir : {tmp / "native", tmp / "hf"}) {
    CausalLM back = load_model(dir);
    auto a = m->named_weights(), b = back->named_weights();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  }
  // Read as bfloat16: a dtype other than the stored one goes through read + convert.
  for (auto dir : {tmp / "native", tmp / "hf"}) {
    CausalLM half = load_model(dir, "bfloat16");
    auto a = m->named_weights(), b = half->named_weights();
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_TRUE(torch::equal(a[i].second.to(torch::kBFloat16), b[i].second)) << a[i].first;
  }
  EXPECT_EQ(read_run_config(tmp / "native")["why"], "test");
  // A checkpoint for another shape is refused with the tensor named.
  json k = j;
  k["hidden_size"] = 32;
  test::spit(tmp / "hf/config.json", k.dump());
  try {
    load_model(tmp / "hf");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("has shape"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lethe
