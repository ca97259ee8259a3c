#include "common/error.h"

namespace lethe {

void throw_internal(const char* expr, const char* file, int line, const std::string& msg) {
  throw InternalError(msg + " (check `" + expr + "` failed at " + file + ":" + std::to_string(line) + ")");
}

}  // namespace lethe
