// SPDX-License-Identifier: Apache-2.0
#pragma once

// The timer trigger's schedule, sans-IO: cron expressions and fixed
// intervals in UTC or a named IANA zone, the next fire time after an
// instant, what to fire after downtime, and the tick a fire publishes.
// No clock is read here: every instant is passed in.
//
//   auto s = plexus::actors::schedule{"0 9 * * MON-FRI",
//                                     plexus::actors::time_zone::locate("Europe/Berlin")};
//   auto next = s.next_after(now); // std::nullopt: the expression never fires
//
// Cron, as Vixie cron: `min hour dom month dow` or `sec min hour dom month
// dow`; `*` (or `?`), `a`, `a-b`, `*/n`, `a-b/n`, `a/n`, lists; JAN-DEC,
// SUN-SAT (any case); dow 0-7 (0 and 7 are Sunday). When both dom and dow are
// restricted (neither written starting with `*`), a day matching either
// fires. Macros @yearly @annually @monthly @weekly @daily @midnight
// @hourly; `@every 1h30m` (units h, m, s, ms; at least 1 ms).
//
// Across DST, cron fields are local wall-clock times: a local time that a
// spring-forward skips fires once, at the first instant after the gap
// (02:30 on a day Berlin jumps 02:00 -> 03:00 fires at 03:00 CEST); a local
// time a fall-back repeats fires once, at its first occurrence (so `0 * * *
// *` has a two-hour pause that night). `@every` ignores the zone: its fires
// are the multiples of the interval since the Unix epoch, so every node
// computes the same instants.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <msgpack.hpp>

namespace plexus::actors {

/// An instant: milliseconds since the Unix epoch, UTC (no leap seconds).
using instant = std::chrono::sys_time<std::chrono::milliseconds>;

/// next_after searches this many whole years past the year it starts in
/// (enough for Feb 29 across a skipped leap year, 2096 -> 2104); a cron
/// expression with no fire in it (`0 0 30 2 *`) yields std::nullopt.
inline constexpr int search_horizon_years = 8;

namespace detail {
struct zone_data; // timer/tz.hpp
struct cron_fields {
  std::uint64_t seconds = 0, minutes = 0; // bit n: value n
  std::uint32_t hours = 0, days = 0;      // days: bits 1-31
  std::uint16_t months = 0;               // bits 1-12
  std::uint8_t weekdays = 0;              // bits 0-6, Sunday 0
  bool dom_star = false, dow_star = false; // written starting with `*`
};
} // namespace detail

/// A time zone: UTC, or the rules of a TZif file (v1, v2, v3). Cheap to
/// copy (the rules are shared and immutable).
class time_zone {
public:
  time_zone() = default; // UTC
  [[nodiscard]] static time_zone utc() { return {}; }
  /// The IANA zone `name` ("Europe/Berlin") read from `root`/name; "UTC"
  /// needs no file. Throws std::invalid_argument naming the zone and the
  /// path tried when the name is malformed (empty, leading `/`, `..`),
  /// the file is missing, or it is not TZif.
  [[nodiscard]] static time_zone locate(std::string_view name,
                                        std::string_view root = "/usr/share/zoneinfo");
  /// A zone from TZif bytes (tests, zones shipped with a program). Throws
  /// std::invalid_argument when they are malformed.
  [[nodiscard]] static time_zone from_tzif(std::string_view name, std::string_view bytes);

  [[nodiscard]] const std::string& name() const noexcept;
  /// Local time = UTC + offset_at(t). After the file's last transition
  /// the footer's POSIX TZ rule decides (`STD off DST [off],Mm.w.d[/t],
  /// Mm.w.d[/t]` or a fixed offset); a footer in any other form (Jn or n
  /// dates, DST without a rule) is not understood, and the last
  /// transition's offset then holds for ever.
  [[nodiscard]] std::chrono::seconds offset_at(instant t) const;

private:
  friend class schedule;
  explicit time_zone(std::shared_ptr<const detail::zone_data> d) : data_(std::move(d)) {}
  std::shared_ptr<const detail::zone_data> data_; // null: UTC
};

/// A parsed schedule: what fires when. Immutable, cheap to copy.
class schedule {
public:
  /// Throws std::invalid_argument naming the field and the offending
  /// token: `cron "*/0 * * * *": field 1 (minute): step 0 in "*/0"`.
  explicit schedule(std::string_view expression, time_zone zone = {});

  /// The first fire strictly after t; std::nullopt when there is none
  /// within search_horizon_years (the expression can never fire).
  [[nodiscard]] std::optional<instant> next_after(instant t) const;
  /// How many fires lie in (after, up_to], computed by fields and days,
  /// not by visiting each fire.
  [[nodiscard]] std::uint64_t count_between(instant after, instant up_to) const;

  [[nodiscard]] const std::string& expression() const noexcept { return expression_; }
  [[nodiscard]] const time_zone& zone() const noexcept { return zone_; }
  /// The period of an `@every` schedule; std::nullopt for cron.
  [[nodiscard]] std::optional<std::chrono::milliseconds> interval() const noexcept {
    if (interval_.count() == 0) return std::nullopt;
    return interval_;
  }

private:
  struct local_fire;
  [[nodiscard]] std::optional<local_fire> next_cron(std::int64_t after_s) const;
  [[nodiscard]] std::int64_t offset_s(std::int64_t utc_s) const;
  [[nodiscard]] std::int64_t resolve(std::int64_t local_s) const;

  std::string expression_;
  time_zone zone_;
  detail::cron_fields fields_{};
  std::chrono::milliseconds interval_{0}; // non-zero: @every
};

/// What to do with fires missed while no node ran the schedule.
enum class on_missed {
  skip,     // fire none of them; only the next one is scheduled
  catch_up, // fire the most recent max_catch_up of them, oldest first
};

struct missed_policy {
  on_missed action = on_missed::skip;
  std::size_t max_catch_up = 1; // catch_up: the bound
  /// A fire at most this old at `now` is on time, not missed: it fires
  /// under either policy (a timer wakes a little late).
  std::chrono::milliseconds grace{1000};
};

struct fire_plan {
  std::vector<instant> due;      // to fire now, oldest first
  std::uint64_t missed = 0;      // fires in (last, now - grace]
  std::uint64_t dropped = 0;     // missed fires not in `due`
  std::optional<instant> next;   // the first fire strictly after now
};

/// The fires due at `now` given the last one recorded: with none recorded
/// (a first start) nothing is due, only `next` is set.
[[nodiscard]] fire_plan plan_fires(const schedule& s, std::optional<instant> last_fire, instant now,
                                   const missed_policy& policy);

/// `<schedule>@<fire time in ms since the epoch>`: the same on every node
/// that fires the schedule, so the broker's dedup window keeps one.
[[nodiscard]] std::string fire_id(std::string_view schedule_name, instant fire_time);

/// `2026-03-29T01:00:00.000Z`
[[nodiscard]] std::string iso8601_utc(instant t);

/// The event a fire publishes.
struct tick {
  std::string schedule{};
  std::int64_t fire_time = 0;   // ms since the Unix epoch, UTC
  std::string fire_time_iso{};  // the same, ISO-8601 UTC
  MSGPACK_DEFINE_MAP(schedule, fire_time, fire_time_iso)
};

[[nodiscard]] tick make_tick(std::string schedule_name, instant fire_time);

} // namespace plexus::actors
