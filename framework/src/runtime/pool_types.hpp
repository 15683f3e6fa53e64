// SPDX-License-Identifier: Apache-2.0
#pragma once

// What a function pool works with, free of CAF: the deliveries it takes
// in, the runs it hands its instances, the trackers of reliable
// invocations, and the counters the node reads. Shared by the pool core
// (pool_core.hpp), its actor shell (function_pool.cpp) and the instances.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "plexus/metrics.hpp"
#include "plexus/node.hpp"

namespace plexus::detail {

/// A delivered message. Its strings are views into the delivery_block it
/// came in, which every delivery_ptr to it keeps alive.
struct delivery {
  std::uint32_t sid = 0;
  std::uint64_t seq = 0;
  std::uint32_t count = 1; // delivery count
  std::uint64_t deadline_ns = 0;
  std::int64_t arrived_ns = 0; // steady clock, when the node took it in
  std::string_view topic, payload, msg_id, reply_to, traceparent;
};
/// Points into a delivery_block (an aliasing shared_ptr: no allocation).
using delivery_ptr = std::shared_ptr<const delivery>;

/// An owned copy of a batch the connector delivered (its views die with
/// its callback): the deliveries and, in one buffer, all their strings.
struct delivery_block {
  std::vector<delivery> items;
  std::unique_ptr<char[]> bytes;
};
using delivery_batch = std::shared_ptr<const delivery_block>;

/// A block of `views` (whose strings may die after the call) with their
/// strings copied into one buffer: the block, this vector and the buffer
/// are all it allocates, none per message. pool_core.cpp.
[[nodiscard]] delivery_batch copy_deliveries(std::vector<delivery> views);

/// The confirmed publishes of one reliable invocation. `pending` starts at
/// 1 for the pool's settle and counts each publish not yet confirmed;
/// whoever takes it to 0 settles the message: the pool at once when every
/// confirm is in, else the last confirm, through the pool (published_atom).
struct publish_tracker {
  std::atomic<std::uint32_t> pending{1};
  std::atomic<std::uint32_t> failed{0}; // a confirm's code other than ok / no interest
  std::uint32_t published = 0;          // the instance's count, for derived msg ids
};
using tracker_ptr = std::shared_ptr<publish_tracker>;

/// One item's outcome in work_run::outcomes. `overloaded`: its handler
/// published to a queue group the broker had paused (flow control): the
/// downstream is full, which is not the message's fault.
enum outcome : std::uint8_t { ok = 0, failed = 1, rejected = 2, overloaded = 3 };

/// A run of messages handed to one instance in one actor message. The
/// instance records each outcome and how far it got, so after a crash
/// the pool knows which message did it and which never started.
struct work_run {
  std::vector<delivery_ptr> items;
  std::vector<std::pair<std::uint8_t, std::string>> outcomes; // per item, once run
  std::size_t finished = 0; // items with an outcome
  std::vector<tracker_ptr> trackers; // per item, for reliable functions that published
  // Per item, when its handler's error asked for a delay of its own
  // (error::retry_after; negative elsewhere): sized on the first such.
  std::vector<std::chrono::milliseconds> retry_after;
  double jitter = 0; // the pool's draw for this run, in [0, 1): see jitter_unit
  std::optional<std::string> crash; // the handler threw on items[finished]
  // The run stopped at an item whose publish found `paused_topic` paused:
  // the items after it never started (the pool holds them for the resume).
  bool overloaded = false;
  std::string paused_topic;
  bool cold = false;        // the first run of a function started from zero
  std::int64_t started_ns = 0; // steady clock, when its first handler began
  std::uint64_t init_ns = 0;   // the init hook ran first, this long
};
using work_run_ptr = std::shared_ptr<work_run>;

/// The jitter of a run's item `index`: the run's one draw, spread over its
/// items by the golden ratio (so items that failed together still come
/// back apart), in [0, 1). The pool and the item's context compute the
/// same value: ctx.next_retry_delay() is the NACK's delay.
[[nodiscard]] double jitter_unit(double draw, std::size_t index) noexcept;

/// The backoff before the try after delivery `count` (1 = the first)
/// failed: p.initial * p.multiplier^(count - 1), at most p.max_delay,
/// jittered with `unit` in [0, 1). pool_core.cpp.
[[nodiscard]] std::chrono::milliseconds backoff_delay(const retry_policy& p, std::uint32_t count,
                                                      double unit) noexcept;

/// How long a message whose handler found its downstream paused waits in
/// the broker before it comes back: the retry policy's first delay (its
/// jitter drawn from `unit`), whatever its delivery count (the pause is
/// not the message's fault). The pool gets it back only once the
/// downstream is resumed (it holds no credit meanwhile).
[[nodiscard]] std::chrono::milliseconds overload_delay(const function_options& o, double unit) noexcept;

/// Deliveries a failing message gets before it is dead-lettered: the
/// retry policy's max + 1, never past max_deliver, one more for a
/// rate-limited function (a message deferred for its turn used a
/// delivery). The pool subscribes with it as the broker's max_deliver.
[[nodiscard]] std::uint32_t delivery_limit(const function_options& o) noexcept;

/// What follows an error on delivery `count`: a retry after `delay`, or
/// (retry false: its last try) the broker's dead-letter queue. `asked`: error::retry_after
/// (negative: none), which replaces the backoff, never the limit.
struct retry_decision {
  bool retry = false;
  std::chrono::milliseconds delay{0};
};
[[nodiscard]] retry_decision decide_retry(const function_options& o, std::uint32_t count, double unit,
                                          std::chrono::milliseconds asked) noexcept;

[[nodiscard]] inline std::int64_t steady_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

/// A function's counters and gauges, written by its pool and read by the
/// node's stats and metrics.
struct pool_counters {
  std::atomic<std::uint64_t> ok{0}, errors{0}, crashes{0}, restarts{0}, rejected{0},
    quarantined{0}, recycled{0}, escalations{0}, revivals{0};
  std::atomic<std::uint64_t> redeliveries{0}; // messages taken in with a delivery count above 1
  std::atomic<std::uint64_t> retries{0};   // errors NACKed for a later try (backoff)
  std::atomic<std::uint64_t> throttled{0}; // messages over the rate, NACKed to wait for their turn
  std::atomic<std::uint64_t> shed{0};      // requests refused at once: max_queued were waiting
  // Flow control downstream: invocations that published to a paused queue
  // group (their message NACKed to wait, or held), and the times the pool
  // withdrew its credit for it until the group was resumed.
  std::atomic<std::uint64_t> overloaded{0}, downstream_pauses{0};
  // Messages taken in, then given back to the broker unfinished: NACKed
  // at a stop or an escalation, left unacked past a stop's confirm grace
  // or its drain timeout. Each time: a message can go back twice.
  std::atomic<std::uint64_t> handed_back{0};
  std::atomic<bool> stopped{false};
  std::atomic<std::uint32_t> sid{0}; // the pool's current subscription
  std::atomic<std::uint32_t> instances{0}, live{0}; // the target, and actors alive
  std::atomic<std::uint64_t> cold_starts{0}, cold_start_ns_total{0}, cold_start_ns_max{0};
  std::atomic<std::uint64_t> inits{0}, init_ns_max{0};
  // Gauges, set by the pool after each of its messages: messages whose
  // handler runs (or waits on its request), messages taken in and not yet
  // started, and the credit the broker holds for the pool's subscription.
  std::atomic<std::uint32_t> in_flight{0}, queue_depth{0};
  std::atomic<std::int64_t> credit{0};
  observe::latency_histogram duration; // handler start -> its result, every invocation
};

} // namespace plexus::detail
