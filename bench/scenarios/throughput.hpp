// SPDX-License-Identifier: Apache-2.0
#pragma once

// What the broker throughput scenarios (pubsub, queue) share: what one run
// of a system returns, the counter its subscribers feed, and the publisher's
// side of a run, the same for every system: probe until the subscription is
// live (PUB/SUB slow joiners), warm up, then time N messages from the first
// send to the last receive.

#include <algorithm>
#include <array>
#include <atomic>
#include <cassert>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "scenario.hpp"

namespace plexus::bench {

using steady = std::chrono::steady_clock;

/// How the clients reach the broker (or the zmq baseline its peers): tcp on
/// 127.0.0.1, a Unix socket (ipc), or within the process (inproc: one
/// ZeroMQ context, no kernel at all).
enum class transport { tcp, ipc, inproc };

/// An endpoint of `t` to bind, unique in this process ("tcp://127.0.0.1:*",
/// "ipc:///tmp/plexus-bench-<pid>-<n>", "inproc://plexus-bench-<n>").
[[nodiscard]] std::string bind_endpoint(transport t);

/// One timed run of one system.
struct run_result {
  std::size_t sent = 0;     // measured messages published
  std::size_t received = 0; // of those, how many the subscribers got in time
  std::chrono::nanoseconds elapsed{0}; // first measured send to last measured receive

  [[nodiscard]] std::size_t lost() const noexcept { return sent - received; }
  /// Received messages per second; 0 if nothing arrived.
  [[nodiscard]] double msgs_per_s() const noexcept;
};

/// The first payload byte says what a message is for; only `measured` ones
/// are counted as results.
enum class message_kind : char { probe = 'p', warmup = 'w', measured = 'm' };

/// The subscriber side of one run: receiver threads (one per subscriber)
/// report each message; the publisher waits for counts. Cheap on the
/// receive path: atomics, and the mutex only when a count reaches its target.
class message_sink {
public:
  /// How published messages reach the receivers.
  enum class delivery {
    one_each, // each message reaches one of them (one subscriber, a queue group)
    every     // each message reaches every one of them (fan-out): the targets
              // are per receiver times receivers, and a probe counts once a
              // receiver, so the subscription is live when every one got one
  };
  /// `receivers` subscribers, expecting `warmups` warm-up and `measured`
  /// measured messages published.
  message_sink(std::size_t receivers, std::size_t warmups, std::size_t measured,
               delivery how = delivery::one_each);
  message_sink(const message_sink&) = delete;
  message_sink& operator=(const message_sink&) = delete;

  /// Receiver side, any thread. `first_byte` is the payload's first byte.
  void on_message(std::size_t receiver, char first_byte) noexcept {
    assert(receiver < per_receiver_.size());
    auto k = index_of(first_byte);
    if (k == kinds) [[unlikely]] {
      malformed_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (k == index_of(message_kind::measured))
      per_receiver_[receiver].count.fetch_add(1, std::memory_order_relaxed);
    else if (k == index_of(message_kind::probe) && every_ &&
             per_receiver_[receiver].probed.exchange(true, std::memory_order_relaxed))
      return; // this receiver is known to be live
    if (counts_[k].fetch_add(1, std::memory_order_acq_rel) + 1 == targets_[k]) [[unlikely]]
      reached(k);
  }
  /// Receiver side: the receiver cannot go on; the publisher's next wait
  /// rethrows `e`. Receivers never throw across their thread.
  void fail(std::exception_ptr e) noexcept;

  /// How far a wait got.
  struct progress {
    std::size_t count = 0;
    bool complete = false;     // count reached the target
    steady::time_point last{}; // when the target was reached (exact), else
                               // when the count last grew (to a poll slice)
  };
  /// Blocks until all expected messages of `kind` arrived, or none arrived
  /// for `idle`, or `deadline` passed. Rethrows a receiver's failure.
  progress wait(message_kind kind, steady::duration idle, steady::time_point deadline);

  /// Measured messages each receiver got (for the queue group's split).
  [[nodiscard]] std::vector<std::size_t> measured_per_receiver() const;
  /// Messages whose first byte was no known kind (a corrupted delivery).
  [[nodiscard]] std::size_t malformed() const noexcept {
    return malformed_.load(std::memory_order_relaxed);
  }

private:
  static constexpr std::size_t kinds = 3;
  static constexpr std::size_t index_of(message_kind k) noexcept {
    return index_of(static_cast<char>(k));
  }
  static constexpr std::size_t index_of(char c) noexcept {
    switch (static_cast<message_kind>(c)) {
      case message_kind::probe: return 0;
      case message_kind::warmup: return 1;
      case message_kind::measured: return 2;
    }
    return kinds;
  }
  void reached(std::size_t k) noexcept;
  void rethrow_locked();

  struct alignas(64) receiver_count {
    std::atomic<std::size_t> count{0};
    std::atomic<bool> probed{false};
  };

  std::array<std::size_t, kinds> targets_;
  bool every_ = false;
  alignas(64) std::array<std::atomic<std::size_t>, kinds> counts_{};
  std::atomic<std::size_t> malformed_{0};
  std::unique_ptr<receiver_count[]> per_receiver_storage_;
  std::span<receiver_count> per_receiver_;

  std::mutex mutex_;
  std::condition_variable changed_;
  std::array<steady::time_point, kinds> reached_at_{};
  std::array<bool, kinds> reached_{};
  std::exception_ptr failure_;
};

/// How long a run may take before it counts as loss or failure.
struct run_limits {
  std::chrono::milliseconds live_within{10'000}; // first probe must arrive by then
  std::chrono::milliseconds idle{2'000};         // no message for this long: the rest is lost
  std::chrono::milliseconds deadline{30'000};    // from the first measured send
};

/// Warm-up messages sent before a timed run of `count`: enough to open TCP
/// windows and fault in buffers, small next to the run.
[[nodiscard]] inline std::size_t warmup_count(std::size_t count) noexcept {
  return std::clamp<std::size_t>(count / 10, 100, 10'000);
}

/// The publisher's side of a run: `send(std::span<const char>)` publishes
/// one message (it may buffer), `flush()` pushes buffered ones to the
/// broker. The subscribers feed `sink`, made with warmup_count(count) and
/// `count`. Throws if the subscription never becomes live.
template <class Send, class Flush>
run_result drive(message_sink& sink, std::size_t size, std::size_t count, Send&& send,
                 Flush&& flush, const run_limits& lim = {}) {
  using namespace std::chrono_literals;
  assert(size >= 1 && count >= 1);
  std::string payload(size, '\0');
  for (std::size_t i = 0; i < size; ++i) payload[i] = static_cast<char>('a' + i % 26);
  const std::span<const char> message{payload.data(), payload.size()};

  // Slow joiners: a PUB drops what it sends before the subscription has
  // reached it, so probe (one per millisecond) until the first one arrives.
  payload[0] = static_cast<char>(message_kind::probe);
  const auto live_by = steady::now() + lim.live_within;
  for (;;) {
    send(message);
    flush();
    if (sink.wait(message_kind::probe, 1ms, std::min(live_by, steady::now() + 1ms)).complete)
      break;
    if (steady::now() >= live_by)
      throw std::runtime_error("the subscription was not live within " +
                               std::to_string(lim.live_within.count()) +
                               " ms: no probe message arrived");
  }

  // Warm-up, not counted; wait for it so it does not queue ahead of the run.
  payload[0] = static_cast<char>(message_kind::warmup);
  for (std::size_t i = 0, n = warmup_count(count); i < n; ++i) send(message);
  flush();
  sink.wait(message_kind::warmup, lim.idle, steady::now() + lim.deadline);

  payload[0] = static_cast<char>(message_kind::measured);
  const auto start = steady::now();
  for (std::size_t i = 0; i < count; ++i) send(message);
  flush();
  auto got = sink.wait(message_kind::measured, lim.idle, start + lim.deadline);
  return {count, got.count, got.count == 0 ? 0ns : got.last - start};
}

/// Runs `run_once` cfg.runs times and records msgs_per_s and mb_per_s
/// (payload bytes, 1 MB = 10^6 B) for the case and system, with a note of
/// the loss. Throws if a run received nothing or received more than it
/// sent, and under --quick if more than 1% of the messages were lost.
void record_throughput(const run_config& cfg, recorder& rec, std::string_view case_name,
                       std::string_view system, std::size_t payload_bytes,
                       const std::function<run_result()>& run_once);

/// One system of a case, for record_throughput_interleaved.
struct system_run {
  std::string_view system;
  std::function<run_result()> run_once;
};
/// record_throughput for several systems of one case, their runs taken in
/// turn (run 1 of each, then run 2 of each, ...): on a shared machine the
/// load drifts over minutes, and a drift then weighs on every system alike
/// instead of on whichever ran last (their ratio is what the case reports).
void record_throughput_interleaved(const run_config& cfg, recorder& rec, std::string_view case_name,
                                   std::size_t payload_bytes, const std::vector<system_run>& systems);

} // namespace plexus::bench
