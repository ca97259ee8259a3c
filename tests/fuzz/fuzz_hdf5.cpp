// Native checkpoint files (HDF5) as lethe loads them: the file sits in its directory beside the
// completion marker its writer left (size and checksum of the seed checkpoint, corpus/hdf5/
// micro.h5), so any damaged file must be refused by the checksum before libhdf5 parses it, and
// the intact one must load (dataset listing, dtype attribute vs stored type, the checksums,
// attributes, data). With LETHE_FUZZ_HDF5_RAW=1 the bytes go to libhdf5 unchecked (a crafted
// file whose marker was forged to match): libhdf5 1.10.8 itself crashes on some of those, see
// docs/RELIABILITY.md; that mode is not run in CI.
#include <cstdlib>
#include <fstream>

#include "checkpoints/hdf5_checkpoint.h"
#include "common/hash.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool raw = std::getenv("LETHE_FUZZ_HDF5_RAW") != nullptr;
  static const std::string seed_marker = [] {
    const char* seed = std::getenv("LETHE_FUZZ_HDF5_SEED");
    const std::string path = seed ? seed : "micro.h5";
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    const auto bytes = uint64_t(in.tellg());
    return lethe::json{{"complete", true},
                       {"files", {{"model.h5", {{"bytes", bytes}, {"hash64", lethe::hex64(lethe::hash_file(path))}}}}}}
        .dump();
  }();
  if (size > (1u << 20)) return 0;
  const std::string p = fuzz::input_file(data, size, "model.h5");
  const std::string marker = fuzz::dir_of(p) + "/COMPLETE";
  if (raw) {
    std::remove(marker.c_str());
  } else {
    fuzz::input_file(reinterpret_cast<const uint8_t*>(seed_marker.data()), seed_marker.size(), "COMPLETE");
  }
  return fuzz::expect_clean([&] {
    lethe::h5_tensor_infos(p);
    std::map<std::string, lethe::json> attrs;
    lethe::read_h5_tensors(p, {}, &attrs);
  });
}
