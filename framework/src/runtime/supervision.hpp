// SPDX-License-Identifier: Apache-2.0
#pragma once

// The supervision tree of a node, as CAF actors:
//
//   root (node policy) ── service (strategy, intensity, backoff) ── pool ── instances
//
// A pool (function_pool.cpp) decides on its own instance's crash with the
// service's shared supervisor core (supervisor.hpp) and restarts it; what
// spans pools (replacing siblings, escalating) goes to the service actor,
// which tells its pools; a service past its intensity escalates to the
// root, which restarts it after a backoff or stops the node. Every
// decision is published on $SYS.supervisor.*.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include "plexus/metrics.hpp"
#include "plexus/node.hpp"
#include "supervisor.hpp"

namespace plexus::detail {

// pool -> service: (recycle, functions, crashed function, why): replace
// every instance of those; service -> pool: (recycle, replace)
using recycle_atom = caf::atom_constant<caf::atom("recycle")>;
// pool -> service (escalate, function, why, intensity); service -> pools
// (escalate); service -> root (escalate, service index, why)
using escalate_atom = caf::atom_constant<caf::atom("escalate")>;
// root -> service (revive, delay ms, attempt); service -> pools (revive)
using revive_atom = caf::atom_constant<caf::atom("revive")>;
// pool -> service (recovered): a revived service works again;
// service -> root (recovered, service index)
using recovered_atom = caf::atom_constant<caf::atom("recovered")>;
// node -> root / service: (children, actors) in declaration order
using children_atom = caf::atom_constant<caf::atom("children")>;
// node -> root -> services -> pools: drain and quit
using stop_atom = caf::atom_constant<caf::atom("stop")>;

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

/// Counters a pool keeps for the node (read from other threads).
struct pool_counters {
  std::atomic<std::uint64_t> ok{0}, errors{0}, crashes{0}, restarts{0}, rejected{0},
    quarantined{0}, recycled{0}, escalations{0}, revivals{0};
  std::atomic<std::uint64_t> redeliveries{0}; // messages taken in with a delivery count above 1
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

struct service_spec {
  std::string name;
  std::size_t index = 0; // among the node's services
  service_options opts;
  std::vector<std::string> functions;  // in declaration order
  std::vector<restart_type> restarts;  // per function
  std::vector<std::shared_ptr<pool_counters>> counters; // per function
  std::shared_ptr<shared_supervisor> sup;
  client* conn = nullptr;
  caf::actor root;
};

struct root_spec {
  node_options opts;
  std::vector<std::string> services;
  client* conn = nullptr;
  std::function<void()> stop_node; // the node's failure policy fired
};

caf::actor spawn_service(caf::actor_system& sys, service_spec spec);
caf::actor spawn_root(caf::actor_system& sys, root_spec spec);

/// A seed for backoff jitter.
std::uint64_t fresh_seed();

/// Best effort (an event never blocks an actor): false when the outbox is full.
bool publish_event(client* conn, const supervisor_event& e);

} // namespace plexus::detail
