// SPDX-License-Identifier: Apache-2.0
#pragma once

// Waiting on a condition with a deadline, for tests whose events arrive on
// other threads: update() changes state under the lock and notifies;
// until() re-checks the predicate on every notify (and every 10 ms, for
// state changed elsewhere) and gives up at the deadline.

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace plexus::test {

struct waiter {
  std::mutex m;
  std::condition_variable cv;

  template <class Pred>
  bool until(Pred pred, std::chrono::milliseconds deadline = std::chrono::seconds{20}) {
    std::unique_lock lock{m};
    auto end = std::chrono::steady_clock::now() + deadline;
    while (!pred()) {
      if (std::chrono::steady_clock::now() >= end) return false;
      cv.wait_for(lock, std::chrono::milliseconds{10});
    }
    return true;
  }

  template <class Fn>
  void update(Fn fn) {
    {
      std::lock_guard lock{m};
      fn();
    }
    cv.notify_all();
  }
};

} // namespace plexus::test
