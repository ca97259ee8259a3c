// config.json: every field's type and range (ModelConfig::from_json).
#include "fuzz_common.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1u << 16)) return 0;
  const std::string p = fuzz::input_file(data, size, "config.json");
  return fuzz::expect_clean([&] {
    lethe::ModelConfig c = lethe::ModelConfig::from_json(lethe::read_json_file(p), p);
    (void)c;
  });
}
