// Stopping on a signal. SIGTERM, SIGINT, SIGHUP and SIGUSR1 (Slurm's --signal=USR1@120) stop
// every command. Inside a stop point (the training loop, the merge loop) the signal is only
// noted: the loop checkpoints at its next step boundary and exits with kExitPreempted, so
// `--requeue` plus `--resume` continues where it stopped. Anywhere else the process exits at
// once (128 + the signal, or kExitPreempted for a resumable command) with one line on stderr;
// what it was writing stays under a temporary name that the next run of the command removes.
#pragma once

namespace lethe {

constexpr int kExitPreempted = 75;  // EX_TEMPFAIL: "try again later"

// `resumable`: outside a stop point exit with kExitPreempted instead of 128 + signal.
void install_preemption_handlers(bool resumable);
bool preemption_requested();
// The loop acted on the request (it checkpointed and is returning kExitPreempted).
void preemption_handled();

// While one exists, a signal is noted for the enclosing loop to act on instead of ending the
// process; one that the loop did not act on (it came as the loop finished) ends the process
// when the StopPoint goes.
class StopPoint {
 public:
  StopPoint();
  ~StopPoint();
  StopPoint(const StopPoint&) = delete;
  StopPoint& operator=(const StopPoint&) = delete;

 private:
  bool outer_;
};

}  // namespace lethe
