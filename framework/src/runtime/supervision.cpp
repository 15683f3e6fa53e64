// SPDX-License-Identifier: Apache-2.0
#include "supervision.hpp"

#include <chrono>
#include <optional>
#include <random>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "supervisor.hpp"

namespace plexus::detail {

namespace {

// ---------------------------------------------------------------- service

struct service_state {
  service_spec spec;
  std::vector<caf::actor> pools;
  static inline const char* name = "plexus.service";
};

using service_actor = caf::stateful_actor<service_state>;

supervisor_event event(const service_state& s, std::string kind, std::size_t function,
                       std::string reason) {
  supervisor_event e;
  e.kind = std::move(kind);
  if (s.spec.conn) e.node = s.spec.conn->node_id();
  e.service = s.spec.name;
  if (function < s.spec.functions.size()) e.function = s.spec.functions[function];
  e.reason = std::move(reason);
  return e;
}

constexpr std::size_t no_function = static_cast<std::size_t>(-1);

caf::behavior service_behavior(service_actor* self, service_spec spec) {
  self->state.spec = std::move(spec);
  return {
    [self](children_atom, const std::vector<caf::actor>& pools) { self->state.pools = pools; },
    // one_for_all / rest_for_one: a pool's crash replaces these functions' instances.
    [self](recycle_atom, const std::vector<std::size_t>& functions, std::size_t crashed,
           const std::string& why) {
      auto& s = self->state;
      for (auto i : functions) {
        if (i >= s.pools.size()) continue;
        self->send(s.pools[i], recycle_atom::value, s.spec.restarts[i] != temporary);
        auto name = crashed < s.spec.functions.size() ? s.spec.functions[crashed] : "?";
        publish_event(s.spec.conn, event(s, "recycle", i, name + " crashed: " + why));
      }
    },
    [self](escalate_atom, std::size_t fn, const std::string& why, std::uint32_t intensity) {
      auto& s = self->state;
      for (auto& p : s.pools) self->send(p, escalate_atom::value);
      for (auto& c : s.spec.counters) ++c->escalations;
      auto e = event(s, "escalate", fn, why);
      e.intensity = intensity;
      publish_event(s.spec.conn, e);
      self->send(s.spec.root, escalate_atom::value, s.spec.index, why);
    },
    [self](recovered_atom) {
      self->send(self->state.spec.root, recovered_atom::value, self->state.spec.index);
    },
    [self](revive_atom, std::uint64_t delay_ms, std::uint32_t attempt) {
      auto& s = self->state;
      if (!s.spec.sup->revive()) return;
      for (auto& p : s.pools) self->send(p, revive_atom::value);
      for (auto& c : s.spec.counters) ++c->revivals;
      auto e = event(s, "revive", no_function, "restarted by the node's root supervisor");
      e.delay_ms = delay_ms;
      e.attempt = attempt;
      publish_event(s.spec.conn, e);
    },
    [self](stop_atom) {
      for (auto& p : self->state.pools) self->send(p, stop_atom::value);
      self->quit();
    },
  };
}

// ---------------------------------------------------------------- root

struct root_state {
  root_spec spec;
  std::optional<root_supervisor> core;
  std::vector<caf::actor> services;
  static inline const char* name = "plexus.root";
};

using root_actor = caf::stateful_actor<root_state>;

caf::behavior root_behavior(root_actor* self, root_spec spec) {
  auto& st = self->state;
  st.spec = std::move(spec);
  st.core.emplace(st.spec.opts.on_failure, st.spec.opts.restart_initial, st.spec.opts.restart_max,
                  st.spec.services.size(), fresh_seed());
  return {
    [self](children_atom, const std::vector<caf::actor>& services) {
      self->state.services = services;
    },
    [self](escalate_atom, std::size_t service, const std::string& why) {
      auto& s = self->state;
      auto d = s.core->escalated(service);
      if (d.stop_node || service >= s.services.size()) {
        supervisor_event e;
        e.kind = "stop";
        if (s.spec.conn) e.node = s.spec.conn->node_id();
        e.service = service < s.spec.services.size() ? s.spec.services[service] : "";
        e.reason = "service past its restart intensity (" + why + "): the node stops";
        publish_event(s.spec.conn, e);
        if (s.spec.stop_node) s.spec.stop_node();
        return;
      }
      self->delayed_send(s.services[service], d.delay, revive_atom::value,
                         static_cast<std::uint64_t>(d.delay.count()), d.attempt);
    },
    [self](recovered_atom, std::size_t service) { self->state.core->recovered(service); },
    [self](stop_atom) {
      for (auto& s : self->state.services) self->send(s, stop_atom::value);
      self->quit();
    },
  };
}

} // namespace

caf::actor spawn_service(caf::actor_system& sys, service_spec spec) {
  return sys.spawn(service_behavior, std::move(spec));
}

caf::actor spawn_root(caf::actor_system& sys, root_spec spec) {
  return sys.spawn(root_behavior, std::move(spec));
}

std::uint64_t fresh_seed() {
  std::random_device rd;
  return (std::uint64_t{rd()} << 32) ^ rd();
}

bool publish_event(client* conn, const supervisor_event& e) {
  if (!conn) return false; // a tree without a connection (tests)
  auto topic = "$SYS.supervisor." + e.kind + "." + e.service;
  if (!e.function.empty()) topic += "." + e.function;
  return conn->try_publish(topic, encode_payload(e));
}

} // namespace plexus::detail
