// `lethe tokenize --decode` lines: id parsing, then decoding with a real tokenizer (ids out of
// range are refused, never read out of bounds).
#include <cstdlib>
#include <memory>

#include "data/tokenizer.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::unique_ptr<lethe::Tokenizer> tok = [] {
    const char* path = std::getenv("LETHE_FUZZ_TOKENIZER");
    return std::make_unique<lethe::Tokenizer>(lethe::Tokenizer::from_file(path ? path : "tokenizer.json"));
  }();
  if (size > (1u << 16)) return 0;
  const std::string line(reinterpret_cast<const char*>(data), size);
  return fuzz::expect_clean([&] { tok->decode(lethe::parse_token_ids(line, "line 1")); });
}
