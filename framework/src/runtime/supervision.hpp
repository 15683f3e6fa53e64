// SPDX-License-Identifier: Apache-2.0
#pragma once

// The supervision tree of a node, as CAF actors:
//
//   root (node policy) ── service (strategy, intensity, backoff) ── pool ── instances
//
// Pools (function_pool.cpp) report crashes up; a service asks its
// supervisor core (supervisor.hpp) what to do and tells its pools; a
// service past its intensity escalates to the root, which restarts it
// after a backoff or stops the node. Every decision is published on
// $SYS.supervisor.*.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include "plexus/node.hpp"

namespace plexus::detail {

// pool -> service: (crash, function index, delivery count, message key, why)
using crash_atom = caf::atom_constant<caf::atom("crash")>;
// pool -> service: (exited, function index): an instance quit normally
using exited_atom = caf::atom_constant<caf::atom("exited")>;
// pool -> service: the first success after a crash
using healthy_atom = caf::atom_constant<caf::atom("healthy")>;
// service -> pool: (restart, delay ms): replace the instance that ended
using restart_atom = caf::atom_constant<caf::atom("restart")>;
// service -> pool: (recycle, replace): replace (or, if not, end) every instance
using recycle_atom = caf::atom_constant<caf::atom("recycle")>;
// service -> pools, service -> root (escalate, service index, why)
using escalate_atom = caf::atom_constant<caf::atom("escalate")>;
// root -> service (revive, delay ms, attempt); service -> pools (revive)
using revive_atom = caf::atom_constant<caf::atom("revive")>;
// service -> root (recovered, service index)
using recovered_atom = caf::atom_constant<caf::atom("recovered")>;
// node -> root / service: (children, actors) in declaration order
using children_atom = caf::atom_constant<caf::atom("children")>;
// node -> root -> services -> pools: drain and quit
using stop_atom = caf::atom_constant<caf::atom("stop")>;

/// Counters a pool keeps for the node (read from other threads).
struct pool_counters {
  std::atomic<std::uint64_t> ok{0}, errors{0}, crashes{0}, restarts{0}, rejected{0},
    quarantined{0}, recycled{0}, escalations{0}, revivals{0};
  std::atomic<bool> stopped{false};
  std::atomic<std::uint32_t> sid{0}; // the pool's current subscription
};

struct service_spec {
  std::string name;
  std::size_t index = 0; // among the node's services
  service_options opts;
  std::vector<std::string> functions;  // in declaration order
  std::vector<restart_type> restarts;  // per function
  std::vector<std::shared_ptr<pool_counters>> counters; // per function
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

/// Best effort (an event never blocks an actor): false when the outbox is full.
bool publish_event(client& conn, const supervisor_event& e);

} // namespace plexus::detail
