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
#include "pool_types.hpp"
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
