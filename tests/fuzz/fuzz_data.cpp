// Data files: JSONL, TOFU / KnowUnDo JSON (read_examples with format detection), then filters.
#include "data/dataset.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1u << 20)) return 0;
  const bool jsonl = size > 0 && data[0] != '[';
  const std::string p = fuzz::input_file(data, size, jsonl ? "d.jsonl" : "d.json");
  return fuzz::expect_clean([&] {
    auto ex = lethe::read_examples(p);
    lethe::filter_examples(ex, {"domain=privacy"}, p);
  });
}
