// `lethe tokenize --decode` lines: id parsing, then decoding with a real tokenizer (ids out of
// range are refused, never read out of bounds).
#include "data/tokenizer.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const lethe::Tokenizer* tok = fuzz::real_tokenizer();
  if (size > (1u << 16)) return 0;
  const std::string line(reinterpret_cast<const char*>(data), size);
  return fuzz::expect_clean([&] { tok->decode(lethe::parse_token_ids(line, "line 1")); });
}
