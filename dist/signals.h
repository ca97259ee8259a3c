// Preemption: SIGTERM or SIGUSR1 (Slurm's --signal=USR1@120) asks the job to checkpoint at
// the next step boundary and exit with kExitPreempted, so `--requeue` plus `--resume`
// continues where it stopped.
#pragma once

namespace lethe {

constexpr int kExitPreempted = 75;  // EX_TEMPFAIL: "try again later"

void install_preemption_handlers();
bool preemption_requested();

}  // namespace lethe
