// safetensors round trips, and untrusted input: every malformed file is rejected with a
// CorruptError naming the file and the problem, never a crash.
#include "checkpoints/format.h"
#include "checkpoints/safetensors.h"
#include "common/error.h"
#include "tests/test_util.h"

namespace lethe {
namespace {

NamedTensors sample() {
  torch::manual_seed(0);
  return {{"a.weight", torch::randn({3, 5})},
          {"b.bias", torch::randn({7}).to(torch::kBFloat16)},
          {"c.half", torch::randn({2, 2}).to(torch::kHalf)},
          {"d.ids", torch::arange(6, torch::kLong).view({2, 3})},
          {"e.empty", torch::zeros({0, 4})}};
}

void expect_equal(const TensorMap& got, const NamedTensors& want) {
  ASSERT_EQ(got.size(), want.size());
  for (auto& [n, t] : want) {
    ASSERT_TRUE(got.count(n)) << n;
    EXPECT_EQ(got.at(n).scalar_type(), t.scalar_type()) << n;
    EXPECT_TRUE(torch::equal(got.at(n), t)) << n;
  }
}

TEST(Safetensors, RoundTripSingleFile) {
  test::TempDir tmp;
  write_safetensors(tmp / "m.safetensors", sample(), {{"format", "pt"}});
  std::map<std::string, std::string> meta;
  read_safetensors_header(tmp / "m.safetensors", nullptr, &meta);
  EXPECT_EQ(meta["format"], "pt");
  expect_equal(read_safetensors(tmp / "m.safetensors"), sample());
}

TEST(Safetensors, RoundTripShardedWithIndex) {
  test::TempDir tmp;
  write_model_files(*make_checkpoint_writer(CheckpointFormat::kHf), tmp.path.string(), sample(), json::object(),
                    json::object(), {}, 40);  // small limit: several shards
  EXPECT_TRUE(fs::exists(tmp / "model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(tmp / "model-00001-of-00004.safetensors") ||
              fs::exists(tmp / "model-00001-of-00003.safetensors"));
  expect_equal(read_hf_weights(tmp.path.string()), sample());
}

// Writes a file with the given header text and data size.
std::string craft(const test::TempDir& tmp, const std::string& header, size_t data_bytes, uint64_t claimed_len = 0) {
  std::string f;
  uint64_t n = claimed_len ? claimed_len : header.size();
  for (int i = 0; i < 8; ++i) f += char((n >> (8 * i)) & 0xff);
  f += header + std::string(data_bytes, '\0');
  std::string path = tmp / "bad.safetensors";
  test::spit(path, f);
  return path;
}

void expect_corrupt(const std::string& path, const std::string& needle) {
  try {
    read_safetensors(path);
    FAIL() << "accepted a corrupt file (" << needle << ")";
  } catch (const CorruptError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(Safetensors, RejectsMalformedFiles) {
  test::TempDir tmp;
  expect_corrupt(craft(tmp, "", 0, 0).substr(0), "");  // zero-length header JSON
  test::spit(tmp / "short.safetensors", "abc");
  expect_corrupt(tmp / "short.safetensors", "shorter than");
  expect_corrupt(craft(tmp, "{}", 0, 1ull << 40), "exceeds");
  expect_corrupt(craft(tmp, "{}", 0, 500), "truncated");
  expect_corrupt(craft(tmp, "{\"a\": [1,", 0), "malformed");
  expect_corrupt(craft(tmp, R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4e999]}})", 4), "malformed");
  expect_corrupt(craft(tmp, R"({"a":{"dtype":"Q8","shape":[1],"data_offsets":[0,1]}})", 1), "unknown dtype");
  expect_corrupt(craft(tmp, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4), "outside");
  expect_corrupt(craft(tmp, R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "does not match");
  expect_corrupt(craft(tmp, R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "negative");
  expect_corrupt(
      craft(
          tmp,
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
          12),
      "overlap");
  expect_corrupt(craft(tmp, R"({"a":{"dtype":"F32","shape":[2]}})", 8), "lacks");
  // As strict as the reference library: a name twice, a hole between tensors, bytes after the
  // last one.
  expect_corrupt(
      craft(
          tmp,
          R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
          8),
      "names 'a' twice");
  expect_corrupt(
      craft(
          tmp,
          R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
          12),
      "a hole of 4 bytes before tensor 'b'");
  expect_corrupt(craft(tmp, R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 6), "2 bytes after");
  expect_corrupt(craft(tmp, R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "a hole of 4 bytes");
  expect_corrupt(craft(tmp, R"([1,2])", 8), "not a JSON object");
}

TEST(Safetensors, TruncatedRealFileIsRejected) {
  test::TempDir tmp;
  write_safetensors(tmp / "m.safetensors", sample());
  std::string full = test::slurp(tmp / "m.safetensors");
  for (size_t cut : {size_t(4), size_t(20), full.size() / 2, full.size() - 1}) {
    test::spit(tmp / "t.safetensors", full.substr(0, cut));
    EXPECT_THROW(read_safetensors(tmp / "t.safetensors"), CorruptError) << "cut at " << cut;
  }
}

TEST(Safetensors, BitFlippedHeaderIsRejectedOrHarmless) {
  // safetensors has no checksum: a flipped data bit changes a value silently (that is why the
  // native format uses Fletcher32). A flipped header bit must be refused with an InputError, or
  // be harmless: the official library loads the same file to the same names, dtypes, shapes
  // and values as lethe did.
  LETHE_REQUIRE_REFERENCE("safetensors, torch");
  test::TempDir tmp;
  write_safetensors(tmp / "m.safetensors", sample());
  std::string full = test::slurp(tmp / "m.safetensors");
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | uint8_t(full[size_t(i)]);
  std::map<std::string, TensorMap> accepted;
  int refused = 0, tried = 0;
  for (size_t pos = 0; pos < 8 + hlen; pos += 3, ++tried) {
    std::string bad = full;
    bad[pos] = char(bad[pos] ^ 0x10);
    std::string path = tmp / ("f" + std::to_string(pos) + ".safetensors");
    test::spit(path, bad);
    try {
      accepted[path] = read_safetensors(path);
    } catch (const InputError&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, tried / 2) << "most header flips break the JSON, the offsets or the dtype";
  std::string files;
  for (auto& [path, _] : accepted) files += " " + path;
  if (!accepted.empty()) {
    ASSERT_EQ(test::run_reference("safetensors_reload.py", files), 0);
  }
  for (auto& [path, ours] : accepted) {
    ASSERT_TRUE(fs::exists(path + ".ref"))
        << "lethe accepted " << path << " but safetensors refused it: " << test::slurp(path + ".err");
    TensorMap theirs = read_safetensors(path + ".ref");
    ASSERT_EQ(ours.size(), theirs.size()) << path;
    for (auto& [name, t] : theirs) {
      ASSERT_TRUE(ours.count(name)) << path << ": safetensors reads '" << name << "', lethe does not";
      EXPECT_EQ(ours.at(name).scalar_type(), t.scalar_type()) << path << " " << name;
      EXPECT_TRUE(ours.at(name).sizes() == t.sizes() && torch::equal(ours.at(name), t)) << path << " " << name;
    }
  }
  std::cout << "[ reference ] safetensors header flips: " << tried << " tried, " << refused << " refused, "
            << accepted.size() << " accepted and read identically by the safetensors library\n";
}

TEST(Safetensors, ShardIndexCannotEscapeTheDirectory) {
  test::TempDir tmp;
  test::spit(tmp / "model.safetensors.index.json", R"({"weight_map": {"a": "../etc/passwd"}})");
  EXPECT_THROW(read_hf_weights(tmp.path.string()), CorruptError);
}

}  // namespace
}  // namespace lethe
