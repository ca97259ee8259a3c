#include "optim/schedule.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace lethe {

double lr_at(const ScheduleOptions& s, int64_t step, int64_t total_steps) {
  if (s.kind != "cosine" && s.kind != "linear" && s.kind != "constant")
    throw InputError("--schedule: unknown schedule '" + s.kind + "' (cosine, linear, constant)");
  if (s.warmup_steps > 0 && step <= s.warmup_steps) return s.lr * double(step) / double(s.warmup_steps);
  if (s.kind == "constant" || total_steps <= s.warmup_steps) return s.lr;
  double progress = std::clamp(double(step - s.warmup_steps) / double(total_steps - s.warmup_steps), 0.0, 1.0);
  double factor = s.kind == "cosine" ? 0.5 * (1.0 + std::cos(M_PI * progress)) : 1.0 - progress;
  return s.lr * (s.min_lr_ratio + (1.0 - s.min_lr_ratio) * factor);
}

}  // namespace lethe
