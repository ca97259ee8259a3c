// File-system helpers. Nothing here overwrites existing user data: writers go through a
// temporary name, fsync and rename, and directory creation refuses an existing output.
#pragma once
#include <functional>
#include <string>

namespace lethe {

std::string read_text_file(const std::string& path);  // InputError naming the path on failure
void write_file_atomic(const std::string& path, const std::string& content);
// `write` fills a temporary sibling of `path` (any writer: text, safetensors, HDF5); it is then
// fsynced and renamed over `path`, so `path` either does not exist or is complete.
void write_file_via_temp(const std::string& path, const std::function<void(const std::string& tmp)>& write);
void fsync_path(const std::string& path);  // file or directory
void fsync_parent_dir(const std::string& path);
bool path_exists(const std::string& path);
// Refuses (InputError) when `dir` exists and is not empty; creates it (and parents) otherwise.
void create_output_dir(const std::string& dir, const std::string& what);
// A sibling temporary name for `path`, unique per process.
std::string temp_sibling(const std::string& path);
void copy_file_checked(const std::string& from, const std::string& to);

// The one protocol for output directories (models in either format, resumable training
// checkpoints, the merge output): files are built in a directory that is not final yet (a
// temporary sibling, or an output whose completion marker is missing); publish_dir fsyncs
// every file in it and the directory, renames it to `dir` (unless it already is `dir`), fsyncs
// the parent and writes the completion marker last. A directory without the marker is never
// taken for a finished one.
constexpr const char* kCompleteMarker = "COMPLETE";
void publish_dir(const std::string& built, const std::string& dir);
// Refuses an existing `dir`; `fill` writes into a fresh temporary sibling, which is then
// published (removed again when `fill` throws). `what` names the output in errors.
void write_dir_atomically(const std::string& dir, const std::function<void(const std::string& tmp)>& fill,
                          const std::string& what);
bool is_complete_dir(const std::string& dir);
// CorruptError naming `dir` when its completion marker is missing.
void require_complete(const std::string& dir);

}  // namespace lethe
