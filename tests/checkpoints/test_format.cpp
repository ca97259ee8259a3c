// The checkpoint-format seam: one enum, one writer per format, one directory protocol.
#include <gtest/gtest.h>

#include <filesystem>

#include "checkpoints/format.h"
#include "checkpoints/model_io.h"
#include "checkpoints/tensor_reader.h"
#include "common/error.h"
#include "common/fs.h"
#include "tests/test_util.h"
#include "unlearn/run.h"
#include "dist/sharded_checkpoint.h"

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

TEST(Format, PublishedDirectoriesAppearCompleteOrNotAtAll) {
  test::TempDir tmp;
  // The marker is inside before the rename: no moment where `out` exists without it.
  const std::string out = tmp / "out";
  write_dir_atomically(
      out + "/",  // a trailing slash names the same directory
      [&](const std::string& t) {
        EXPECT_EQ(fs::path(t).parent_path(), tmp.path);
        write_file_atomic(t + "/a", "a");
      },
      "out");
  EXPECT_TRUE(is_complete_dir(out));
  EXPECT_EQ(read_text_file(out + "/a"), "a");
  // A killed earlier writer's temporary (a dead pid on this host) is cleaned up by the next
  // write of the same output; a live process's temporary and foreign files are left alone.
  const std::string dead = (tmp.path / (".next.tmp." + host_name() + ".999999999")).string();
  const std::string live = (tmp.path / (".next.tmp." + host_name() + ".1")).string();  // pid 1 is alive
  const std::string foreign = (tmp.path / ".next.tmp.other-host.5").string();
  for (auto& d : {dead, live, foreign}) fs::create_directories(d);
  write_dir_atomically(
      tmp / "next", [](const std::string& t) { write_file_atomic(t + "/b", "b"); }, "out");
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(foreign));
  // Removal takes the marker away first.
  remove_dir_safely(out);
  EXPECT_FALSE(fs::exists(out));
}

TEST(Format, OutputsMayNotOverlapEachOtherOrAnInput) {
  test::TempDir tmp;
  EXPECT_TRUE(path_within(tmp / "a/b", tmp / "a"));
  EXPECT_TRUE(path_within(tmp / "a/", tmp / "a"));
  EXPECT_FALSE(path_within(tmp / "ab", tmp / "a"));
  RunSpec run;
  run.model.dir = tmp / "model";
  OutputOptions out;
  out.out = tmp / "out";
  run.train.checkpoint_dir = out.out;
  auto message = [&] {
    try {
      check_output_paths(run, out);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message().find("must be separate directories"), std::string::npos);
  run.train.checkpoint_dir = tmp / "model/ckpt";
  EXPECT_NE(message().find("--checkpoint-dir '" + run.train.checkpoint_dir + "' lies inside the input"),
            std::string::npos);
  run.train.checkpoint_dir = tmp / "ckpt";
  out.out = tmp / "model/out";
  EXPECT_NE(message().find("--out '" + out.out + "' lies inside the input"), std::string::npos);
  out.out = tmp / "out";
  EXPECT_EQ(message(), "");
}

TEST(Format, AnInterruptedCheckpointIsRedoneAndTheOldOnesGoMarkerFirst) {
  test::TempDir tmp;
  auto comm = make_self_communicator();
  const std::string root = tmp / "ckpt";
  NamedTensors shard = {{"w", torch::ones({3})}};
  save_sharded_checkpoint(root, 1, *comm, shard, json::object(), 2);
  // step 2 killed after its rename but before its marker (what older versions could leave):
  // the newest complete one is step 1, and saving step 2 again replaces the leftover.
  const std::string step2 = (fs::path(latest_complete_checkpoint(root)).parent_path() / "step-00000002").string();
  fs::create_directories(step2);
  write_file_atomic(step2 + "/rank-00000.h5", "partial");
  EXPECT_NE(latest_complete_checkpoint(root), step2);
  save_sharded_checkpoint(root, 2, *comm, shard, json::object(), 2);
  EXPECT_EQ(fs::path(latest_complete_checkpoint(root)).filename(), fs::path(step2).filename());
  EXPECT_TRUE(
      torch::equal(load_sharded_checkpoint(latest_complete_checkpoint(root)).shards[0]->read("w"), torch::ones({3})));
  EXPECT_THROW(save_sharded_checkpoint(root, 2, *comm, shard, json::object(), 2), InputError);  // complete: kept
}
