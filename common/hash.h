// FNV-1a (64 bit): fingerprints of small texts (chat templates, tensor names) and digests of
// what defines a training run (checkpoint manifests). Not cryptographic: it detects mix-ups
// and edits, not an adversary who forges a collision.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lethe {

constexpr uint64_t kFnvOffset = 1469598103934665603ULL;
uint64_t fnv1a(const void* data, size_t n, uint64_t h = kFnvOffset);
inline uint64_t fnv1a(const std::string& s, uint64_t h = kFnvOffset) { return fnv1a(s.data(), s.size(), h); }
std::string hex64(uint64_t v);  // 16 lower-case hex digits
// A file's bytes, 8 at a time (FNV-style, several GB/s): the checksum a completion marker
// records for the files whose parser must never see damaged bytes (HDF5). InputError when
// the file cannot be read.
uint64_t hash_file(const std::string& path);
// The block checksum of native checkpoints (dataset attributes and completion markers): the
// bytes in 1 MiB blocks, each hashed on four independent 8-byte lanes (FNV-style multiply and
// shift, as hash_file), the block hashes folded in order with the length. Blocks are hashed in
// parallel on LibTorch's intra-op threads; the value does not depend on the thread count.
// Several times hash_file's speed (one dependent chain), so it can run on the bytes as they are
// written and read.
uint64_t hash_blocks(const void* data, size_t n);
// The pieces of hash_blocks: the hash of each kHashBlockBytes block of data[0, n) (the last one
// shorter), and their fold: hash_blocks(p, n) == fold_block_hashes(block_hashes(p, n), n). A
// reader that has the list checks any run of whole blocks alone (a range of a tensor).
constexpr size_t kHashBlockBytes = size_t(1) << 20;
std::vector<uint64_t> block_hashes(const void* data, size_t n);
uint64_t fold_block_hashes(const std::vector<uint64_t>& hashes, uint64_t n);
// One block's hash (n <= kHashBlockBytes): block_hashes(p, n)[k] is hash_block of the k-th block.
uint64_t hash_block(const void* data, size_t n);
// hash_blocks of a file's bytes (read in 16 MiB pieces). InputError when unreadable.
uint64_t hash_file_blocks(const std::string& path);

}  // namespace lethe
