// SPDX-License-Identifier: Apache-2.0
#pragma once

// The PostgreSQL trigger: LISTENs on named channels through libpq and
// publishes each notification (`NOTIFY orders, 'hello'`, or
// `pg_notify('orders', ...)` in a trigger) as an event (msgpack of
// plexus::actors::postgres_event: channel, payload, pid, received_at) to
// `<topic>.<channel>`, confirmed, in the order Postgres delivered them.
//
//   plexus::node node{argc, argv};
//   auto& db = node.service("db");
//   plexus::actors::add_postgres_listener(db, {.name = "shop", .conninfo = "host=/run/postgresql dbname=shop",
//                                              .channels = {"orders", "refunds"}, .topic = "pg.shop"});
//   db.function("ship").on("pg.shop.orders").handle(
//     [](const plexus::actors::postgres_event& e, plexus::context& ctx) -> plexus::result<void> { ... });
//
// The listener is a function, `pg-<name>`, of one permanent instance (a raw
// CAF actor): supervised, restarted when it crashes (it then connects
// afresh), listed by `plexus top`. Its connection lives on a thread of its
// own (libpq's socket under poll(), woken through an eventfd to stop), so
// no CAF scheduler thread waits on the database.
//
// Connection lost (or never made): a line on stderr, then a new attempt
// after 100 ms, doubling up to 30 s, and LISTEN again on every channel; a
// message on postgres_reconnect_topic(name), `_plexus.pg.<name>`, cuts the
// wait short. postgres_stats() counts connections, losses and failures.
//
// Delivery: Postgres keeps no notification for a listener that is not
// connected, and never sends one twice. So a NOTIFY committed while the
// listener is disconnected is lost (read the table if you need every
// row), and a notification the broker will not take is retried 3 times
// (250 ms, 500 ms, 1 s later, msg id `<id>#<attempt>`) when the status
// table says a retry may help, then logged on stderr and dropped: at most
// once. 101 (nobody subscribes) counts as published, said once. Each event
// has the msg id `pg:<name>:<16 hex of the instance's start>-<n>`, n
// counting from 1: unique across restarts, never the same for two events.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <msgpack.hpp>

#include "plexus/node.hpp"

namespace plexus::actors {

struct postgres_options {
  /// Names the listener: in the function (`pg-<name>`), the reconnect
  /// topic, each msg id and postgres_stats(). Letters, digits, `_` and
  /// `-`; at most 20 bytes (a msg id must fit the wire's 64 bytes).
  std::string name{};
  /// A libpq connection string ("host=/run/postgresql port=5432
  /// dbname=shop user=app") or URI ("postgresql://app@db/shop"); libpq's
  /// PG* environment variables fill what it leaves out. Checked by libpq's
  /// parser at add time; the server is first reached by the listener.
  /// A host name is resolved on the listener's thread (blocking it, not CAF).
  std::string conninfo{};
  /// Channels to LISTEN on, exactly as written (quoted: case kept). Each a
  /// topic token: letters, digits, `_` and `-`, at most 63 bytes (Postgres'
  /// identifier limit); at least one, no duplicates. SQL folds an unquoted
  /// name to lower case: `NOTIFY Orders` notifies `orders`.
  std::vector<std::string> channels{};
  /// Events go to `<topic>.<channel>` (subscribe `<topic>.>` for all): a
  /// concrete topic outside `$SYS.`, `$DLQ.`, `_INBOX.`.
  std::string topic{};
};

/// What the listener publishes for each notification.
struct postgres_event {
  std::string channel{};       // as LISTENed
  std::string payload{};       // NOTIFY's second argument ("" without one), up to 8000 bytes
  std::int32_t pid = 0;        // the notifying server process
  std::int64_t received_at = 0; // when the listener read it, ns since the Unix epoch
  MSGPACK_DEFINE_MAP(channel, payload, pid, received_at)
};

/// A listener's counters since it was added (kept across restarts of its actor).
struct postgres_listener_stats {
  bool connected = false;              // listening now
  std::uint64_t connects = 0;          // connections made and LISTENing, the first included
  std::uint64_t reconnects = 0;        // of those, the ones after the first
  std::uint64_t connection_losses = 0; // connections that were up and went down
  std::uint64_t connect_failures = 0;  // attempts that did not get to LISTEN
  std::uint64_t notifications = 0;     // received from Postgres
  std::uint64_t published = 0;         // confirmed by the broker (101 included)
  std::uint64_t retries = 0;           // publishes tried again
  std::uint64_t dropped = 0;           // refused for good: logged and lost
};

/// Adds the listener to `svc` as the function postgres_function_name(name)
/// and returns it (to tune it further). Checks every option first and
/// throws one std::invalid_argument naming each bad one: `postgres
/// listener "shop": conninfo: missing "=" after ...; channels: none`.
function_builder& add_postgres_listener(service& svc, postgres_options o);

/// `pg-<name>`: the listener's function (in stats, `plexus top`, metrics).
[[nodiscard]] std::string postgres_function_name(std::string_view name);

/// `_plexus.pg.<name>`: a message here ends a reconnect wait at once.
[[nodiscard]] std::string postgres_reconnect_topic(std::string_view name);

/// `<topic>.<channel>`: where a channel's events go.
[[nodiscard]] std::string postgres_event_topic(std::string_view topic, std::string_view channel);

/// The counters of listener `name` added to service `service_name` in this
/// process; none when there is no such listener.
[[nodiscard]] std::optional<postgres_listener_stats> postgres_stats(std::string_view service_name,
                                                                    std::string_view name);

} // namespace plexus::actors
