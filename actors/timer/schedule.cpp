// SPDX-License-Identifier: Apache-2.0
#include "plexus/actors/schedule.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include "tz.hpp"

namespace plexus::actors {

namespace {

using namespace std::chrono;
using detail::cron_fields;

constexpr std::int64_t day_s = 86400;
// Instants next_after accepts (years 1 to 9990, in seconds): the civil
// calendar and the search horizon stay inside std::chrono::year's range.
constexpr std::int64_t min_s = -62135596800, max_s = 253087372800;

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  auto q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

// Parsing ------------------------------------------------------------------

struct field_spec {
  const char* name;
  int lo, hi;
  const std::array<std::string_view, 12>* names; // value = index + names_base
  int names_base;
};

constexpr std::array<std::string_view, 12> month_names{"jan", "feb", "mar", "apr", "may", "jun",
                                                       "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<std::string_view, 12> day_names{"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

constexpr std::array<field_spec, 6> specs{{{"second", 0, 59, nullptr, 0},
                                           {"minute", 0, 59, nullptr, 0},
                                           {"hour", 0, 23, nullptr, 0},
                                           {"day-of-month", 1, 31, nullptr, 0},
                                           {"month", 1, 12, &month_names, 1},
                                           {"day-of-week", 0, 7, &day_names, 0}}};

[[noreturn]] void bad_expr(std::string_view expr, const std::string& why) {
  throw std::invalid_argument("cron \"" + std::string{expr} + "\": " + why);
}

std::string lower(std::string_view s) {
  std::string out{s};
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::optional<std::uint64_t> digits(std::string_view s, std::size_t max_digits) {
  if (s.empty() || s.size() > max_digits) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

// One field's text as a bit set; `fail` throws naming the field and item.
std::uint64_t parse_field(std::string_view text, const field_spec& f, auto&& fail) {
  auto value = [&](std::string_view s, std::string_view item) -> int {
    int v = -1;
    if (auto n = digits(s, 4)) v = static_cast<int>(*n);
    else if (f.names) {
      auto it = std::find(f.names->begin(), f.names->end(), lower(s));
      if (it != f.names->end() && !it->empty()) v = static_cast<int>(it - f.names->begin()) + f.names_base;
    }
    if (v < 0) fail("bad value \"" + std::string{s} + "\"", item);
    if (v < f.lo || v > f.hi)
      fail("value " + std::to_string(v) + " out of range " + std::to_string(f.lo) + "-" +
             std::to_string(f.hi), item);
    return v;
  };
  std::uint64_t mask = 0;
  for (std::size_t pos = 0; pos <= text.size();) {
    auto comma = std::min(text.find(',', pos), text.size());
    auto item = text.substr(pos, comma - pos);
    pos = comma + 1;
    if (item.empty()) fail("empty list item", text);
    auto slash = item.find('/');
    auto range = item.substr(0, slash);
    int a = f.lo, b = f.hi, step = 1;
    if (range != "*" && range != "?") {
      auto dash = range.find('-');
      a = value(range.substr(0, dash), item);
      if (dash != std::string_view::npos) {
        b = value(range.substr(dash + 1), item);
        if (a > b) fail("range " + std::to_string(a) + "-" + std::to_string(b) + " is backwards", item);
      } else if (slash == std::string_view::npos) {
        b = a;
      }
    }
    if (slash != std::string_view::npos) {
      auto n = digits(item.substr(slash + 1), 4);
      if (!n) fail("bad step \"" + std::string{item.substr(slash + 1)} + "\"", item);
      if (*n == 0) fail("step 0", item);
      step = static_cast<int>(*n);
    }
    for (int v = a; v <= b; v += step) mask |= std::uint64_t{1} << v;
  }
  return mask;
}

cron_fields parse_cron(std::string_view expr, std::string_view text) {
  std::vector<std::string_view> parts;
  for (std::size_t i = 0; i < text.size();) {
    auto j = std::min(text.find_first_of(" \t", i), text.size());
    if (j > i) parts.push_back(text.substr(i, j - i));
    i = j + 1;
  }
  if (parts.size() != 5 && parts.size() != 6)
    bad_expr(expr, "expected 5 or 6 fields, got " + std::to_string(parts.size()));
  bool with_seconds = parts.size() == 6;
  if (!with_seconds) parts.insert(parts.begin(), "0");
  std::array<std::uint64_t, 6> m{};
  for (std::size_t i = 0; i < 6; ++i) {
    auto shown = with_seconds ? i + 1 : i; // the field's place as written
    m[i] = parse_field(parts[i], specs[i], [&](const std::string& why, std::string_view item) {
      bad_expr(expr, "field " + std::to_string(shown) + " (" + specs[i].name + "): " + why + " in \"" +
                       std::string{item} + "\"");
    });
  }
  cron_fields f;
  f.seconds = m[0], f.minutes = m[1];
  f.hours = static_cast<std::uint32_t>(m[2]), f.days = static_cast<std::uint32_t>(m[3]);
  f.months = static_cast<std::uint16_t>(m[4]);
  f.weekdays = static_cast<std::uint8_t>((m[5] | m[5] >> 7) & 0x7f); // 7 is Sunday too
  f.dom_star = parts[3].front() == '*' || parts[3].front() == '?';
  f.dow_star = parts[5].front() == '*' || parts[5].front() == '?';
  return f;
}

// `1h30m`, `250ms`: integer counts of h, m, s, ms.
milliseconds parse_every(std::string_view expr, std::string_view text) {
  if (text.empty()) bad_expr(expr, "@every needs a duration like 30s, 5m, 1h30m, 250ms");
  std::int64_t total = 0;
  for (std::size_t i = 0; i < text.size();) {
    auto j = text.find_first_not_of("0123456789", i);
    auto n = digits(text.substr(i, j == std::string_view::npos ? std::string_view::npos : j - i), 12);
    if (!n || j == std::string_view::npos) bad_expr(expr, "bad duration \"" + std::string{text} + "\"");
    std::int64_t unit = 0;
    std::size_t len = 1;
    if (text.substr(j, 2) == "ms") unit = 1, len = 2;
    else if (text[j] == 'h') unit = 3600000;
    else if (text[j] == 'm') unit = 60000;
    else if (text[j] == 's') unit = 1000;
    else bad_expr(expr, "bad unit in duration \"" + std::string{text} + "\" (use h, m, s, ms)");
    total += static_cast<std::int64_t>(*n) * unit;
    if (total > std::int64_t{1} << 50) bad_expr(expr, "duration \"" + std::string{text} + "\" too long");
    i = j + len;
  }
  if (total < 1) bad_expr(expr, "interval below 1 ms");
  return milliseconds{total};
}

// Matching -----------------------------------------------------------------

int next_bit(std::uint64_t mask, int from) {
  if (from > 63) return -1;
  auto rest = mask >> from;
  return rest == 0 ? -1 : from + std::countr_zero(rest);
}

bool bit(std::uint64_t mask, int i) { return (mask >> i & 1) != 0; }

struct civil {
  int y;
  int m, d;
};

civil civil_of(std::int64_t day) {
  year_month_day ymd{sys_days{days{day}}};
  return {int(ymd.year()), int(unsigned(ymd.month())), int(unsigned(ymd.day()))};
}

std::int64_t day_of(int y, int m, int d) {
  return sys_days{year{y} / month{unsigned(m)} / day{unsigned(d)}}.time_since_epoch().count();
}

int last_day(int y, int m) {
  return int(unsigned(year_month_day_last{year{y}, month_day_last{month{unsigned(m)}}}.day()));
}

// The dom/dow rule, as Vixie cron: either matches when both are restricted.
bool day_matches(const cron_fields& f, int y, int m, int d) {
  if (!bit(f.months, m)) return false;
  bool dom = bit(f.days, d);
  bool dow = bit(f.weekdays, int(weekday{sys_days{days{day_of(y, m, d)}}}.c_encoding()));
  return f.dom_star || f.dow_star ? dom && dow : dom || dow;
}

// The first local time (seconds, as if UTC) >= from that the fields match,
// skipping by field; std::nullopt past last_year.
std::optional<std::int64_t> next_match(const cron_fields& f, std::int64_t from, int last_year) {
  auto day = floor_div(from, day_s);
  auto tod = from - day * day_s;
  auto c = civil_of(day);
  int y = c.y, m = c.m, d = c.d;
  int h = int(tod / 3600), mi = int(tod / 60 % 60), s = int(tod % 60);
  auto next_day = [&] {
    h = mi = s = 0;
    if (++d <= last_day(y, m)) return;
    d = 1;
    if (++m > 12) m = 1, ++y;
  };
  while (y <= last_year) {
    if (!bit(f.months, m)) {
      int nm = next_bit(f.months, m + 1);
      if (nm < 0) ++y, nm = next_bit(f.months, 1);
      m = nm, d = 1, h = mi = s = 0;
      continue;
    }
    if (!day_matches(f, y, m, d)) {
      next_day();
      continue;
    }
    int nh = next_bit(f.hours, h);
    if (nh < 0) {
      next_day();
      continue;
    }
    if (nh != h) h = nh, mi = s = 0;
    int nmi = next_bit(f.minutes, mi);
    if (nmi < 0) {
      mi = s = 0;
      if (++h > 23) next_day();
      continue;
    }
    if (nmi != mi) mi = nmi, s = 0;
    int ns = next_bit(f.seconds, s);
    if (ns < 0) {
      s = 0;
      if (++mi > 59) {
        mi = 0;
        if (++h > 23) next_day();
      }
      continue;
    }
    return day_of(y, m, d) * day_s + h * 3600 + mi * 60 + ns;
  }
  return std::nullopt;
}

// Matching times of day before `tod` seconds.
std::uint64_t count_tod(const cron_fields& f, std::int64_t tod) {
  auto below = [](std::uint64_t mask, std::int64_t n) {
    return static_cast<std::uint64_t>(std::popcount(n >= 64 ? mask : mask & ((std::uint64_t{1} << n) - 1)));
  };
  auto secs = static_cast<std::uint64_t>(std::popcount(f.seconds));
  auto per_hour = static_cast<std::uint64_t>(std::popcount(f.minutes)) * secs;
  auto h = tod / 3600, mi = tod / 60 % 60, s = tod % 60;
  auto n = below(f.hours, h) * per_hour;
  if (h < 24 && bit(f.hours, int(h)))
    n += below(f.minutes, mi) * secs + (bit(f.minutes, int(mi)) ? below(f.seconds, s) : 0);
  return n;
}

// Matching local times in [from, to), a day at a time.
std::uint64_t count_local(const cron_fields& f, std::int64_t from, std::int64_t to) {
  if (from >= to) return 0;
  auto d1 = floor_div(from, day_s), d2 = floor_div(to, day_s);
  auto matches = [&](std::int64_t d) {
    auto c = civil_of(d);
    return day_matches(f, c.y, c.m, c.d);
  };
  auto t1 = from - d1 * day_s, t2 = to - d2 * day_s;
  if (d1 == d2) return matches(d1) ? count_tod(f, t2) - count_tod(f, t1) : 0;
  auto per_day = count_tod(f, day_s);
  std::uint64_t n = matches(d1) ? per_day - count_tod(f, t1) : 0;
  for (auto d = d1 + 1; d < d2; ++d)
    if (matches(d)) n += per_day;
  return n + (matches(d2) ? count_tod(f, t2) : 0);
}

} // namespace

// The schedule -------------------------------------------------------------

struct schedule::local_fire {
  std::int64_t utc;   // seconds
  std::int64_t local; // the matching local time (seconds, as if UTC)
};

schedule::schedule(std::string_view expression, time_zone zone)
    : expression_(expression), zone_(std::move(zone)) {
  auto text = expression;
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  if (text.empty()) bad_expr(expression, "empty expression");
  if (text.front() != '@') {
    fields_ = parse_cron(expression, text);
    return;
  }
  auto word_end = std::min(text.find_first_of(" \t"), text.size());
  auto word = lower(text.substr(0, word_end));
  auto rest = text.substr(word_end);
  while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
  if (word == "@every") {
    interval_ = parse_every(expression, rest);
    return;
  }
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 7> macros{{
      {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
      {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
      {"@hourly", "0 * * * *"}}};
  auto it = std::find_if(macros.begin(), macros.end(), [&](auto& p) { return p.first == word; });
  if (it == macros.end()) bad_expr(expression, "unknown macro \"" + std::string{text.substr(0, word_end)} + "\"");
  if (!rest.empty()) bad_expr(expression, "unexpected \"" + std::string{rest} + "\" after " + word);
  fields_ = parse_cron(expression, it->second);
}

std::int64_t schedule::offset_s(std::int64_t utc_s) const {
  return zone_.data_ ? zone_.data_->offset_at(utc_s) : 0;
}

// The instant a local time fires at: its first occurrence when a fall-back
// repeats it, the end of the gap (the transition) when a spring-forward
// skips it. Assumes no two transitions within two days of each other.
std::int64_t schedule::resolve(std::int64_t local_s) const {
  if (!zone_.data_) return local_s;
  auto early = offset_s(local_s - day_s), late = offset_s(local_s + day_s);
  auto u_early = local_s - early, u_late = local_s - late;
  bool early_ok = offset_s(u_early) == early, late_ok = offset_s(u_late) == late;
  if (early_ok && late_ok) return std::min(u_early, u_late);
  if (early_ok) return u_early;
  if (late_ok) return u_late;
  auto t = zone_.data_->next_transition(std::min(u_early, u_late) - 1);
  return t ? t->at : u_early;
}

std::optional<schedule::local_fire> schedule::next_cron(std::int64_t after_s) const {
  if (after_s < min_s || after_s > max_s) return std::nullopt;
  auto local = after_s + offset_s(after_s);
  int last_year = civil_of(floor_div(local, day_s)).y + search_horizon_years;
  for (;;) {
    auto m = next_match(fields_, local, last_year);
    if (!m) return std::nullopt;
    auto u = resolve(*m);
    if (u > after_s) return local_fire{u, *m};
    local = *m + 1; // its first occurrence was earlier (a fall-back)
  }
}

std::optional<instant> schedule::next_after(instant t) const {
  auto ms = t.time_since_epoch().count();
  if (interval_.count() != 0) {
    auto p = interval_.count();
    auto q = floor_div(ms, p);
    if (q >= std::numeric_limits<std::int64_t>::max() / p - 1) return std::nullopt;
    return instant{milliseconds{(q + 1) * p}};
  }
  auto f = next_cron(floor_div(ms, 1000)); // fires are whole seconds
  if (!f) return std::nullopt;
  return instant{seconds{f->utc}};
}

std::uint64_t schedule::count_between(instant after, instant up_to) const {
  auto a = after.time_since_epoch().count(), b = up_to.time_since_epoch().count();
  if (b <= a) return 0;
  if (interval_.count() != 0)
    return static_cast<std::uint64_t>(floor_div(b, interval_.count()) - floor_div(a, interval_.count()));
  auto as = floor_div(a, 1000), bs = floor_div(b, 1000);
  auto first = next_cron(as);
  if (!first || first->utc > bs) return 0;
  auto end = next_cron(bs);
  if (!end) { // near the end of the calendar: count one by one
    std::uint64_t n = 0;
    for (auto f = first; f && f->utc <= bs; f = next_cron(f->utc)) ++n;
    return n;
  }
  // Every matching local time in [first, end) fires once, except that those
  // a spring-forward skips all fire at its transition.
  auto n = count_local(fields_, first->local, end->local);
  if (!zone_.data_) return n;
  for (auto t = zone_.data_->next_transition(first->utc - 1); t && t->at < end->utc;
       t = zone_.data_->next_transition(t->at)) {
    if (t->after <= t->before) continue;
    auto gap = count_local(fields_, std::max(t->at + t->before, first->local),
                           std::min(t->at + t->after + 1, end->local));
    if (gap > 1) n -= gap - 1;
  }
  return n;
}

// Missed fires, ids, ticks ----------------------------------------------

fire_plan plan_fires(const schedule& s, std::optional<instant> last_fire, instant now,
                     const missed_policy& policy) {
  fire_plan plan;
  plan.next = s.next_after(now);
  if (!last_fire || *last_fire >= now) return plan;
  auto cutoff = std::max(*last_fire, now - policy.grace);
  plan.missed = s.count_between(*last_fire, cutoff);
  if (policy.action == on_missed::catch_up && policy.max_catch_up > 0 && plan.missed > 0) {
    auto keep = std::min<std::uint64_t>(plan.missed, policy.max_catch_up);
    auto from = *last_fire;
    if (plan.missed > keep) {
      // The latest `from` with `keep` fires in (from, cutoff]: count(lo) >= keep > count(hi).
      auto lo = *last_fire, hi = cutoff;
      while (hi - lo > milliseconds{1}) {
        auto mid = lo + (hi - lo) / 2;
        (s.count_between(mid, cutoff) >= keep ? lo : hi) = mid;
      }
      from = lo;
    }
    for (auto t = s.next_after(from); t && *t <= cutoff && plan.due.size() < keep; t = s.next_after(*t))
      plan.due.push_back(*t);
  }
  plan.dropped = plan.missed - plan.due.size();
  for (auto t = s.next_after(cutoff); t && *t <= now; t = s.next_after(*t)) plan.due.push_back(*t);
  return plan;
}

std::string fire_id(std::string_view schedule_name, instant fire_time) {
  return std::string{schedule_name} + "@" + std::to_string(fire_time.time_since_epoch().count());
}

std::string iso8601_utc(instant t) {
  auto day = floor<days>(t);
  auto tod = t - day;
  year_month_day ymd{day};
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", int(ymd.year()),
                unsigned(ymd.month()), unsigned(ymd.day()), int(tod / 1h), int(tod / 1min % 60),
                int(tod / 1s % 60), int(tod.count() % 1000));
  return buf;
}

tick make_tick(std::string schedule_name, instant fire_time) {
  return {std::move(schedule_name), fire_time.time_since_epoch().count(), iso8601_utc(fire_time)};
}

} // namespace plexus::actors
