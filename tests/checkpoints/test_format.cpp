// The checkpoint-format seam: one enum, one writer per format, one directory protocol.
#include <gtest/gtest.h>

#include <filesystem>

#include "checkpoints/format.h"
#include "checkpoints/model_io.h"
#include "checkpoints/tensor_reader.h"
#include "common/error.h"
#include "common/fs.h"
#include "tests/test_util.h"

using namespace lethe;
namespace fs = std::filesystem;

namespace {
NamedTensors tensors() {
  return {{"a.weight", torch::arange(12, torch::kFloat).view({3, 4})},
          {"b.weight", torch::ones({5}, torch::kBFloat16)}};
}
}  // namespace

TEST(Format, NamesRoundTripAndUnknownIsRefused) {
  for (auto& n : checkpoint_format_names()) EXPECT_EQ(format_name(parse_checkpoint_format(n, "--format")), n);
  try {
    parse_checkpoint_format("onnx", "--to");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--to"), std::string::npos);
  }
}

TEST(Format, EveryWriterWritesWhatTheReaderReads) {
  test::TempDir tmp;
  for (auto f : {CheckpointFormat::kNative, CheckpointFormat::kHf})
    for (uint64_t shard : {uint64_t(0), uint64_t(16)}) {
      const std::string dir = tmp / (format_name(f) + std::to_string(shard));
      auto w = make_checkpoint_writer(f);
      write_dir_atomically(
          dir,
          [&](const std::string& t) {
            write_model_files(*w, t, tensors(), json{{"model_type", "llama"}}, json{{"why", "test"}}, {}, shard);
          },
          "test output");
      EXPECT_TRUE(is_complete_dir(dir));
      EXPECT_EQ(detect_format(dir), f);
      EXPECT_EQ(fs::exists(fs::path(dir) / w->index_name()), shard > 0);
      TensorReader r(dir);
      EXPECT_EQ(r.format(), f);
      for (auto& [name, t] : tensors()) EXPECT_TRUE(torch::equal(r.read(name), t)) << name;
    }
}

TEST(Format, DirectoryProtocolNeverOverwritesAndLeavesNothingOnFailure) {
  test::TempDir tmp;
  const std::string dir = tmp / "out";
  fs::create_directories(dir);
  write_file_atomic(dir + "/keep", "keep");
  EXPECT_THROW(write_dir_atomically(
                   dir, [](const std::string&) {}, "out"),
               InputError);
  EXPECT_EQ(read_text_file(dir + "/keep"), "keep");
  const std::string other = tmp / "other";
  EXPECT_THROW(write_dir_atomically(
                   other, [](const std::string&) { throw InputError("boom"); }, "out"),
               InputError);
  EXPECT_FALSE(fs::exists(other));
  size_t left = 0;
  for (auto& e : fs::directory_iterator(tmp.path))
    left += e.path().filename().string().find("other") != std::string::npos;
  EXPECT_EQ(left, 0u);  // the temporary is gone too
  EXPECT_THROW(require_complete(dir), CorruptError);
}
