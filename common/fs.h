// File-system helpers. Nothing here overwrites existing user data: writers go through a
// temporary name, fsync and rename, and directory creation refuses an existing output.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace lethe {

std::string read_text_file(const std::string& path);  // InputError naming the path on failure
void write_file_atomic(const std::string& path, const std::string& content);
// `write` fills a temporary sibling of `path` (any writer: text, safetensors, HDF5); it is then
// fsynced and renamed over `path`, so `path` either does not exist or is complete.
void write_file_via_temp(const std::string& path, const std::function<void(const std::string& tmp)>& write);
void fsync_path(const std::string& path);  // file or directory
// All n bytes to fd (short writes retried); InputError naming `path` (ENOSPC, EIO, ...).
void write_all(int fd, const void* data, size_t n, const std::string& path);
// A new file written front to back, the way checkpoint shards are: through O_DIRECT where the
// file system takes it (the page cache's copy of every byte costs more than the disk's write on
// these machines: 2.2 GB with dd, 1.3-1.4 s direct against 5.7-9.4 s buffered), from two aligned
// 16 MiB buffers: one is filled by append() while a helper thread writes the other, so the disk
// works while the caller computes what comes next. Elsewhere (tmpfs, file systems that refuse
// O_DIRECT) the same buffers go through the page cache. close() writes the tail, sets the size
// and closes; it does not fsync (write_file_via_temp does). Errors name the path.
class SequentialFile {
 public:
  // Created or truncated; `allow_direct` false: the page cache whatever the file system.
  explicit SequentialFile(const std::string& path, bool allow_direct = true);
  ~SequentialFile();  // an unclosed file is closed, errors ignored
  SequentialFile(const SequentialFile&) = delete;
  SequentialFile& operator=(const SequentialFile&) = delete;
  void append(const void* data, size_t n);
  void close();
  bool direct() const { return direct_; }

 private:
  void flush_full();  // hands the filled buffer to the helper thread
  void wait_pending();
  void write_at(const char* data, size_t n, uint64_t offset);
  std::string path_;
  int fd_ = -1;
  bool direct_ = false;
  char* bufs_[2] = {nullptr, nullptr};
  int cur_ = 0;
  size_t used_ = 0;
  uint64_t offset_ = 0;  // file offset of the current buffer
  struct Pending;
  Pending* pending_ = nullptr;
};

// Starts the disk writing fd's dirty pages now, without waiting for it (sync_file_range WRITE).
// A file written piece by piece, each piece computed after the last was written, then reaches
// the disk while the next piece is computed, and its fsync waits only for the tail.
void start_writeback(int fd);
// pread until `n` bytes or the end of the file: the bytes read, or -1 (errno set) on an error.
ssize_t pread_full(int fd, void* buf, size_t n, uint64_t offset);
// pread_full of n bytes at `offset` into buf, in `piece`-byte pieces read on LibTorch's intra-op
// threads: the copies out of the page cache and the faults of the destination's fresh pages
// are most of a load's time, and they scale with threads. on_piece(index, data, length) runs on
// the thread that read each piece, right after it (the bytes still in its cache). False when
// the file ends or fails before n bytes.
bool pread_pieces(int fd, void* buf, size_t n, uint64_t offset, size_t piece,
                  const std::function<void(int64_t, const unsigned char*, size_t)>& on_piece = {});
void fsync_parent_dir(const std::string& path);
bool path_exists(const std::string& path);
// Refuses (InputError) when `dir` exists and is not empty; creates it (and parents) otherwise.
void create_output_dir(const std::string& dir, const std::string& what);
// A sibling temporary name for `path`, unique per host and process: ".NAME.tmp.HOST.PID".
std::string temp_sibling(const std::string& path);
// Removes the temporary siblings of `path` that this host's processes left and that no live
// process owns (they were killed mid-write); others' files are never touched.
void remove_stale_temp_siblings(const std::string& path);
// Removes every such temporary of a dead local writer anywhere below `dir`.
void remove_stale_temps_within(const std::string& dir);
// "dir/" -> "dir" (a trailing slash would make the temporary sibling a child).
std::string without_trailing_slash(const std::string& path);
std::string host_name();
// `inner` is `outer` or lies below it (paths compared after resolving what exists of them).
bool path_within(const std::string& inner, const std::string& outer);
void copy_file_checked(const std::string& from, const std::string& to);

// The one protocol for output directories (models in either format, resumable training
// checkpoints, the merge output): files are built in a directory that is not final yet (a
// temporary sibling, or an output whose completion marker is missing). publish_dir writes the
// completion marker into a temporary sibling, fsyncs every file and the directory, renames it
// to `dir` and fsyncs the parent, so `dir` appears complete or not at all; an output built in
// place gets its marker last. A directory without the marker is never taken for a finished one.
constexpr const char* kCompleteMarker = "COMPLETE";
void publish_dir(const std::string& built, const std::string& dir);
// Refuses an existing `dir`; `fill` writes into a fresh temporary sibling, which is then
// published (removed again when `fill` throws). `what` names the output in errors.
void write_dir_atomically(const std::string& dir, const std::function<void(const std::string& tmp)>& fill,
                          const std::string& what);
// Its first half, for an output that several processes fill together: refuses an existing
// non-empty `dir`, removes what killed earlier writers of it left, and creates a fresh temporary
// sibling, whose path it returns; publish_dir(tmp, dir) finishes it (remove the temporary when
// filling fails).
std::string create_temp_sibling_dir(const std::string& dir, const std::string& what);
bool is_complete_dir(const std::string& dir);
// The marker records every file's size and an HDF5 file's checksum: CorruptError naming the file
// when it no longer matches (checked once per process and file version; files without a record,
// from other tools, pass). True when the file matched a recorded checksum.
bool verify_written_file(const std::string& path);
// The byte ranges [offset, offset + length) of a finished file that hold tensor data, each
// guarded by a checksum of its own that the reader compares (native HDF5: each dataset's
// `hash64b`); {} when there are none or the file cannot be read. The format's module registers
// its finder for its file extension; the marker's checksum of such a file then covers only the
// rest, the bytes a parser reads, so neither publishing nor verifying reads the data twice (the
// same marker whichever process wrote the file). Files without regions get a checksum of all
// their bytes.
using DataRegions = std::vector<std::pair<uint64_t, uint64_t>>;
using DataRegionFinder = DataRegions (*)(const std::string& path);
void set_data_region_finder(const std::string& extension, DataRegionFinder finder);
// Removes a published directory marker first, so an interrupted removal never looks complete.
void remove_dir_safely(const std::string& dir);
// CorruptError naming `dir` when its completion marker is missing.
void require_complete(const std::string& dir);

// The crash-point test's hook, called after every durable step of a write (a file written, an
// fsync, a rename, a marker written or removed). With LETHE_CRASH_AFTER=N in the environment
// the process kills itself (SIGKILL, no clean-up) at its N-th such point; with
// LETHE_CRASH_COUNT=FILE it appends "PID COUNT" to FILE at exit, so a test can enumerate the
// points of an uninterrupted run. Without either variable it only counts.
void crash_point();

}  // namespace lethe
