// Learning-rate schedules: linear warmup, then cosine, linear or constant decay to
// min_lr_ratio * lr at the last step.
#pragma once
#include <cstdint>
#include <string>

namespace lethe {

struct ScheduleOptions {
  std::string kind = "cosine";  // cosine | linear | constant
  double lr = 5e-5;
  int64_t warmup_steps = 0;
  double min_lr_ratio = 0.0;
};

// step counts from 1 to total_steps.
double lr_at(const ScheduleOptions& s, int64_t step, int64_t total_steps);

}  // namespace lethe
