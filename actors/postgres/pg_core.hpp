// SPDX-License-Identifier: Apache-2.0
#pragma once

// The PostgreSQL listener's logic without I/O, libpq or CAF: the options'
// checks, the reconnect backoff, the LISTEN statement, the events and
// their msg ids, and what each confirm code does to a publish.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "plexus/actors/postgres.hpp"

namespace plexus::actors::detail {

/// Every problem with `o` but the conninfo's syntax (libpq's to judge), as
/// "what: why" parts; empty when none.
[[nodiscard]] std::vector<std::string> option_problems(const postgres_options& o);

/// The waits between connection attempts: `min`, doubling, at most `max`;
/// back to `min` once a connection is made.
class backoff {
public:
  using ms = std::chrono::milliseconds;
  explicit backoff(ms min = ms{100}, ms max = ms{30000}) : min_(min), max_(max), next_(min) {}
  /// The wait before the next attempt; the one after is twice as long.
  ms next() {
    auto d = next_;
    next_ = std::min(next_ * 2, max_);
    return d;
  }
  void reset() { next_ = min_; }

private:
  ms min_, max_, next_;
};

/// `LISTEN "a"; LISTEN "b"`: each channel quoted (case kept).
[[nodiscard]] std::string listen_statement(const std::vector<std::string>& channels);

/// `pg:<name>:<16 hex of start_ns>`: the msg ids' stem for one instance.
[[nodiscard]] std::string id_stem(std::string_view name, std::uint64_t start_ns);
/// `<stem>-<n>`, then `#<attempt>` from the second attempt on.
[[nodiscard]] std::string event_id(std::string_view stem, std::uint64_t n, std::uint32_t attempt);

/// msgpack of the event.
[[nodiscard]] std::string encode_event(const postgres_event& e);

/// What a confirm code means for a publish on its `attempt` (from 1).
struct confirm_verdict {
  enum kind_t { published, retry, dropped } kind = published;
  bool no_interest = false;            // published, but nobody subscribes (101)
  std::chrono::milliseconds delay{};   // retry: wait this long first
};
inline constexpr std::uint32_t max_attempts = 4; // the first and 3 retries
[[nodiscard]] confirm_verdict judge_confirm(std::uint32_t code, std::uint32_t attempt);

} // namespace plexus::actors::detail
