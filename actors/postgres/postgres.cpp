// SPDX-License-Identifier: Apache-2.0
// The PostgreSQL listener's actor: starts the connection thread (pg_io),
// publishes what it hands over (confirmed, retried as pg_core judges),
// counts and logs the connection's ups and downs.
#include "plexus/actors/postgres.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

#include <caf/actor_cast.hpp>
#include <caf/send.hpp>

#include "pg_core.hpp"
#include "pg_io.hpp"
#include "actor_support.hpp"
#include "plexus/actor.hpp"
#include "plexus/wire.hpp"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(plexus::actors::postgres_event)

namespace plexus::actors {

namespace {

using namespace std::chrono;
using namespace detail;

using notify_atom = caf::atom_constant<caf::atom("pg_notify")>;
using confirm_atom = caf::atom_constant<caf::atom("pg_conf")>;
using retry_atom = caf::atom_constant<caf::atom("pg_retry")>;

// The counters, shared by the listener's thread, its actor and postgres_stats().
struct counters {
  std::atomic<bool> connected{false};
  std::atomic<std::uint64_t> connects{0}, reconnects{0}, losses{0}, failures{0}, notifications{0},
    published{0}, retries{0}, dropped{0};
};

std::mutex registry_mutex;
std::map<std::string, std::shared_ptr<counters>, std::less<>> registry; // "<service>/<name>"

struct config {
  postgres_options o;
  std::string who; // "<service>.pg-<name>", for the log
  std::shared_ptr<counters> count;
};

using detail::log_line;

struct pending {
  std::string topic, payload;
};

// One instance's state: fresh after a restart (a new connection, new ids).
struct listener_state {
  std::shared_ptr<const config> cfg;
  caf::event_based_actor* self = nullptr;
  client* conn = nullptr;
  std::unique_ptr<pg_listener> pg;
  std::string stem;                         // the msg ids' stem
  std::uint64_t next_n = 0;                 // the last event's number
  std::map<std::uint64_t, pending> waiting; // published, not yet settled
  bool said_no_interest = false;
};
using state_ptr = std::shared_ptr<listener_state>;

void publish(const state_ptr& st, std::uint64_t n, std::uint32_t attempt) {
  auto it = st->waiting.find(n);
  if (it == st->waiting.end()) return;
  auto id = event_id(st->stem, n, attempt);
  publish_options po;
  po.msg_id = id;
  auto addr = st->self->address();
  // Runs on the client's I/O thread (or here): only a message goes back.
  st->conn->publish_confirmed(it->second.topic, it->second.payload,
                              [addr, n, attempt](std::uint32_t code) {
                                if (auto a = caf::actor_cast<caf::actor>(addr))
                                  caf::anon_send(a, confirm_atom::value, n, attempt, code);
                              },
                              po);
}

void on_notify(const state_ptr& st, postgres_event& e) {
  auto n = ++st->next_n;
  auto topic = postgres_event_topic(st->cfg->o.topic, e.channel);
  st->waiting.emplace(n, pending{std::move(topic), encode_event(e)});
  publish(st, n, 1);
}

void on_confirm(const state_ptr& st, std::uint64_t n, std::uint32_t attempt, std::uint32_t code) {
  const auto& c = *st->cfg;
  auto it = st->waiting.find(n);
  if (it == st->waiting.end()) return;
  auto v = judge_confirm(code, attempt);
  auto id = event_id(st->stem, n, attempt);
  if (v.kind == confirm_verdict::retry) {
    if (attempt == 1)
      log_line("warn", c.who, id,
               std::string{"not published: "} + status_text(code) + " (" + std::to_string(code) +
                 "): tried again with backoff");
    ++c.count->retries;
    st->self->delayed_send(st->self, v.delay, retry_atom::value, n, attempt + 1);
    return;
  }
  if (v.kind == confirm_verdict::dropped) {
    ++c.count->dropped;
    log_line("error", c.who, id,
             "notification on " + it->second.topic + " dropped after " + std::to_string(attempt) +
               " attempt(s): " + status_text(code) + " (" + std::to_string(code) +
               "); Postgres does not send it again");
  } else {
    ++c.count->published;
    if (v.no_interest && !st->said_no_interest) {
      st->said_no_interest = true;
      log_line("info", c.who, id,
               "nobody subscribes to " + it->second.topic + ": notifications go nowhere (said once)");
    }
  }
  st->waiting.erase(it);
}

caf::behavior listener_actor(caf::event_based_actor* self, client& conn, std::shared_ptr<const config> cfg) {
  auto st = std::make_shared<listener_state>();
  st->cfg = std::move(cfg);
  st->self = self;
  st->conn = &conn;
  auto start_ns = duration_cast<nanoseconds>(system_clock::now().time_since_epoch()).count();
  st->stem = id_stem(st->cfg->o.name, static_cast<std::uint64_t>(start_ns));
  auto addr = self->address();
  auto count = st->cfg->count;
  auto who = st->cfg->who;
  pg_listener::callbacks cb{
    [count, who](bool again) {
      count->connected = true;
      ++count->connects;
      if (again) ++count->reconnects;
      log_line("info", who, "-", again ? "reconnected: listening again (notifications sent meanwhile are lost)"
                                       : "connected: listening");
    },
    [count, who](bool was_up, const std::string& why, milliseconds retry_in) {
      count->connected = false;
      ++(was_up ? count->losses : count->failures);
      log_line(was_up ? "warn" : "error", who, "-",
               std::string{was_up ? "connection lost: " : "cannot connect: "} + why + "; reconnecting in " +
                 std::to_string(retry_in.count()) + " ms");
    },
    [count, addr](std::string channel, std::string payload, std::int32_t pid, std::int64_t at) {
      ++count->notifications;
      if (auto a = caf::actor_cast<caf::actor>(addr))
        caf::anon_send(a, notify_atom::value, postgres_event{std::move(channel), std::move(payload), pid, at});
    },
  };
  std::string why;
  st->pg = pg_listener::start(st->cfg->o.conninfo, st->cfg->o.channels, count->connects > 0, std::move(cb), why);
  if (!st->pg) throw std::runtime_error(st->cfg->who + ": cannot start the listener: " + why);
  // The connection's thread ends (joined) with the instance.
  self->attach_functor([st] {
    st->pg.reset();
    st->cfg->count->connected = false;
  });
  return {
    [st](notify_atom, postgres_event& e) { on_notify(st, e); },
    [st](confirm_atom, std::uint64_t n, std::uint32_t attempt, std::uint32_t code) {
      on_confirm(st, n, attempt, code);
    },
    [st](retry_atom, std::uint64_t n, std::uint32_t attempt) { publish(st, n, attempt); },
    // A message on the reconnect topic: a reconnect wait ends now.
    [st](handle_atom, const envelope&) -> result<void> {
      st->pg->reconnect_now();
      return {};
    },
  };
}

std::shared_ptr<const config> check(const service& svc, postgres_options o) {
  auto problems = option_problems(o);
  if (!o.conninfo.empty())
    if (auto why = conninfo_problem(o.conninfo); !why.empty()) problems.push_back("conninfo: " + why);
  if (!problems.empty()) {
    std::string all;
    for (const auto& p : problems) all += (all.empty() ? "" : "; ") + p;
    throw std::invalid_argument("postgres listener \"" + o.name + "\": " + all);
  }
  auto count = std::make_shared<counters>();
  {
    std::lock_guard lock{registry_mutex};
    registry[svc.name() + "/" + o.name] = count;
  }
  auto who = svc.name() + "." + postgres_function_name(o.name);
  return std::make_shared<const config>(config{std::move(o), std::move(who), std::move(count)});
}

} // namespace

std::string postgres_function_name(std::string_view name) { return "pg-" + std::string{name}; }

std::string postgres_reconnect_topic(std::string_view name) { return "_plexus.pg." + std::string{name}; }

std::string postgres_event_topic(std::string_view topic, std::string_view channel) {
  return std::string{topic} + "." + std::string{channel};
}

std::optional<postgres_listener_stats> postgres_stats(std::string_view service_name, std::string_view name) {
  std::shared_ptr<counters> c;
  {
    std::lock_guard lock{registry_mutex};
    auto it = registry.find(std::string{service_name} + "/" + std::string{name});
    if (it == registry.end()) return std::nullopt;
    c = it->second;
  }
  return postgres_listener_stats{c->connected, c->connects, c->reconnects, c->losses, c->failures,
                                 c->notifications, c->published, c->retries, c->dropped};
}

function_builder& add_postgres_listener(service& svc, postgres_options o) {
  auto cfg = check(svc, std::move(o));
  return detail::add_singleton(svc, postgres_function_name(cfg->o.name), postgres_reconnect_topic(cfg->o.name),
                               [cfg](caf::event_based_actor* self, client& conn) {
                                 return listener_actor(self, conn, cfg);
                               });
}

} // namespace plexus::actors
