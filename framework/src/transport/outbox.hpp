// SPDX-License-Identifier: Apache-2.0
#pragma once

// The bounded multi-producer queue between caller threads and the I/O
// thread, with an eventfd doorbell the I/O thread polls beside its socket.
// The doorbell rings only when the queue goes from empty to non-empty, so a
// burst of publishes costs one wake-up.

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cassert>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "envelope.hpp"
#include "plexus/topic.hpp"

namespace plexus::detail {

class outbox {
public:
  explicit outbox(std::size_t limit) : limit_(limit), fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (fd_ < 0) throw std::runtime_error("eventfd failed");
  }
  ~outbox() { ::close(fd_); }
  outbox(const outbox&) = delete;
  outbox& operator=(const outbox&) = delete;

  /// Queues `e`. With `wait`, blocks while full (unless closed); without,
  /// returns false when full. `force` ignores the limit (the I/O thread
  /// itself, and control ops that must not be refused).
  bool push(envelope e, bool wait, bool force = false) {
    std::unique_lock lock{m_};
    while (!force && items_.size() + backlog_ >= limit_ && !closed_) {
      if (!wait) return false;
      not_full_.wait(lock);
    }
    bool ring = items_.empty();
    e.counted = true;
    items_.push_back(std::move(e));
    ++pushed_;
    if (!spare_envelope_buffer && !spares_.empty()) {
      spare_envelope_buffer = std::move(spares_.back());
      spares_.pop_back();
    }
    lock.unlock();
    if (ring) {
      std::uint64_t one = 1;
      [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
    }
    return true;
  }

  /// Moves everything queued into `out` (which is empty) and clears the
  /// bell. Keeps buffers of sent envelopes from `sent` for push() to hand
  /// out (small ones, a bounded number); `sent` is left empty.
  void take(std::vector<envelope>& out, std::vector<std::string>& sent) {
    std::uint64_t count = 0;
    [[maybe_unused]] auto n = ::read(fd_, &count, sizeof count);
    {
      std::lock_guard lock{m_};
      out.swap(items_);
      for (auto& b : sent)
        if (b.capacity() <= max_spare_bytes && spares_.size() < max_spares)
          spares_.push_back(std::move(b));
      not_full_.notify_all();
    }
    sent.clear(); // the rest are freed here, outside the lock
  }

  /// The I/O thread reports how many envelopes it holds, taken and not
  /// written yet (waiting for the socket or the publish window): they
  /// count against the limit, so a publisher cannot run further ahead of
  /// the broker than that, however often the I/O thread empties this
  /// queue (it always does: ACKs and CREDITs must go).
  void set_backlog(std::size_t n) {
    {
      std::lock_guard lock{m_};
      if (n == backlog_) return;
      bool less = n < backlog_;
      backlog_ = n;
      if (!less) return;
    }
    not_full_.notify_all();
  }

  /// The I/O thread reports envelopes as written to the socket.
  void mark_sent(std::uint64_t n) {
    std::lock_guard lock{m_};
    sent_ += n;
    drained_.notify_all();
  }

  /// Waits until everything pushed before the call is sent.
  bool wait_sent(std::chrono::milliseconds timeout) {
    std::unique_lock lock{m_};
    auto target = pushed_;
    return drained_.wait_for(lock, timeout, [&] { return sent_ >= target || closed_; });
  }

  void close() {
    std::lock_guard lock{m_};
    closed_ = true;
    not_full_.notify_all();
    drained_.notify_all();
  }

  [[nodiscard]] int fd() const noexcept { return fd_; }

private:
  // Enough for what callers push while the I/O thread sends, at most 4 MiB.
  static constexpr std::size_t max_spares = 1024, max_spare_bytes = 4096;

  std::mutex m_;
  std::condition_variable not_full_, drained_;
  std::vector<envelope> items_;
  std::vector<std::string> spares_;
  std::size_t limit_;
  std::size_t backlog_ = 0; // see set_backlog
  std::uint64_t pushed_ = 0, sent_ = 0;
  bool closed_ = false;
  int fd_;
};

/// Room for confirmed publishes awaiting CONFIRM: caller threads take a
/// slot per publish, the I/O thread gives it back when the publish is
/// settled. A bound apart from the outbox's: the outbox empties on every
/// turn of the I/O loop, this only as CONFIRMs arrive.
class confirm_window {
public:
  explicit confirm_window(std::size_t limit) : limit_(limit) {}

  /// Takes a slot. With `wait`, blocks while full (unless closed); without,
  /// returns false when full. `force` takes one beyond the limit (the I/O
  /// thread, which would wait for itself).
  bool acquire(bool wait, bool force = false) {
    std::unique_lock lock{m_};
    while (!force && used_ >= limit_ && !closed_) {
      if (!wait) return false;
      freed_.wait(lock);
    }
    ++used_;
    return true;
  }

  void release() {
    {
      std::lock_guard lock{m_};
      assert(used_ > 0);
      --used_;
    }
    freed_.notify_one();
  }

  /// Lets every waiter through (the client is closing).
  void close() {
    {
      std::lock_guard lock{m_};
      closed_ = true;
    }
    freed_.notify_all();
  }

private:
  std::mutex m_;
  std::condition_variable freed_;
  std::size_t used_ = 0, limit_;
  bool closed_ = false;
};

/// Flow control between the I/O thread and publishing threads: the
/// patterns the broker has paused (PROTOCOL.md "Flow control"). The I/O
/// thread sets them; publish() asks whether its topic is paused and may
/// wait until it is not. Nothing paused costs a publish one atomic load.
class flow_gate {
public:
  /// The patterns paused now (empty: none); wakes whoever waits.
  void set(std::vector<std::string> patterns) {
    {
      std::lock_guard lock{m_};
      patterns_ = std::move(patterns);
      count_.store(patterns_.size(), std::memory_order_release);
    }
    resumed_.notify_all();
  }

  /// True if some pattern is paused (a hint: check paused() next).
  [[nodiscard]] bool any() const noexcept { return count_.load(std::memory_order_acquire) != 0; }

  [[nodiscard]] bool paused(std::string_view topic) {
    std::lock_guard lock{m_};
    return paused_locked(topic);
  }

  /// Blocks while `topic` is paused (until RESUME, the session's end or
  /// close()). Returns whether it had to wait.
  bool wait(std::string_view topic) {
    std::unique_lock lock{m_};
    if (!paused_locked(topic)) return false;
    resumed_.wait(lock, [&] { return closed_ || !paused_locked(topic); });
    return true;
  }

  /// Lets every waiter through (the client is closing).
  void close() {
    {
      std::lock_guard lock{m_};
      closed_ = true;
    }
    resumed_.notify_all();
  }

private:
  [[nodiscard]] bool paused_locked(std::string_view topic) const {
    if (closed_) return false;
    for (auto& p : patterns_)
      if (matches(p, topic)) return true;
    return false;
  }

  std::mutex m_;
  std::condition_variable resumed_;
  std::vector<std::string> patterns_;
  std::atomic<std::size_t> count_{0};
  bool closed_ = false;
};

} // namespace plexus::detail
