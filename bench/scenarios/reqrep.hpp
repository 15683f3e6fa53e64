// SPDX-License-Identifier: Apache-2.0
#pragma once

// What the request/reply systems share: a system issues request i from
// the driver's thread and reports its reply, from any thread, to its
// reply_log, which keeps when each one came back. The scenario drives
// every system the same way: paced (open loop, latency from when a request
// was due, so a stall counts against every request it delays) and with a
// window of outstanding requests (throughput).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <semaphore>
#include <string>
#include <vector>

namespace plexus::bench {

/// When each request of one phase was answered. answered()/failed() from
/// any thread; reset() and the readers only between phases.
class reply_log {
public:
  /// A phase of `count` requests; with `windowed`, each answer frees a
  /// slot for take_slot().
  void reset(std::size_t count, bool windowed) {
    at_.assign(count, std::chrono::steady_clock::time_point{});
    answered_.store(0, std::memory_order_relaxed);
    windowed_ = windowed;
    std::lock_guard lock{mutex_};
    failure_.clear();
  }

  void answered(std::size_t i) noexcept {
    if (i >= at_.size()) {
      failed("an answer to request " + std::to_string(i) + ", which was never sent");
      return;
    }
    at_[i] = std::chrono::steady_clock::now();
    if (windowed_) slots_.release();
    if (answered_.fetch_add(1, std::memory_order_acq_rel) + 1 == at_.size()) {
      std::lock_guard lock{mutex_};
      changed_.notify_all();
    }
  }

  void failed(std::string why) noexcept {
    try {
      std::lock_guard lock{mutex_};
      if (failure_.empty()) failure_ = std::move(why);
    } catch (...) { // no memory for the text: still wake the waiter
    }
    if (windowed_) slots_.release();
    changed_.notify_all();
  }

  /// Windowed phases: frees `n` slots (the window), then take one per request.
  void open_window(std::size_t n) { slots_.release(static_cast<std::ptrdiff_t>(n)); }
  [[nodiscard]] bool take_slot(std::chrono::steady_clock::time_point deadline) {
    return slots_.try_acquire_until(deadline);
  }

  /// Blocks until every request was answered (true), one failed (throws
  /// std::runtime_error with why), or `deadline` (false).
  bool wait(std::chrono::steady_clock::time_point deadline);

  [[nodiscard]] std::size_t answered_count() const noexcept {
    return answered_.load(std::memory_order_acquire);
  }
  /// When request i was answered; valid once wait() returned true.
  [[nodiscard]] std::chrono::steady_clock::time_point at(std::size_t i) const { return at_[i]; }

private:
  std::vector<std::chrono::steady_clock::time_point> at_;
  std::atomic<std::size_t> answered_{0};
  bool windowed_ = false;
  std::counting_semaphore<std::numeric_limits<std::int32_t>::max()> slots_{0};
  std::mutex mutex_;
  std::condition_variable changed_;
  std::string failure_;
};

/// A requester, a responder that echoes the payload, and what connects
/// them, set up and answering. Requests carry `size` bytes each way.
class reqrep_system {
public:
  virtual ~reqrep_system() = default;
  /// Issues request `i` of the current phase; only one thread calls this.
  /// Throws if it cannot be sent.
  virtual void send(std::size_t i) = 0;
  reply_log& log() noexcept { return log_; }

protected:
  reply_log log_;
};

/// plexus: client request_async -> broker -> a responder client that
/// publishes the payload to reply_to -> broker -> the requester.
/// With `curve`, the broker runs as with --auth (CURVE, ZAP, permissions).
[[nodiscard]] std::unique_ptr<reqrep_system> make_plexus_reqrep(std::size_t size, bool curve = false);
/// nats-server via libnats: PublishRequest with a reply subject per
/// request, a responder that publishes to the reply subject.
[[nodiscard]] std::unique_ptr<reqrep_system> make_nats_reqrep(std::size_t size, bool tls = false);
/// Raw ZeroMQ, direct (no broker): PUSH -> PULL to the responder, which
/// PUSHes the reply back to a PULL; the floor of a round trip over tcp.
[[nodiscard]] std::unique_ptr<reqrep_system> make_zmq_reqrep(std::size_t size);

} // namespace plexus::bench
