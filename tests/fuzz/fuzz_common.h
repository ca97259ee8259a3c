// Shared by the libFuzzer harnesses: the input as a file (the parsers read paths, as lethe
// does) and the rule every harness follows: lethe's own errors (InputError, CorruptError) are
// the expected answer to bad input; anything else escaping (an internal error, a standard
// library exception, a crash, a sanitizer report) is a finding.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/error.h"
#include "common/json_io.h"
#include "data/tokenizer.h"

namespace fuzz {

// A per-process scratch file holding the input, in a directory under $TMPDIR (scripts/fuzz.sh
// points it at a directory it removes at the end) or /tmp.
inline std::string input_file(const uint8_t* data, size_t size, const char* name) {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/lethe-fuzz-XXXXXX";
    const char* d = ::mkdtemp(tmpl.data());
    if (!d) std::abort();
    return std::string(d);
  }();
  const std::string path = dir + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

// The real tokenizer the encode and decode harnesses use (LETHE_FUZZ_TOKENIZER), loaded once.
inline const lethe::Tokenizer* real_tokenizer() {
  const char* path = std::getenv("LETHE_FUZZ_TOKENIZER");
  static const lethe::Tokenizer tok = lethe::Tokenizer::from_file(path ? path : "tokenizer.json");
  return &tok;
}

inline std::string dir_of(const std::string& path) { return path.substr(0, path.rfind('/')); }

template <typename F>
int expect_clean(F&& f) {
  try {
    f();
  } catch (const lethe::InputError&) {  // a clear refusal (CorruptError derives from it)
  }
  return 0;
}

}  // namespace fuzz
