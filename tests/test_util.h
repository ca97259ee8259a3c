// Helpers shared by the tests: scratch directories, running commands, locating shared data, and
// the Python references (transformers, peft, tokenizers, safetensors, mergekit in the project's
// .venv). A reference check whose package is missing fails: it never skips.
#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
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
    path = fs::temp_directory_path() / ("lethe_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
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

// The interpreter of the project's environment (CMake's LETHE_PYTHON).
inline std::string python() { return LETHE_PYTHON; }

// "" when every module imports, else the message to fail with.
inline std::string missing_reference(const std::string& modules) {
  std::string cmd = python() + " -c 'import " + modules + "' >/dev/null 2>&1";
  if (run_command(cmd) == 0) return "";
  return "reference packages missing (" + modules + ") in " + python() + ": run scripts/setup.sh";
}

// Fails the test (never skips) when the reference packages are missing.
#define LETHE_REQUIRE_REFERENCE(modules)                                  \
  do {                                                                    \
    std::string why_missing_ = ::lethe::test::missing_reference(modules); \
    if (!why_missing_.empty()) FAIL() << why_missing_;                    \
  } while (0)

// Runs tests/reference/SCRIPT with the environment's Python; returns its exit code.
inline int run_reference(const std::string& script, const std::string& args) {
  std::string cmd = python() + " " + source_dir() + "/tests/reference/" + script + " " + args;
  int rc = run_command(cmd);
  if (rc != 0) std::cerr << "reference command failed (" << rc << "): " << cmd << "\n";
  return rc;
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
