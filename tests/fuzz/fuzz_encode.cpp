// Encoding arbitrary bytes (invalid UTF-8, long runs, special-token look-alikes) with a real
// tokenizer (LETHE_FUZZ_TOKENIZER, default the Llama 3 one under ../shared), and decoding back.
#include "data/tokenizer.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const lethe::Tokenizer* tok = fuzz::real_tokenizer();
  if (size > (1u << 16)) return 0;
  const std::string text(reinterpret_cast<const char*>(data), size);
  return fuzz::expect_clean([&] {
    auto ids = tok->encode(text, size % 2 == 0);
    tok->decode(ids);
  });
}
