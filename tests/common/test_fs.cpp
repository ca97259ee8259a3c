// SequentialFile (common/fs.h): the bytes appended, in order, whatever the pieces' sizes against
// its 16 MiB buffers and O_DIRECT's 4 KiB blocks, through O_DIRECT (ext4 takes it) and through
// the page cache; and the tensor-by-tensor shard writers built on it.
#include <sys/vfs.h>
#include <unistd.h>

#include <fcntl.h>

#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <ATen/Parallel.h>

#include "checkpoints/format.h"
#include "checkpoints/safetensors.h"
#include "checkpoints/tensor_reader.h"
#include "common/error.h"
#include "common/fs.h"
#include "tests/test_util.h"

namespace lethe {
namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// want_direct: 1 or 0, or -1 where either is right (a file system that may or may not take O_DIRECT).
void check_sequential_file(const std::string& path, bool allow_direct, int want_direct) {
  std::string want;
  uint64_t x = 12345;
  // Pieces below, at and above the buffer and block sizes, ending off a block boundary.
  const std::vector<size_t> sizes = {8, 3, 4096, 1, (size_t(16) << 20) - 4108, 5, (size_t(33) << 20) + 7, 0, 4095};
  {
    SequentialFile f(path, allow_direct);
    if (want_direct >= 0) {
      EXPECT_EQ(f.direct(), want_direct == 1) << path;
    }
    for (size_t n : sizes) {
      std::string piece(n, '\0');
      for (auto& c : piece) c = char((x = x * 6364136223846793005ULL + 1442695040888963407ULL) >> 56);
      f.append(piece.data(), piece.size());
      want += piece;
    }
    f.close();
  }
  const std::string got = read_all(path);
  ASSERT_EQ(got.size(), want.size()) << path;
  EXPECT_TRUE(got == want) << path << ": the bytes read back differ";
}

TEST(SequentialFile, WritesTheBytesAppendedDirectAndBuffered) {
  test::TempDir tmp;
  struct statfs st;
  ASSERT_EQ(::statfs(tmp.path.c_str(), &st), 0);
  const bool ext4 = st.f_type == 0xEF53;  // these machines' disk, which takes O_DIRECT
  check_sequential_file((tmp.path / "direct.bin").string(), true, ext4 ? 1 : -1);
  check_sequential_file((tmp.path / "buffered.bin").string(), false, 0);
  EXPECT_THROW(SequentialFile((tmp.path / "no" / "such" / "dir").string()), InputError);
}

// pread_pieces: the bytes at the offset, each piece handed on once with its index and length
// (the last one shorter), on more than one thread when LibTorch has two: lethe's code is
// compiled with OpenMP, without which ATen's parallel_for runs every loop on the caller's thread.
// A file that ends early is a short read.
TEST(PreadPieces, ReadsEveryPieceOnceOnTheIntraOpThreads) {
  test::TempDir tmp;
  std::string bytes((size_t(5) << 20) + 777, '\0');
  uint64_t x = 7;
  for (auto& c : bytes) c = char((x = x * 6364136223846793005ULL + 1442695040888963407ULL) >> 56);
  test::spit(tmp / "f", bytes);
  const int fd = ::open((tmp.path / "f").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  const size_t offset = 4099, piece = size_t(1) << 20, n = bytes.size() - offset;
  std::string got(n, '\0');
  std::mutex m;
  std::map<int64_t, size_t> seen;
  std::set<std::thread::id> on;
  EXPECT_TRUE(pread_pieces(fd, got.data(), n, offset, piece, [&](int64_t i, const unsigned char* p, size_t len) {
    std::lock_guard<std::mutex> lock(m);
    EXPECT_EQ(p, reinterpret_cast<const unsigned char*>(got.data()) + size_t(i) * piece);
    EXPECT_TRUE(seen.emplace(i, len).second) << "piece " << i << " twice";
    on.insert(std::this_thread::get_id());
  }));
  EXPECT_TRUE(got == bytes.substr(offset));
  ASSERT_EQ(seen.size(), (n + piece - 1) / piece);
  for (auto& [i, len] : seen) EXPECT_EQ(len, std::min(piece, n - size_t(i) * piece)) << i;
  EXPECT_EQ(on.size(), 2u) << "pread_pieces ran on one thread: built without OpenMP?";
  EXPECT_FALSE(pread_pieces(fd, got.data(), n + 1, offset, piece));
  at::set_num_threads(threads);
  ::close(fd);
}

TEST(SequentialFile, ShardsWrittenTensorByTensorEqualWholeWrites) {
  test::TempDir tmp;
  torch::manual_seed(3);
  NamedTensors tensors = {
      {"a", torch::randn({300, 7})}, {"b", torch::randn({5}).to(torch::kBFloat16)}, {"c", torch::randn({1 << 20})}};
  NamedTensors layout;
  for (auto& [name, t] : tensors) layout.emplace_back(name, torch::empty(t.sizes(), t.options().device(torch::kMeta)));
  for (auto format : {CheckpointFormat::kHf, CheckpointFormat::kNative}) {
    auto w = make_checkpoint_writer(format);
    const std::string whole = (tmp.path / ("whole." + w->shard_extension())).string();
    const std::string streamed = (tmp.path / ("streamed." + w->shard_extension())).string();
    w->write_shard(whole, tensors, json::object(), json::object());
    size_t asked = 0;
    w->write_shard_streamed(
        streamed, layout,
        [&](size_t i) {
          EXPECT_EQ(i, asked++);  // in order, once each
          return tensors[i].second;
        },
        json::object(), json::object());
    EXPECT_EQ(asked, tensors.size());
    EXPECT_TRUE(read_all(whole) == read_all(streamed)) << format_name(format);
    // A value that is not what the layout says: an error, and no file.
    const std::string bad = (tmp.path / ("bad." + w->shard_extension())).string();
    EXPECT_THROW(w->write_shard_streamed(
                     bad, layout, [&](size_t i) { return i == 2 ? torch::zeros({3}) : tensors[i].second; },
                     json::object(), json::object()),
                 InternalError);
    EXPECT_FALSE(fs::exists(bad));
    for (auto& e : fs::directory_iterator(tmp.path))
      EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
  }
}

}  // namespace
}  // namespace lethe
