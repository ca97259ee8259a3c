// Helpers shared by the tests: scratch directories, running commands, and locating shared
// data and the Python/Node references (tests that need them skip with a message if absent).
#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace lethe {
namespace fs = std::filesystem;
}

namespace lethe::test {

// A fresh directory removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("lethe_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

inline int run_command(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

inline std::string source_dir() { return LETHE_SOURCE_DIR; }
inline std::string shared_data_dir() { return source_dir() + "/../shared/data"; }

inline bool reference_python_available() {
  static int ok = run_command("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0 ? 1 : 0;
  return ok == 1;
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void spit(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// Norm-wise relative error ||a - b|| / max(||b||, tiny).
inline double rel_error(const torch::Tensor& a, const torch::Tensor& b) {
  auto fa = a.to(torch::kDouble), fb = b.to(torch::kDouble);
  return (fa - fb).norm().item<double>() / std::max(fb.norm().item<double>(), 1e-30);
}

}  // namespace lethe::test
