// SPDX-License-Identifier: Apache-2.0
#pragma once

// What the durable scenario's systems share (plexus's durable queue,
// nats-server's JetStream file store): the shape of one run, the log its
// confirms and its consumer report to, and the publisher's side of a run,
// the same for both. Each message carries what it is: its first byte says
// warm-up or measured, the next 8 its index (so a confirm that arrives with
// only the message, as libnats' ack handler does, finds its slot).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace plexus::bench {

/// One timed run of confirmed publishes into a durable queue (a stream).
struct durable_spec {
  std::size_t size = 128;    // payload bytes, at least 9
  std::size_t count = 0;     // measured messages
  std::size_t warmups = 0;   // published, confirmed (and consumed) before them
  bool consumer = false;     // one consumer takes and acks every message
  std::uint32_t credit = 1024; // the consumer's window: plexus credit, JetStream MaxAckPending
  double rate = 0;           // messages/s offered on a schedule; 0: flat out
  std::size_t window = 65536; // publishes awaiting their confirm, at most
  std::filesystem::path store; // a fresh, empty directory for the run's files
  std::uint64_t max_msgs = 1'000'000, max_bytes = 1ull << 30; // the queue's limits
  std::string sync = "batch"; // plexus --store-sync: always, batch, interval:N
};

/// What one run saw.
struct durable_result {
  std::size_t confirmed = 0;           // measured messages confirmed ok
  std::chrono::nanoseconds elapsed{0}; // first measured publish -> last measured confirm
  std::size_t consumed = 0;            // measured messages the consumer got
  std::chrono::nanoseconds consumed_elapsed{0}; // first measured publish -> the last consumed
  std::vector<double> latency_us;      // per measured message: publish (or when due) -> confirm

  [[nodiscard]] double msgs_per_s() const noexcept {
    auto s = std::chrono::duration<double>(elapsed).count();
    return s > 0 ? static_cast<double>(confirmed) / s : 0;
  }
  [[nodiscard]] double consumed_per_s() const noexcept {
    auto s = std::chrono::duration<double>(consumed_elapsed).count();
    return s > 0 ? static_cast<double>(consumed) / s : 0;
  }
};

/// The first byte of a message of the durable scenario.
enum class durable_kind : char { warmup = 'w', measured = 'm' };

/// Confirms and consumptions of one run, from any thread. Each index is
/// written by one thread (the confirm's or the consumer's); the counters
/// publish them to the waiting thread.
class durable_log {
public:
  explicit durable_log(const durable_spec& s)
    : spec_(s), sent_(s.count), confirmed_at_(s.count), seen_(s.count, 0), seen_warm_(s.warmups, 0) {}
  durable_log(const durable_log&) = delete;
  durable_log& operator=(const durable_log&) = delete;

  /// The kind and index a payload carries; false if it carries none.
  static bool parse(std::string_view payload, durable_kind& kind, std::uint64_t& index) noexcept {
    if (payload.size() < 9) return false;
    kind = static_cast<durable_kind>(payload[0]);
    std::memcpy(&index, payload.data() + 1, sizeof index);
    return kind == durable_kind::warmup || kind == durable_kind::measured;
  }

  /// A message's confirm: `ok` or why not (a run with any failure is void).
  void confirmed(durable_kind kind, std::uint64_t i, bool ok, std::string_view why = {}) noexcept {
    if (!ok || !in_range(kind, i)) {
      fail(ok ? "a confirm for a message never published" : "message " + std::to_string(i) +
               " not confirmed: " + std::string{why});
      return;
    }
    if (kind == durable_kind::warmup) {
      bump(warm_confirmed_, spec_.warmups);
      return;
    }
    confirmed_at_[i] = std::chrono::steady_clock::now();
    bump(confirmed_, spec_.count);
  }

  /// The consumer got a message (only the consumer's thread calls this).
  void consumed(std::string_view payload) noexcept {
    durable_kind kind{};
    std::uint64_t i = 0;
    if (!parse(payload, kind, i) || !in_range(kind, i)) {
      fail("the consumer got a message never published");
      return;
    }
    auto& seen = kind == durable_kind::warmup ? seen_warm_ : seen_;
    if (seen[i]) return; // a redelivery
    seen[i] = 1;
    if (kind == durable_kind::warmup) {
      bump(warm_consumed_, spec_.warmups);
    } else {
      if (consumed_.load(std::memory_order_relaxed) + 1 == spec_.count)
        last_consumed_ = std::chrono::steady_clock::now();
      bump(consumed_, spec_.count);
    }
  }

  void fail(std::string why) noexcept {
    try {
      std::lock_guard lock{m_};
      if (failure_.empty()) failure_ = std::move(why);
    } catch (...) { // no memory for the text: still wake the waiter
    }
    cv_.notify_all();
  }

  /// Blocks until the warm-ups are confirmed (and consumed, with a
  /// consumer), or `until` (throws), or a failure (throws).
  void wait_warm(std::chrono::steady_clock::time_point until) {
    wait_for(until, "warm-up", [&] {
      return warm_confirmed_.load() == spec_.warmups &&
             (!spec_.consumer || warm_consumed_.load() == spec_.warmups);
    });
  }

  /// Blocks until the measured messages are confirmed (and consumed), or
  /// `until` (throws), or a failure (throws).
  void wait_measured(std::chrono::steady_clock::time_point until) {
    wait_for(until, "measured", [&] {
      return confirmed_.load() == spec_.count &&
             (!spec_.consumer || consumed_.load() == spec_.count);
    });
  }

  /// When measured message i was published (or due); the publisher only.
  void sent(std::uint64_t i, std::chrono::steady_clock::time_point at) noexcept { sent_[i] = at; }

  /// The run's figures, once wait_measured returned; `start`: the first
  /// measured publish.
  [[nodiscard]] durable_result result(std::chrono::steady_clock::time_point start) const {
    durable_result r;
    r.confirmed = confirmed_.load();
    r.latency_us.reserve(spec_.count);
    auto last = start;
    for (std::size_t i = 0; i < spec_.count; ++i) {
      last = std::max(last, confirmed_at_[i]);
      r.latency_us.push_back(
        std::chrono::duration<double, std::micro>(confirmed_at_[i] - sent_[i]).count());
    }
    r.elapsed = last - start;
    if (spec_.consumer) {
      r.consumed = consumed_.load();
      r.consumed_elapsed = last_consumed_ - start;
    }
    return r;
  }

private:
  [[nodiscard]] bool in_range(durable_kind kind, std::uint64_t i) const noexcept {
    return kind == durable_kind::warmup ? i < spec_.warmups
                                        : kind == durable_kind::measured && i < spec_.count;
  }

  void bump(std::atomic<std::size_t>& n, std::size_t target) noexcept {
    if (n.fetch_add(1, std::memory_order_acq_rel) + 1 == target) {
      std::lock_guard lock{m_};
      cv_.notify_all();
    }
  }

  template <class Done>
  void wait_for(std::chrono::steady_clock::time_point until, std::string_view phase, Done done) {
    std::unique_lock lock{m_};
    for (;;) {
      if (!failure_.empty()) throw std::runtime_error(failure_);
      if (done()) return;
      if (cv_.wait_until(lock, until) == std::cv_status::timeout && !done()) {
        if (!failure_.empty()) throw std::runtime_error(failure_);
        throw std::runtime_error(std::string{phase} + " messages not all confirmed" +
                                 (spec_.consumer ? " and consumed" : "") + " in time: " +
                                 std::to_string(phase == "warm-up" ? warm_confirmed_.load()
                                                                   : confirmed_.load()) +
                                 " confirmed, " +
                                 std::to_string(phase == "warm-up" ? warm_consumed_.load()
                                                                   : consumed_.load()) +
                                 " consumed");
      }
    }
  }

  const durable_spec& spec_;
  std::vector<std::chrono::steady_clock::time_point> sent_, confirmed_at_;
  std::vector<char> seen_, seen_warm_; // the consumer's thread only
  std::chrono::steady_clock::time_point last_consumed_{};
  std::atomic<std::size_t> confirmed_{0}, warm_confirmed_{0}, consumed_{0}, warm_consumed_{0};
  std::mutex m_;
  std::condition_variable cv_;
  std::string failure_;
};

/// How long a run may take before it fails: a phase's confirms (and
/// consumption) must all arrive within this of its last publish.
inline constexpr std::chrono::seconds durable_settle_within{120};

/// The publisher's side of a run, the same for every system:
/// `send(payload)` publishes one message confirmed (it may block while
/// spec.window publishes await their confirm), `complete()` waits as the
/// client's API says until what was sent is confirmed (or does nothing);
/// the confirms and the consumer feed `log`. Warm-ups first (waited for),
/// then the measured messages, flat out or paced at spec.rate (each timed
/// from when it was due: a stall counts against every message it delays).
/// Returns when the first measured message was published.
template <class Send, class Complete>
std::chrono::steady_clock::time_point publish_durable(const durable_spec& spec, durable_log& log,
                                                      Send&& send, Complete&& complete) {
  using clock = std::chrono::steady_clock;
  std::string payload(spec.size, '\0');
  for (std::size_t i = 9; i < spec.size; ++i) payload[i] = static_cast<char>('a' + i % 26);
  auto stamp = [&payload](durable_kind kind, std::uint64_t i) {
    payload[0] = static_cast<char>(kind);
    std::memcpy(payload.data() + 1, &i, sizeof i);
  };
  for (std::uint64_t i = 0; i < spec.warmups; ++i) {
    stamp(durable_kind::warmup, i);
    send(std::string_view{payload});
  }
  complete();
  log.wait_warm(clock::now() + durable_settle_within);

  const auto start = clock::now();
  for (std::uint64_t i = 0; i < spec.count; ++i) {
    stamp(durable_kind::measured, i);
    if (spec.rate > 0) {
      auto due = start + std::chrono::duration_cast<clock::duration>(
                           std::chrono::duration<double>(static_cast<double>(i) / spec.rate));
      std::this_thread::sleep_until(due);
      log.sent(i, due);
    } else {
      log.sent(i, clock::now());
    }
    send(std::string_view{payload});
  }
  complete();
  log.wait_measured(clock::now() + durable_settle_within);
  return start;
}

/// plexus: a broker (in this process, its own context and thread) with a
/// store in spec.store, synced as spec.sync, and one durable queue; a
/// publisher client publishing confirmed, and with spec.consumer a member
/// client (acked, spec.credit credit granted back per batch) acking each.
[[nodiscard]] durable_result plexus_durable_once(const durable_spec& spec);

/// nats-server with JetStream (-js -sd spec.store), a file stream with
/// WorkQueue retention and spec's limits (discard new: a full stream
/// refuses, as a full durable does); libnats js_PublishAsync with an ack
/// handler and js_PublishAsyncComplete, at most spec.window in flight; with
/// spec.consumer a push consumer (explicit ack, MaxAckPending =
/// spec.credit) read by a thread of ours that acks each message.
[[nodiscard]] durable_result nats_jetstream_once(const durable_spec& spec);

/// What a user sees when a broker restarts on a store that holds messages.
struct durable_recovery {
  double open_ms = 0;           // constructing the server: the store read (recovery)
  double serving_ms = 0;        // constructing it -> a new client's HELLO answered (the
                                // stored messages are back in their queue by then)
  double first_delivery_ms = 0; // constructing it -> that client, joining as a member, gets
                                // its first message
  std::size_t drained = 0;      // with drain: distinct messages the member got
};

/// Fills a fresh store in `dir`: a broker (sync batch) with one durable
/// queue holding up to `count`, `count` confirmed publishes of `size` B,
/// no member; the broker then stops. Returns the confirmed publishes/s.
double plexus_durable_fill(const std::filesystem::path& dir, std::size_t count, std::size_t size);

/// A new broker on the store `dir` filled by plexus_durable_fill: the time
/// to construct it (it reads the store), until a client that connects once
/// it is up is welcomed, and until that client, joining the durable as a
/// member, gets its first message. With `drain`, the member then
/// takes (and acks) every message and counts them: all `count` must come.
[[nodiscard]] durable_recovery plexus_durable_recover_once(const std::filesystem::path& dir,
                                                           std::size_t count, bool drain);

} // namespace plexus::bench
