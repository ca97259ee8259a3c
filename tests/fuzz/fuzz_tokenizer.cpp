// tokenizer.json: model, vocabulary, merges, added tokens, normalizers, pre-tokenizers,
// post-processor, decoder; a parsed tokenizer then encodes and decodes a fixed text.
#include "data/tokenizer.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1u << 20)) return 0;
  const std::string p = fuzz::input_file(data, size, "tokenizer.json");
  return fuzz::expect_clean([&] {
    lethe::Tokenizer tok = lethe::Tokenizer::from_file(p);
    auto ids = tok.encode("Hello, world! Ünïcødé 123 <|im_start|> \n\t  x", true);
    tok.decode(ids);
  });
}
