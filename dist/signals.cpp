#include "dist/signals.h"

#include <csignal>

namespace lethe {

namespace {
volatile std::sig_atomic_t g_requested = 0;
extern "C" void on_signal(int) { g_requested = 1; }
}  // namespace

void install_preemption_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
}

bool preemption_requested() { return g_requested != 0; }

}  // namespace lethe
