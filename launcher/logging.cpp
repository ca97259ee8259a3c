#include "launcher/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "common/error.h"

namespace lethe {

void setup_logging(const std::string& level, const std::string& log_file, int rank) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off")
    throw InputError("--log-level: unknown level '" + level + "' (trace, debug, info, warn, error)");
  std::vector<spdlog::sink_ptr> sinks;
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  console->set_level(rank == 0 ? lvl : std::max(lvl, spdlog::level::warn));
  sinks.push_back(console);
  if (!log_file.empty()) {
    std::string path = rank == 0 ? log_file : log_file + ".rank" + std::to_string(rank);
    try {
      auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, false);
      file->set_level(lvl);
      sinks.push_back(file);
    } catch (const spdlog::spdlog_ex& e) {
      throw InputError("--log-file '" + path + "': " + e.what());
    }
  }
  auto logger = std::make_shared<spdlog::logger>("lethe", sinks.begin(), sinks.end());
  logger->set_level(lvl);
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [rank " + std::to_string(rank) + "] [%l] %v");
  spdlog::set_default_logger(logger);
}

}  // namespace lethe
