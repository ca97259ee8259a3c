// spdlog set-up: every line carries the rank; rank 0 logs progress at the chosen level,
// other ranks warnings and above; an optional per-rank log file.
#pragma once
#include <string>

namespace lethe {

void setup_logging(const std::string& level, const std::string& log_file, int rank);

}  // namespace lethe
