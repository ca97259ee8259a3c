// safetensors files and the sharded index: header parse, tiling checks, then the tensors.
#include <filesystem>

#include "checkpoints/safetensors.h"
#include "checkpoints/tensor_index.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1u << 20)) return 0;
  const bool as_index = size > 0 && data[0] == '{';  // JSON: the index; otherwise a file
  return fuzz::expect_clean([&] {
    if (as_index) {
      const std::string p = fuzz::input_file(data, size, "model.safetensors.index.json");
      lethe::read_weight_index(fuzz::dir_of(p), "model.safetensors.index.json");
    } else {
      const std::string p = fuzz::input_file(data, size, "x.safetensors");
      lethe::read_safetensors_header(p);
      lethe::read_safetensors(p);
    }
  });
}
