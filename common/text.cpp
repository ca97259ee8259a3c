#include "common/text.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace lethe {

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  for (size_t p = 0; !s.empty() && p <= s.size();) {
    size_t q = std::min(s.find(',', p), s.size());
    out.push_back(s.substr(p, q - p));
    p = q + 1;
  }
  return out;
}

uint64_t parse_byte_size(const std::string& s, const std::string& what) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    throw InputError(what + ": '" + s + "' is not a size (e.g. 5GB, 500MB, 1000000)");
  }
  std::string unit = s.substr(used);
  double mult = unit.empty() || unit == "B" ? 1 : unit == "KB" ? 1e3 : unit == "MB" ? 1e6 : unit == "GB" ? 1e9 : -1;
  if (mult < 0 || !(v > 0) || !std::isfinite(v))
    throw InputError(what + ": '" + s + "' is not a size (e.g. 5GB, 500MB)");
  return uint64_t(v * mult);
}

}  // namespace lethe
