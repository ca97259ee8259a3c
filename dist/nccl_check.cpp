// Built only when NCCL is found (LETHE_HAVE_NCCL). ncclGetVersion needs no GPU, so this
// links and runs on CPU machines too; the NCCL communicator builds on the same target.
#include <nccl.h>

#include <string>

namespace lethe {

std::string nccl_version_string() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown";
  // NCCL >= 2.9 encodes major*10000 + minor*100 + patch.
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

}  // namespace lethe
