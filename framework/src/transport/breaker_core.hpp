// SPDX-License-Identifier: Apache-2.0
#pragma once

// Request circuit breakers, sans-IO: one state machine per callee topic,
// driven by the time the caller passes in (a fake clock in tests). The
// client's shell (client.cpp) asks admit() before a request goes, tells
// record() how it ended, and publishes take_transitions() as
// `$SYS.breaker.<node>` events. No threads, no sockets, no locks: the
// shell serialises calls.

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "plexus/client.hpp"

namespace plexus::detail {

/// How a request ended, as far as a breaker cares.
enum class request_outcome : std::uint8_t {
  success,       // a reply (or a failure of the callee that does not count)
  timeout,       // no reply in time, or the callee ran past its deadline
  no_responders, // nobody subscribes
  crash,         // the callee threw
  error,         // the callee failed any other way
  overloaded,    // a bounded queue on the way was full
  neutral,       // it never reached a callee: says nothing of it
};

/// The outcome of a request's reply: its code, and (status_failed) how the
/// callee said it ended (reply::failure, a span_status name).
[[nodiscard]] request_outcome outcome_of(std::uint32_t code, std::string_view failure) noexcept;
/// Whether `o` is a failure under these options (success and neutral never are).
[[nodiscard]] bool counts_as_failure(const breaker_options& opts, request_outcome o) noexcept;

/// What admit() hands out with a request it lets through; record() takes
/// it back. A ticket from before the breaker's last change of state is
/// ignored: an outcome of a request sent while closed says nothing once
/// it opened.
struct breaker_ticket {
  std::uint64_t generation = 0;
  bool tracked = false; // false: no breaker for the topic (max_topics reached)
  bool trial = false;   // a half-open trial
};

struct breaker_admission {
  bool admitted = true;
  breaker_ticket ticket{};
  /// Refused: the state, what opened it, and the wait left until half-open
  /// (0 when half-open with its trials in flight).
  breaker_state state = breaker_state::closed;
  std::uint64_t requests = 0, failures = 0;
  std::chrono::nanoseconds half_open_in{0};
};

/// A change of state, for the `$SYS.breaker.*` event.
struct breaker_transition {
  std::string topic;
  breaker_state to = breaker_state::closed;
  std::uint64_t requests = 0, failures = 0;
  std::uint32_t trials = 0;
};

class breaker_core {
public:
  using clock = std::chrono::steady_clock;
  using time_point = clock::time_point;
  /// The window slides in this many steps.
  static constexpr std::size_t steps = 10;

  explicit breaker_core(breaker_options opts);

  /// A request to `topic` is about to be sent at `now`: let through (with
  /// a ticket for record()) or refused. An open breaker whose wait is
  /// over becomes half-open here.
  [[nodiscard]] breaker_admission admit(std::string_view topic, time_point now);
  /// The request admitted with `ticket` ended with `o` at `now`.
  void record(std::string_view topic, const breaker_ticket& ticket, request_outcome o, time_point now);
  /// Changes of state since the last call, oldest first.
  [[nodiscard]] std::vector<breaker_transition> take_transitions();

  /// Every breaker at `now` (open ones past their wait become half-open).
  [[nodiscard]] std::vector<breaker_info> snapshot(time_point now);
  [[nodiscard]] breaker_state state(std::string_view topic, time_point now);
  [[nodiscard]] const breaker_options& options() const noexcept { return opts_; }
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

private:
  struct step {
    std::int64_t index = -1; // which step of time it counts; -1 unused
    std::uint64_t requests = 0, failures = 0;
  };
  struct entry {
    breaker_state state = breaker_state::closed;
    std::uint64_t generation = 1;
    std::array<step, steps> window{};
    time_point opened_at{};
    std::uint64_t open_requests = 0, open_failures = 0; // what opened it
    std::uint32_t trials_out = 0, trials_passed = 0;    // half-open
    std::uint64_t opened = 0, refused = 0;
  };

  entry* find_or_add(std::string_view topic, time_point now);
  [[nodiscard]] std::int64_t step_of(time_point now) const noexcept;
  /// Requests and failures in the window at `now`.
  [[nodiscard]] std::pair<std::uint64_t, std::uint64_t> totals(const entry& e, time_point now) const;
  void wake(entry& e, std::string_view topic, time_point now); // open -> half-open when due
  void open(entry& e, std::string_view topic, time_point now, std::uint64_t requests,
            std::uint64_t failures);
  void change(entry& e, std::string_view topic, breaker_state to, std::uint64_t requests,
              std::uint64_t failures, std::uint32_t trials);

  breaker_options opts_;
  std::chrono::nanoseconds step_width_;
  std::map<std::string, entry, std::less<>> entries_;
  std::vector<breaker_transition> transitions_;
};

/// The `$SYS.breaker.*` payload of an event (a msgpack map).
[[nodiscard]] std::string encode_breaker_event(const breaker_event& e);
/// "opened", "half_open" or "closed": the event's word for a new state.
[[nodiscard]] const char* event_word(breaker_state s) noexcept;

} // namespace plexus::detail
