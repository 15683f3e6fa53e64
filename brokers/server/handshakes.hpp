// SPDX-License-Identifier: Apache-2.0
#pragma once

// The cap on connections still in their ZeroMQ/CURVE handshake (issue
// #18): libzmq accepts and handshakes on its own thread and tells the
// server only through a socket monitor (ACCEPTED with the fd, then exactly
// one of HANDSHAKE_SUCCEEDED or HANDSHAKE_FAILED_* per connection, neither
// naming which). This is the bookkeeping, sans-IO: the server feeds it the
// events and closes (shutdown(2)) the connections it refuses.
//
// A count of accepted minus finished would drift forever if an event were
// ever lost (the monitor queue is bounded); so each admitted connection is
// also a timestamp, and none outlives handshake_timeout + slack: by then
// libzmq has finished it one way or the other.

#include <chrono>
#include <cstdint>
#include <deque>

namespace plexus::broker {

class handshake_gate {
public:
  using clock = std::chrono::steady_clock;

  /// `cap` 0: no cap (still counted).
  handshake_gate(std::size_t cap, std::chrono::milliseconds timeout) noexcept
    : cap_(cap), horizon_(timeout + std::chrono::seconds{1}) {}

  /// A connection was accepted: true to let it handshake, false if it is
  /// one too many (the server closes it; its failure event will follow).
  [[nodiscard]] bool accepted(clock::time_point now);
  /// A handshake ended: `failed` says whether it failed (a refused
  /// connection's end is one of these).
  void finished(bool failed, clock::time_point now);

  [[nodiscard]] std::size_t in_progress(clock::time_point now);
  [[nodiscard]] std::uint64_t refused() const noexcept { return refused_; }
  [[nodiscard]] std::uint64_t failed() const noexcept { return failed_; }
  [[nodiscard]] std::uint64_t succeeded() const noexcept { return succeeded_; }

private:
  void forget_old(clock::time_point now);

  std::size_t cap_;
  clock::duration horizon_;
  std::deque<clock::time_point> open_; // admitted, not known finished; oldest first
  std::uint64_t owed_ = 0; // failure events still to come from refused connections
  std::uint64_t refused_ = 0, failed_ = 0, succeeded_ = 0;
};

} // namespace plexus::broker
