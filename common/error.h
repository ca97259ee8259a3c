// Typed errors. Library code throws; the launcher catches at the top, logs one line naming
// what is wrong, and exits non-zero (InputError -> 2, everything else -> 1).
#pragma once
#include <stdexcept>
#include <string>

namespace lethe {

// Bad user input: a missing or malformed file, a bad option value, a wrong shape.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A stored artefact failed validation: checksum, truncation, missing completion marker.
struct CorruptError : InputError {
  using InputError::InputError;
};

// An internal invariant or a library call failed.
struct InternalError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void throw_internal(const char* expr, const char* file, int line, const std::string& msg);

}  // namespace lethe

// Checks an invariant; the message names the failing expression, file and line.
#define LETHE_CHECK(cond, msg)                                              \
  do {                                                                      \
    if (!(cond)) ::lethe::throw_internal(#cond, __FILE__, __LINE__, (msg)); \
  } while (0)
