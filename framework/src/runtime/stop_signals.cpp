// SPDX-License-Identifier: Apache-2.0
#include "stop_signals.hpp"

#include <atomic>
#include <csignal>

namespace plexus::detail {

namespace {
// Lock-free, so the handler may set it (a handler cannot notify a
// condition variable: node::wait() looks every 50 ms).
std::atomic<bool> signalled{false};
static_assert(std::atomic<bool>::is_always_lock_free);
extern "C" void on_stop_signal(int) { signalled = true; }
} // namespace

void catch_stop_signals() {
  signalled = false;
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}

bool stop_signalled() noexcept { return signalled; }

} // namespace plexus::detail
