#include "common/fs.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include <ATen/Parallel.h>

#include "common/error.h"
#include "common/hash.h"
#include "common/json_io.h"

namespace fs = std::filesystem;

namespace lethe {

namespace {
struct CrashPoints {
  long after = 0;  // 0: never
  std::string count_file;
  std::atomic<long> seen{0};
  CrashPoints() {
    if (const char* v = std::getenv("LETHE_CRASH_AFTER")) after = std::atol(v);
    if (const char* v = std::getenv("LETHE_CRASH_COUNT")) {
      count_file = v;
      std::atexit([] {
        CrashPoints& c = crash_points();
        if (FILE* f = std::fopen(c.count_file.c_str(), "a")) {
          std::fprintf(f, "%ld %ld\n", long(::getpid()), c.seen.load());
          std::fclose(f);
        }
      });
    }
  }
  static CrashPoints& crash_points() {
    static CrashPoints* c = new CrashPoints;  // never destroyed: the exit handler reads it
    return *c;
  }
};
}  // namespace

void crash_point() {
  CrashPoints& c = CrashPoints::crash_points();
  const long n = ++c.seen;
  if (c.after > 0 && n == c.after) ::kill(::getpid(), SIGKILL);
}

std::string read_text_file(const std::string& path) {
  if (!fs::exists(path)) throw InputError(path + ": no such file");
  if (fs::is_directory(path)) throw InputError(path + ": is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open (" + std::strerror(errno) + ")");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw InputError("fsync: cannot open " + path + ": " + std::strerror(errno));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw InputError("fsync failed on " + path + ": " + std::strerror(errno));
}

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min(n, size_t(1) << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw InputError(path + ": write failed (" + std::strerror(w < 0 ? errno : EIO) + ")");
    p += w;
    n -= size_t(w);
  }
}

void start_writeback(int fd) {
  // Advice only: where the filesystem does not support it, fsync still writes everything.
  (void)::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

namespace {
constexpr size_t kDirectAlign = 4096;
constexpr size_t kSequentialBuffer = size_t(16) << 20;
}  // namespace

struct SequentialFile::Pending {
  std::thread thread;
  std::exception_ptr error;
};

SequentialFile::SequentialFile(const std::string& path, bool allow_direct) : path_(path) {
  if (allow_direct) fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0644);
  direct_ = fd_ >= 0;
  if (!allow_direct || (fd_ < 0 && errno == EINVAL))
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw InputError(path + ": cannot write (" + std::strerror(errno) + ")");
  for (auto& b : bufs_) {
    void* p = nullptr;
    if (::posix_memalign(&p, kDirectAlign, kSequentialBuffer) != 0) {
      ::close(fd_);
      fd_ = -1;
      std::free(bufs_[0]);
      throw std::bad_alloc();
    }
    b = static_cast<char*>(p);
  }
}

SequentialFile::~SequentialFile() {
  try {
    wait_pending();
  } catch (...) {
  }
  if (fd_ >= 0) ::close(fd_);
  for (auto* b : bufs_) std::free(b);
}

void SequentialFile::write_at(const char* data, size_t n, uint64_t offset) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd_, data, n, off_t(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EINVAL && direct_) {  // O_DIRECT accepted at open, refused for writes
      if (::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_DIRECT) != 0)
        throw InputError(path_ + ": write failed (" + std::strerror(errno) + ")");
      direct_ = false;
      continue;
    }
    if (w <= 0) throw InputError(path_ + ": write failed (" + std::strerror(w < 0 ? errno : EIO) + ")");
    data += w;
    offset += uint64_t(w);
    n -= size_t(w);
  }
  if (!direct_) start_writeback(fd_);
}

void SequentialFile::wait_pending() {
  if (!pending_) return;
  pending_->thread.join();
  std::exception_ptr e = pending_->error;
  delete pending_;
  pending_ = nullptr;
  if (e) std::rethrow_exception(e);
}

void SequentialFile::flush_full() {
  wait_pending();  // the other buffer is free again
  pending_ = new Pending;
  const char* data = bufs_[cur_];
  const size_t n = used_;
  const uint64_t at = offset_;
  Pending* p = pending_;
  p->thread = std::thread([this, p, data, n, at] {
    try {
      write_at(data, n, at);
    } catch (...) {
      p->error = std::current_exception();
    }
  });
  cur_ ^= 1;
  offset_ += used_;
  used_ = 0;
}

void SequentialFile::append(const void* data, size_t n) {
  LETHE_CHECK(fd_ >= 0, "SequentialFile::append after close");
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const size_t k = std::min(n, kSequentialBuffer - used_);
    std::memcpy(bufs_[cur_] + used_, p, k);
    used_ += k;
    p += k;
    n -= k;
    if (used_ == kSequentialBuffer) flush_full();
  }
}

void SequentialFile::close() {
  if (fd_ < 0) return;
  wait_pending();
  const uint64_t size = offset_ + used_;
  if (used_ > 0) {
    // O_DIRECT writes whole aligned blocks: the tail is padded, and the size set after.
    const size_t padded = direct_ ? (used_ + kDirectAlign - 1) / kDirectAlign * kDirectAlign : used_;
    std::memset(bufs_[cur_] + used_, 0, padded - used_);
    write_at(bufs_[cur_], padded, offset_);
    if (padded != used_ && ::ftruncate(fd_, off_t(size)) != 0)
      throw InputError(path_ + ": write failed (" + std::strerror(errno) + ")");
  }
  used_ = 0;
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw InputError(path_ + ": write failed (" + std::strerror(errno) + ")");
}

void fsync_parent_dir(const std::string& path) {
  fs::path parent = fs::absolute(path).parent_path();
  fsync_path(parent.string());
}

std::string without_trailing_slash(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

bool path_within(const std::string& inner, const std::string& outer) {
  std::error_code ec;
  const fs::path a = fs::weakly_canonical(fs::absolute(without_trailing_slash(inner)), ec);
  const fs::path b = fs::weakly_canonical(fs::absolute(without_trailing_slash(outer)), ec);
  auto ai = a.begin();
  for (auto bi = b.begin(); bi != b.end(); ++bi, ++ai)
    if (ai == a.end() || *ai != *bi) return false;
  return true;
}

std::string host_name() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "host";
  std::string h(buf);
  for (auto& c : h)
    if (c == '/' || c == '.') c = '_';
  return h.empty() ? "host" : h;
}

std::string temp_sibling(const std::string& path) {
  fs::path p(without_trailing_slash(path));
  return (p.parent_path() / ("." + p.filename().string() + ".tmp." + host_name() + "." + std::to_string(::getpid())))
      .string();
}

void write_file_via_temp(const std::string& path, const std::function<void(const std::string& tmp)>& write) {
  const std::string tmp = temp_sibling(path);
  remove_stale_temp_siblings(path);  // left by killed writers of `path` (and this pid's own)
  try {
    write(tmp);
    crash_point();
    fsync_path(tmp);
    crash_point();
  } catch (...) {  // disk full, permissions: a failed write leaves nothing behind
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  fs::rename(tmp, path);
  crash_point();
  fsync_parent_dir(path);
  crash_point();
}

void write_file_atomic(const std::string& path, const std::string& content) {
  write_file_via_temp(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw InputError(path + ": cannot write (" + std::strerror(errno) + ")");
    out << content;
    out.flush();
    if (!out) throw InputError(path + ": write failed (" + std::strerror(errno) + ")");
  });
}

bool path_exists(const std::string& path) { return fs::exists(path); }

void create_output_dir(const std::string& dir, const std::string& what) {
  if (fs::exists(dir)) {
    if (!fs::is_directory(dir)) throw InputError(what + " '" + dir + "' exists and is not a directory");
    if (!fs::is_empty(dir))
      throw InputError(what + " '" + dir + "' already exists and is not empty; refusing to overwrite it");
    return;
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw InputError(what + " '" + dir + "': cannot create (" + ec.message() + ")");
  crash_point();
}

void copy_file_checked(const std::string& from, const std::string& to) {
  if (fs::exists(to)) throw InputError("cannot copy " + from + " to " + to + ": the target exists");
  write_file_via_temp(to, [&](const std::string& tmp) {  // a killed copy never looks finished
    std::error_code ec;
    fs::copy_file(from, tmp, fs::copy_options::none, ec);
    if (ec) throw InputError("cannot copy " + from + " to " + to + ": " + ec.message());
  });
}

ssize_t pread_full(int fd, void* buf, size_t n, uint64_t offset) {
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::pread(fd, static_cast<char*>(buf) + got, n - got, off_t(offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    got += size_t(r);
  }
  return ssize_t(got);
}

bool pread_pieces(int fd, void* buf, size_t n, uint64_t offset, size_t piece,
                  const std::function<void(int64_t, const unsigned char*, size_t)>& on_piece) {
  LETHE_CHECK(piece > 0, "pread_pieces: empty pieces");
  std::atomic<bool> ok{true};
  auto* dst = static_cast<unsigned char*>(buf);
  at::parallel_for(0, int64_t((n + piece - 1) / piece), 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1 && ok; ++p) {
      const size_t at = size_t(p) * piece, len = std::min(piece, n - at);
      if (pread_full(fd, dst + at, len, offset + at) != ssize_t(len)) {
        ok = false;
        return;
      }
      if (on_piece) on_piece(p, dst + at, len);
    }
  });
  return ok;
}

namespace {
using Regions = DataRegions;

std::mutex finders_mutex;
std::map<std::string, DataRegionFinder>& data_region_finders() {
  static std::map<std::string, DataRegionFinder> m;
  return m;
}

Regions data_regions_of(const fs::path& path) {
  DataRegionFinder finder = nullptr;
  {
    std::lock_guard<std::mutex> lock(finders_mutex);
    auto it = data_region_finders().find(path.extension().string());
    if (it != data_region_finders().end()) finder = it->second;
  }
  Regions r = finder ? finder(path.string()) : Regions{};
  std::sort(r.begin(), r.end());
  return r;
}

// hash_blocks of the file's bytes outside `regions` (sorted, disjoint, inside the file's `size`
// bytes; CorruptError naming `what` otherwise), read with pread.
uint64_t hash_outside(const std::string& path, const Regions& regions, uint64_t size, const std::string& what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(path + ": cannot open (" + std::strerror(errno) + ")");
  std::string rest;
  auto append = [&](uint64_t from, uint64_t to) {
    const size_t at = rest.size();
    rest.resize(at + size_t(to - from));
    if (pread_full(fd, rest.data() + at, size_t(to - from), from) != ssize_t(to - from)) {
      ::close(fd);
      throw CorruptError(path + ": read failed or the file is shorter than " + what + " records");
    }
  };
  uint64_t pos = 0;
  for (auto& [off, len] : regions) {
    if (off < pos || len > size || off > size - len) {
      ::close(fd);
      throw CorruptError(what + " records data regions that do not fit " + path);
    }
    append(pos, off);
    pos = off + len;
  }
  append(pos, size);
  ::close(fd);
  return hash_blocks(rest.data(), rest.size());
}

// The marker's content: every file's size, and for HDF5 files (whose parser must never see
// damaged bytes) a checksum, checked before the file is opened (verify_written_file): of the
// bytes outside the data regions its writer recorded ("meta64", with the regions in "data"),
// else of all its bytes ("hash64b").
std::string marker_text(const std::string& dir) {
  json files = json::object();
  for (auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const std::string rel = fs::relative(e.path(), dir).generic_string();
    if (rel == kCompleteMarker || rel[0] == '.') continue;
    const uint64_t size = uint64_t(e.file_size());
    json f = {{"bytes", size}};
    if (e.path().extension() == ".h5") {
      const Regions regions = data_regions_of(e.path());
      if (regions.empty()) {
        f["hash64b"] = hex64(hash_file_blocks(e.path().string()));
      } else {
        f["meta64"] = hex64(hash_outside(e.path().string(), regions, size, "its writer"));
        f["data"] = regions;
      }
    }
    files[rel] = f;
  }
  return json{{"complete", true}, {"files", files}}.dump(1) + "\n";
}
}  // namespace

void set_data_region_finder(const std::string& extension, DataRegionFinder finder) {
  std::lock_guard<std::mutex> lock(finders_mutex);
  data_region_finders()[extension] = finder;
}

bool verify_written_file(const std::string& path) {
  static std::mutex m;
  static std::set<std::string> verified;  // "path size mtime" checked in this process
  std::error_code ec;
  const fs::path p = fs::absolute(path);
  const auto size = fs::file_size(p, ec);
  if (ec) return false;  // the reader names a missing file itself
  const std::string key = p.string() + " " + std::to_string(size) + " " +
                          std::to_string(fs::last_write_time(p, ec).time_since_epoch().count());
  {
    std::lock_guard<std::mutex> lock(m);
    if (verified.count(key)) return true;
  }
  const fs::path marker = p.parent_path() / kCompleteMarker;
  if (!fs::exists(marker)) return false;  // written by another tool, or an older lethe: nothing recorded
  json j;
  try {
    j = json::parse(read_text_file(marker.string()));
  } catch (const json::exception&) {
    return false;  // an older lethe's plain-text marker
  }
  const std::string name = p.filename().string();
  if (!j.is_object() || !j.contains("files") || !j["files"].is_object() || !j["files"].contains(name)) return false;
  const json& f = j["files"][name];
  if (!f.is_object() || !f.contains("bytes") || !f["bytes"].is_number_unsigned() || f["bytes"].get<uint64_t>() != size)
    throw CorruptError(path + ": " + std::to_string(size) + " bytes, but " + marker.string() +
                       " records another size (truncated or changed since it was written)");
  // "meta64" + "data": the bytes outside the data regions; "hash64b": all bytes (hash_blocks);
  // "hash64": all bytes (hash_file, markers of earlier versions).
  const std::string key_name = f.contains("meta64")    ? "meta64"
                               : f.contains("hash64b") ? "hash64b"
                               : f.contains("hash64")  ? "hash64"
                                                       : "";
  if (key_name.empty()) return false;
  uint64_t actual = 0;
  if (key_name == "meta64") {
    Regions regions;
    try {
      regions = f.at("data").get<Regions>();
    } catch (const json::exception&) {
      throw CorruptError(marker.string() + ": the data regions of " + name + " are malformed");
    }
    if (!std::is_sorted(regions.begin(), regions.end()))
      throw CorruptError(marker.string() + ": the data regions of " + name + " are not in order");
    actual = hash_outside(path, regions, size, marker.string());
  } else {
    actual = key_name == "hash64b" ? hash_file_blocks(path) : hash_file(path);
  }
  if (!f[key_name].is_string() || f[key_name].get<std::string>() != hex64(actual))
    throw CorruptError(path + ": its checksum differs from the one " + marker.string() +
                       " records (corrupt or changed since it was written)");
  std::lock_guard<std::mutex> lock(m);
  verified.insert(key);
  return true;
}

void publish_dir(const std::string& built, const std::string& dir) {
  const bool in_place = fs::absolute(built).lexically_normal() == fs::absolute(dir).lexically_normal();
  remove_stale_temps_within(built);  // a killed writer's partial files never ship in an output
  // Built elsewhere: the marker goes in before the rename, so the directory appears under its
  // final name complete or not at all. Built in place: the marker goes last.
  if (!in_place) write_file_atomic((fs::path(built) / kCompleteMarker).string(), marker_text(built));
  for (auto& e : fs::recursive_directory_iterator(built))
    if (e.is_regular_file()) fsync_path(e.path().string());
  fsync_path(built);
  crash_point();
  if (in_place) {
    write_file_atomic((fs::path(dir) / kCompleteMarker).string(), marker_text(dir));
    return;
  }
  fs::rename(built, dir);
  crash_point();
  fsync_parent_dir(dir);
  crash_point();
}

void remove_dir_safely(const std::string& dir) {
  std::error_code ec;
  // The marker goes first (and is on disk) so that an interrupted removal never leaves a
  // directory that claims to be complete.
  if (fs::remove(fs::path(dir) / kCompleteMarker, ec)) fsync_path(dir);
  crash_point();
  fs::remove_all(dir, ec);
  crash_point();
  if (ec) throw InputError("cannot remove " + dir + ": " + ec.message());
}

namespace {
// A zombie (killed, not yet reaped) counts as gone: it writes nothing more.
bool process_alive(long pid) {
  if (::kill(pid_t(pid), 0) != 0 && errno == ESRCH) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(stat, text)) return true;  // no /proc: trust kill()
  const size_t paren = text.rfind(')');
  return !(paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] == 'Z');
}

// ".NAME.tmp.HOST.PID" (NAME non-empty) of this host whose PID is not alive, or is this
// process (whose writes at this point are all finished or abandoned): a killed writer's temporary.
bool is_dead_writers_temp(const std::string& file_name) {
  const std::string tag = ".tmp." + host_name() + ".";
  const size_t at = file_name.rfind(tag);
  if (file_name.empty() || file_name[0] != '.' || at == std::string::npos || at < 2) return false;
  const std::string pid_text = file_name.substr(at + tag.size());
  if (pid_text.empty() || pid_text.size() > 9 || pid_text.find_first_not_of("0123456789") != std::string::npos)
    return false;
  const long pid = std::stol(pid_text);
  return pid == long(::getpid()) || !process_alive(pid);
}
}  // namespace

void remove_stale_temp_siblings(const std::string& path) {
  const fs::path p = fs::absolute(without_trailing_slash(path));
  const std::string prefix = "." + p.filename().string() + ".tmp." + host_name() + ".";
  std::error_code ec;
  if (!fs::is_directory(p.parent_path(), ec)) return;
  for (auto& e : fs::directory_iterator(p.parent_path(), ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && name.find('.', prefix.size()) == std::string::npos && is_dead_writers_temp(name))
      fs::remove_all(e.path(), ec);
  }
}

void remove_stale_temps_within(const std::string& dir) {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec))
    if (is_dead_writers_temp(it->path().filename().string())) {
      stale.push_back(it->path());
      if (it->is_directory()) it.disable_recursion_pending();
    }
  for (auto& s : stale) fs::remove_all(s, ec);
}

std::string create_temp_sibling_dir(const std::string& dir_arg, const std::string& what) {
  const std::string dir = without_trailing_slash(dir_arg);
  if (fs::exists(dir) && !(fs::is_directory(dir) && fs::is_empty(dir)))  // an empty one is replaced by the rename
    throw InputError(what + " '" + dir + "' already exists and is not empty; refusing to overwrite it");
  fs::path parent = fs::absolute(dir).parent_path();
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) throw InputError("cannot create " + parent.string() + ": " + ec.message());
  remove_stale_temp_siblings(dir);  // what earlier, killed runs of this output left behind
  const std::string tmp = temp_sibling(fs::absolute(dir).string());
  fs::remove_all(tmp, ec);
  fs::create_directory(tmp, ec);
  if (ec) throw InputError("cannot create " + tmp + ": " + ec.message());
  return tmp;
}

void write_dir_atomically(const std::string& dir_arg, const std::function<void(const std::string& tmp)>& fill,
                          const std::string& what) {
  const std::string dir = without_trailing_slash(dir_arg);
  const std::string tmp = create_temp_sibling_dir(dir, what);
  std::error_code ec;
  try {
    fill(tmp);
    publish_dir(tmp, dir);
  } catch (const InputError& e) {  // nothing left behind, and the message names the output
    fs::remove_all(tmp, ec);
    throw InputError(what + " '" + dir + "' was not written: " + e.what());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

bool is_complete_dir(const std::string& dir) { return fs::exists(fs::path(dir) / kCompleteMarker); }

void require_complete(const std::string& dir) {
  if (!is_complete_dir(dir))
    throw CorruptError("checkpoint '" + dir + "' is incomplete (no " + kCompleteMarker +
                       " marker): it was interrupted while being written");
}

}  // namespace lethe
