#include "dist/signals.h"

#include <unistd.h>

#include <csignal>
#include <cstring>

namespace lethe {

namespace {
volatile std::sig_atomic_t g_requested = 0;
volatile std::sig_atomic_t g_polled = 0;     // inside a StopPoint
volatile std::sig_atomic_t g_exit_code = 0;  // outside one: 0 = 128 + signal

void stop_now(int sig) {
  // Only async-signal-safe calls: write and _exit.
  char msg[64] = "lethe: stopped by signal ";
  size_t n = std::strlen(msg);
  if (sig >= 10) msg[n++] = char('0' + sig / 10);
  msg[n++] = char('0' + sig % 10);
  msg[n++] = '\n';
  ssize_t ignored = ::write(2, msg, n);
  (void)ignored;
  ::_exit(g_exit_code ? int(g_exit_code) : 128 + sig);
}

volatile std::sig_atomic_t g_signal = 0;
volatile std::sig_atomic_t g_handled = 0;
extern "C" void on_signal(int sig) {
  g_requested = 1;
  g_signal = sig;
  if (!g_polled) stop_now(sig);
}
}  // namespace

void install_preemption_handlers(bool resumable) {
  g_exit_code = resumable ? kExitPreempted : 0;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaction(sig, &sa, nullptr);
}

bool preemption_requested() { return g_requested != 0; }
void preemption_handled() { g_handled = 1; }

StopPoint::StopPoint() : outer_(g_polled == 0) { g_polled = 1; }

StopPoint::~StopPoint() {
  if (!outer_) return;
  g_polled = 0;
  // A signal that came in while the loop was already finishing (and so did not act on it).
  if (g_requested && !g_handled) stop_now(int(g_signal));
}

}  // namespace lethe
