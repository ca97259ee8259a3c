#include "common/hash.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include <ATen/Parallel.h>
#include <fstream>
#include <vector>

#include "common/error.h"
#include "common/fs.h"

namespace lethe {

uint64_t fnv1a(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ULL;
  return h;
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

uint64_t hash_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open (" + std::strerror(errno) + ")");
  std::vector<char> buf(size_t(1) << 20);
  uint64_t h = kFnvOffset;
  uint64_t total = 0;
  while (in) {
    in.read(buf.data(), std::streamsize(buf.size()));
    const size_t n = size_t(in.gcount());
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, buf.data() + i, 8);
      h = (h ^ w) * 1099511628211ULL;
      h ^= h >> 29;
    }
    for (; i < n; ++i) h = (h ^ uint8_t(buf[i])) * 1099511628211ULL;
    total += n;
  }
  if (in.bad()) throw InputError(path + ": read failed (" + std::strerror(errno) + ")");
  return h ^ total;
}

namespace {
constexpr size_t kHashBlock = kHashBlockBytes;
constexpr uint64_t kFnvPrime = 1099511628211ULL;
}  // namespace

uint64_t hash_block(const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h[4] = {kFnvOffset, kFnvOffset ^ 1, kFnvOffset ^ 2, kFnvOffset ^ 3};
  size_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; ++k) {
      uint64_t w;
      std::memcpy(&w, p + i + 8 * k, 8);
      h[k] = (h[k] ^ w) * kFnvPrime;
      h[k] ^= h[k] >> 29;
    }
  uint64_t out = ((h[0] * kFnvPrime ^ h[1]) * kFnvPrime ^ h[2]) * kFnvPrime ^ h[3];
  for (; i < n; ++i) out = (out ^ p[i]) * kFnvPrime;
  return out;
}

namespace {

// Appends the hashes of the 1 MiB blocks of p[0, n) to `out` (in parallel).
void hash_block_range(const unsigned char* p, size_t n, std::vector<uint64_t>* out) {
  const int64_t blocks = int64_t((n + kHashBlock - 1) / kHashBlock);
  const size_t first = out->size();
  out->resize(first + size_t(blocks));
  uint64_t* h = out->data() + first;
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const size_t off = size_t(b) * kHashBlock;
      h[b] = hash_block(p + off, std::min(kHashBlock, n - off));
    }
  });
}

uint64_t fold_blocks(const std::vector<uint64_t>& h, uint64_t n) {
  uint64_t out = kFnvOffset;
  for (uint64_t v : h) {
    out = (out ^ v) * kFnvPrime;
    out ^= out >> 29;
  }
  return out ^ n;
}
}  // namespace

uint64_t hash_blocks(const void* data, size_t n) { return fold_blocks(block_hashes(data, n), n); }

std::vector<uint64_t> block_hashes(const void* data, size_t n) {
  std::vector<uint64_t> h;
  hash_block_range(static_cast<const unsigned char*>(data), n, &h);
  return h;
}

uint64_t fold_block_hashes(const std::vector<uint64_t>& hashes, uint64_t n) { return fold_blocks(hashes, n); }

uint64_t hash_file_blocks(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(path + ": cannot open (" + std::strerror(errno) + ")");
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  // Whole blocks per read (16 MiB), so a block never spans two reads.
  std::vector<unsigned char> buf(16 * kHashBlock);
  std::vector<uint64_t> h;
  uint64_t total = 0;
  for (;;) {
    const ssize_t r = pread_full(fd, buf.data(), buf.size(), total);
    if (r < 0) {
      const int e = errno;
      ::close(fd);
      throw InputError(path + ": read failed (" + std::strerror(e) + ")");
    }
    const size_t got = size_t(r);
    hash_block_range(buf.data(), got, &h);
    total += got;
    if (got < buf.size()) break;
  }
  ::close(fd);
  return fold_blocks(h, total);
}

}  // namespace lethe
