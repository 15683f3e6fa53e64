// SPDX-License-Identifier: Apache-2.0
#pragma once

// The timer trigger: a schedule (cron or `@every`, see schedule.hpp) that
// publishes a tick (msgpack of plexus::actors::tick) to a topic at each
// fire, once across every node that runs it: each node publishes the fire
// confirmed, with msg id fire_id(name, fire time) as a shared id, and the
// broker keeps the first and drops the others.
//
//   plexus::node node{argc, argv};
//   auto& ops = node.service("ops");
//   plexus::actors::add_timer(ops, {.name = "nightly", .schedule = "0 2 * * *",
//                                   .topic = "reports.nightly", .zone = "Europe/Berlin"});
//   ops.function("report").on("reports.nightly").handle(
//     [](const plexus::actors::tick& t, plexus::context& ctx) -> plexus::result<void> { ... });
//
// The timer is a function, `timer-<name>`, of one permanent instance (a raw
// CAF actor): it is supervised, restarted when it crashes, and listed by
// `plexus top` like any other. It subscribes to fire_now_topic(name),
// `_plexus.timer.<name>` (one queue group across nodes): any message there
// fires the schedule at once (`plexus pub _plexus.timer.nightly ''`), with
// the time of that moment as fire_time and the msg id
// `<name>@now.<the trigger's msg id>` (a 16-hex-digit hash of it when too
// long); the trigger is ACKed once the tick is confirmed, or dead-lettered
// with the reason when the tick could not be published. It does not move
// the schedule.
//
// Confirms: 0 fired; 101 (nobody subscribes) counts as fired, said once on
// stderr. A code the status table calls retryable is retried 3 times
// (250 ms, 500 ms, 1 s later) with the msg id `<fire id>#<attempt>` (the
// broker answers a repeated id with the first outcome); then, like any
// other failure, one line on stderr and the timer moves on.

#include <string>
#include <string_view>

#include "plexus/actors/schedule.hpp"
#include "plexus/node.hpp"

namespace plexus::actors {

struct timer_options {
  /// Names the schedule: in each tick, the msg ids, the function
  /// (`timer-<name>`), the fire-now topic and the state file. Letters,
  /// digits, `_` and `-` (a function's name is one topic token); at most
  /// 40 bytes (a fire id must fit the wire's 64-byte msg ids).
  std::string name;
  /// Cron (5 or 6 fields), a macro (@daily, @hourly, ...), or `@every 30s`.
  std::string schedule;
  /// Where ticks go: a concrete topic outside `$SYS.`, `$DLQ.`, `_INBOX.`.
  std::string topic;
  /// An IANA zone for cron fields ("Europe/Berlin"); `@every` ignores it.
  std::string zone = "UTC";
  /// After downtime: skip (default) or catch_up with a bound. The same
  /// policy applies when the timer wakes late while running: the fire it
  /// waited for always goes out, later ones as the policy says.
  missed_policy missed{};
  /// A directory (created if missing) keeping the last fire time in
  /// timer_state_path(state_dir, name), written after each confirmed fire
  /// (tmp file, fsync, rename, fsync of the directory) on a thread of its
  /// own. A restart (of the node, or of the timer after a crash) reads it:
  /// catch_up needs it. Empty: nothing kept, a restart starts afresh.
  std::string state_dir{};
};

/// Adds the timer to `svc` as the function function_name(name) and returns it
/// (to tune it further). Checks every option first and throws one
/// std::invalid_argument naming each bad one: `timer "nightly": zone: ...;
/// missed: catch_up needs state_dir ...`.
function_builder& add_timer(service& svc, timer_options o);

/// `timer-<name>`: the timer's function (in stats, `plexus top`, metrics).
[[nodiscard]] std::string function_name(std::string_view name);

/// `_plexus.timer.<name>`: a message here fires the schedule now.
[[nodiscard]] std::string fire_now_topic(std::string_view name);

/// `<state_dir>/<name>.last`: one line, the last fire time in ms since the
/// Unix epoch, then the same in ISO-8601 (the number alone is read).
[[nodiscard]] std::string timer_state_path(std::string_view state_dir, std::string_view name);

} // namespace plexus::actors
