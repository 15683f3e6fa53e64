// SPDX-License-Identifier: Apache-2.0
#pragma once

// Supervision decisions, sans-IO: what a service supervisor does when one
// of its functions' instances crashes (restart it, after which backoff;
// replace which siblings; escalate?) and what the node's root supervisor
// does with a service that escalated. No CAF, no clock of its own: the
// actors in supervision.cpp feed it events and carry out its plans, and
// the unit tests drive it with a fake clock.

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "plexus/node.hpp"

namespace plexus::detail {

using steady = std::chrono::steady_clock;

/// Exponential backoff with jitter. The first step after a reset waits
/// `first` (0 for instance restarts: one crash is no reason to wait); the
/// n-th further step waits a uniform draw from [d/2, d] with
/// d = min(max, initial * 2^(n-1)), so restarts of many instances or nodes
/// do not fall into step.
class backoff {
public:
  backoff(std::chrono::milliseconds first, std::chrono::milliseconds initial,
          std::chrono::milliseconds max, std::uint64_t seed);
  std::chrono::milliseconds next();
  void reset() noexcept { steps_ = 0; }
  [[nodiscard]] std::uint32_t steps() const noexcept { return steps_; }

private:
  std::chrono::milliseconds first_, initial_, max_;
  std::uint32_t steps_ = 0;
  std::mt19937_64 rng_;
};

/// What a service supervisor decides on one event.
struct supervisor_plan {
  bool restart = false;               // replace the instance that ended
  std::chrono::milliseconds delay{0}; // ... after this backoff
  /// Functions (by index) whose every instance is replaced as well
  /// (one_for_all: all of them, rest_for_one: the crashed one and those
  /// declared after it); temporary ones are stopped instead.
  std::vector<std::size_t> recycle;
  bool escalate = false; // past the restart intensity: stop the service
  std::uint32_t intensity = 0; // fresh crashes counted in the window now
};

/// One crash, as the pool that saw it reports it.
struct crash_report {
  std::size_t function = 0;
  std::uint32_t delivery = 1; // the message's delivery count
  std::string key;            // the message's identity across redeliveries
};

class supervisor {
public:
  /// `restarts[i]` is the restart type of function i, in declaration order.
  supervisor(service_options opts, std::vector<restart_type> restarts, std::uint64_t seed);

  /// An instance of a function crashed on a message. Restart intensity
  /// counts fresh messages only (first delivery; one entry per message):
  /// a redelivered message is a poison suspect, quarantined by its pool,
  /// and must never stop the service.
  supervisor_plan crashed(const crash_report& c, steady::time_point now);
  /// An instance ended without an error (only a raw actor can): restarted
  /// only when its function is permanent.
  supervisor_plan exited(std::size_t function) const;
  /// A message succeeded: the service works, the count and backoff reset.
  void succeeded() noexcept;
  /// The root restarted the service: a fresh start.
  void reset() noexcept;

  [[nodiscard]] bool escalated() const noexcept { return escalated_; }

private:
  std::vector<std::size_t> scope(std::size_t function) const;

  service_options opts_;
  std::vector<restart_type> restarts_;
  std::deque<std::pair<steady::time_point, std::string>> window_;
  backoff backoff_;
  bool escalated_ = false;
};

/// The node's root supervisor: a service that escalated is restarted
/// after a backoff that grows while it keeps failing, or the node stops.
class root_supervisor {
public:
  root_supervisor(node_options::failure_policy policy, std::chrono::milliseconds initial,
                  std::chrono::milliseconds max, std::size_t services, std::uint64_t seed);

  struct decision {
    bool stop_node = false;
    std::chrono::milliseconds delay{0}; // before the service restarts
    std::uint32_t attempt = 0;          // restarts in a row, this one included
  };
  decision escalated(std::size_t service);
  /// The restarted service handled a message: its backoff starts over.
  void recovered(std::size_t service) noexcept;

private:
  node_options::failure_policy policy_;
  std::vector<backoff> backoff_;
};

/// A service's supervisor core, shared by its pools: a pool decides on its
/// own instance's crash at once (no message round trip before the
/// replacement starts), and only what spans pools goes through the
/// service actor.
class shared_supervisor {
public:
  shared_supervisor(service_options opts, std::vector<restart_type> restarts, std::uint64_t seed)
    : core_(opts, std::move(restarts), seed) {}

  supervisor_plan crashed(const crash_report& c, steady::time_point now) {
    std::lock_guard lock{m_};
    return core_.crashed(c, now);
  }
  supervisor_plan exited(std::size_t function) {
    std::lock_guard lock{m_};
    return core_.exited(function);
  }
  /// True for the first success after the root revived the service.
  bool succeeded() {
    std::lock_guard lock{m_};
    core_.succeeded();
    return std::exchange(revived_, false);
  }
  /// The root's restart; false when the service had not escalated.
  bool revive() {
    std::lock_guard lock{m_};
    if (!core_.escalated()) return false;
    core_.reset();
    revived_ = true;
    return true;
  }

private:
  std::mutex m_;
  supervisor core_;
  bool revived_ = false;
};

} // namespace plexus::detail
