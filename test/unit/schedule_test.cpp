// SPDX-License-Identifier: Apache-2.0
// The timer's schedule core (actors/timer), with instants passed in: cron
// and interval parsing and their errors, next fires computed by hand, the
// dom/dow rule, the search horizon, DST gaps and repeats in real zones
// (tzdata's Europe/Berlin and America/New_York) and in crafted TZif bytes
// (the POSIX TZ footer, v1 files, bad files), fire counts against a walk,
// missed-fire plans, fire ids and the tick.
#define BOOST_TEST_MODULE plexus_schedule
#include <boost/test/unit_test.hpp>

#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "plexus/actors/schedule.hpp"

using namespace std::chrono;
using namespace plexus::actors;

namespace {

instant utc(int y, unsigned mo, unsigned d, int h = 0, int mi = 0, int s = 0, int ms = 0) {
  return instant{sys_days{year{y} / month{mo} / day{d}}} + hours{h} + minutes{mi} + seconds{s} +
         milliseconds{ms};
}

std::string iso(std::optional<instant> t) { return t ? iso8601_utc(*t) : "none"; }

// The next n fires after t, as ISO strings.
std::vector<std::string> fires(const schedule& s, instant t, int n) {
  std::vector<std::string> out;
  for (auto f = s.next_after(t); f && n-- > 0; f = s.next_after(*f)) out.push_back(iso8601_utc(*f));
  return out;
}

using strings = std::vector<std::string>;

strings isos(const std::vector<instant>& ts) {
  strings out;
  for (auto t : ts) out.push_back(iso8601_utc(t));
  return out;
}

std::string error_of(std::string_view expr) {
  try {
    schedule s{expr};
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no error";
}

std::string zone_error(std::string_view name) {
  try {
    (void)time_zone::locate(name);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no error";
}

// TZif bytes: a v1 or v2 file with these transitions, types and footer.
struct ttype {
  std::int32_t offset;
  bool dst;
};

void be(std::string& out, std::uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>(v >> (8 * i) & 0xff));
}

std::string tzif(char version, const std::vector<std::pair<std::int64_t, std::uint8_t>>& trans,
                 const std::vector<ttype>& types, const std::string& footer = "") {
  auto block = [&](int time_size) {
    std::string out = "TZif";
    out.push_back(version);
    out.append(15, '\0');
    for (std::uint64_t n : {std::uint64_t{0}, std::uint64_t{0}, std::uint64_t{0}, std::uint64_t{trans.size()},
                            std::uint64_t{types.size()}, std::uint64_t{4}})
      be(out, n, 4);
    for (auto& t : trans) be(out, static_cast<std::uint64_t>(t.first), time_size);
    for (auto& t : trans) out.push_back(static_cast<char>(t.second));
    for (auto& t : types) {
      be(out, static_cast<std::uint32_t>(t.offset), 4);
      out.push_back(t.dst ? 1 : 0);
      out.push_back(0);
    }
    out.append("ZZZ", 4);
    return out;
  };
  if (version == '\0') return block(4);
  return block(4) + block(8) + "\n" + footer + "\n";
}

// Berlin since 2000 in one transition, then its rule from the footer.
time_zone footer_berlin() {
  return time_zone::from_tzif("Test/Berlin", tzif('2', {{946684800, 1}}, {{3600, false}, {3600, false}},
                                                  "CET-1CEST,M3.5.0,M10.5.0/3"));
}

std::uint64_t walked(const schedule& s, instant a, instant b) {
  std::uint64_t n = 0;
  for (auto t = s.next_after(a); t && *t <= b; t = s.next_after(*t)) ++n;
  return n;
}

} // namespace

BOOST_AUTO_TEST_SUITE(timer_schedule)

BOOST_AUTO_TEST_CASE(cron_fields_parse_steps_ranges_lists_and_names) {
  BOOST_TEST(iso(schedule{"*/15 * * * *"}.next_after(utc(2026, 1, 5, 12, 7, 30))) == "2026-01-05T12:15:00.000Z");
  BOOST_TEST(fires(schedule{"5,10-12,30-40/5 * * * *"}, utc(2026, 1, 5, 10), 8) ==
             (strings{"2026-01-05T10:05:00.000Z", "2026-01-05T10:10:00.000Z", "2026-01-05T10:11:00.000Z",
                      "2026-01-05T10:12:00.000Z", "2026-01-05T10:30:00.000Z", "2026-01-05T10:35:00.000Z",
                      "2026-01-05T10:40:00.000Z", "2026-01-05T11:05:00.000Z"}));
  BOOST_TEST(fires(schedule{"10/20 8-9 * * *"}, utc(2026, 1, 5), 4) ==
             (strings{"2026-01-05T08:10:00.000Z", "2026-01-05T08:30:00.000Z", "2026-01-05T08:50:00.000Z",
                      "2026-01-05T09:10:00.000Z"}));
  BOOST_TEST(fires(schedule{"0 0 1 jan,JUL *"}, utc(2026, 2, 1), 3) ==
             (strings{"2026-07-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z", "2027-07-01T00:00:00.000Z"}));
  BOOST_TEST(fires(schedule{"0 12 * MAR-apr/1 Sat"}, utc(2026, 3, 25), 2) ==
             (strings{"2026-03-28T12:00:00.000Z", "2026-04-04T12:00:00.000Z"}));
  // 0 and 7 are Sunday; 2026-01-04 is a Sunday.
  for (auto e : {"0 6 * * 0", "0 6 * * 7", "0 6 * * SUN", "0 6 * * 5-7/2"})
    BOOST_TEST(iso(schedule{e}.next_after(utc(2026, 1, 3, 7))) == "2026-01-04T06:00:00.000Z", e);
  BOOST_TEST(iso(schedule{"0 0 * * *"}.next_after(utc(2026, 1, 5))) == "2026-01-06T00:00:00.000Z"); // strictly after
  BOOST_TEST(iso(schedule{"0 0 31 * *"}.next_after(utc(2026, 1, 31))) == "2026-03-31T00:00:00.000Z");
  BOOST_TEST(iso(schedule{" 0  0\t1 1 * "}.next_after(utc(2026, 6, 1))) == "2027-01-01T00:00:00.000Z");
}

BOOST_AUTO_TEST_CASE(six_fields_put_seconds_first) {
  BOOST_TEST(fires(schedule{"15,45 * * * * *"}, utc(2026, 1, 5, 12, 0, 15), 3) ==
             (strings{"2026-01-05T12:00:45.000Z", "2026-01-05T12:01:15.000Z", "2026-01-05T12:01:45.000Z"}));
  BOOST_TEST(iso(schedule{"*/10 * * * * *"}.next_after(utc(2026, 1, 5, 12, 0, 5, 500))) ==
             "2026-01-05T12:00:10.000Z");
  BOOST_TEST(iso(schedule{"30 0 9 * * *"}.next_after(utc(2026, 1, 5, 9, 0, 30))) == "2026-01-06T09:00:30.000Z");
  BOOST_TEST(iso(schedule{"0 0 9 * * *"}.next_after(utc(2026, 1, 5, 8, 59, 59, 999))) == "2026-01-05T09:00:00.000Z");
}

BOOST_AUTO_TEST_CASE(weekdays_skip_the_weekend) {
  schedule s{"0 9 * * MON-FRI"}; // 2026-01-09 is a Friday
  BOOST_TEST(iso(s.next_after(utc(2026, 1, 9, 8, 59, 59, 999))) == "2026-01-09T09:00:00.000Z");
  BOOST_TEST(iso(s.next_after(utc(2026, 1, 9, 9))) == "2026-01-12T09:00:00.000Z");
  BOOST_TEST(iso(s.next_after(utc(2026, 1, 10, 12))) == "2026-01-12T09:00:00.000Z");
}

BOOST_AUTO_TEST_CASE(day_of_month_or_day_of_week_fires_when_both_are_restricted) {
  // 2026-01-02 and -09 and -16 are Fridays, -13 a Tuesday.
  BOOST_TEST(fires(schedule{"0 0 13 * FRI"}, utc(2026, 1, 1), 4) ==
             (strings{"2026-01-02T00:00:00.000Z", "2026-01-09T00:00:00.000Z", "2026-01-13T00:00:00.000Z",
                      "2026-01-16T00:00:00.000Z"}));
  // Written starting with `*`, a field is unrestricted (Vixie): both must match.
  BOOST_TEST(fires(schedule{"0 0 */2 * FRI"}, utc(2026, 1, 1), 2) ==
             (strings{"2026-01-09T00:00:00.000Z", "2026-01-23T00:00:00.000Z"}));
  BOOST_TEST(fires(schedule{"0 0 13 * *"}, utc(2026, 1, 1), 2) ==
             (strings{"2026-01-13T00:00:00.000Z", "2026-02-13T00:00:00.000Z"}));
  BOOST_TEST(fires(schedule{"0 0 ? * FRI"}, utc(2026, 1, 1), 1) == (strings{"2026-01-02T00:00:00.000Z"}));
}

BOOST_AUTO_TEST_CASE(macros_mean_their_cron_lines) {
  auto t = utc(2026, 5, 14, 10, 20, 30); // a Thursday
  BOOST_TEST(iso(schedule{"@yearly"}.next_after(t)) == "2027-01-01T00:00:00.000Z");
  BOOST_TEST(iso(schedule{"@annually"}.next_after(t)) == "2027-01-01T00:00:00.000Z");
  BOOST_TEST(iso(schedule{"@monthly"}.next_after(t)) == "2026-06-01T00:00:00.000Z");
  BOOST_TEST(iso(schedule{"@weekly"}.next_after(t)) == "2026-05-17T00:00:00.000Z");
  BOOST_TEST(iso(schedule{"@daily"}.next_after(t)) == "2026-05-15T00:00:00.000Z");
  BOOST_TEST(iso(schedule{"@MIDNIGHT"}.next_after(t)) == "2026-05-15T00:00:00.000Z");
  BOOST_TEST(iso(schedule{"@hourly"}.next_after(t)) == "2026-05-14T11:00:00.000Z");
  BOOST_TEST(!schedule{"@daily"}.interval());
}

BOOST_AUTO_TEST_CASE(every_fires_on_multiples_of_its_interval_since_the_epoch) {
  schedule s{"@every 1h30m"};
  BOOST_TEST(s.interval().value_or(0ms).count() == 5400000);
  BOOST_TEST(iso(s.next_after(utc(1970, 1, 1))) == "1970-01-01T01:30:00.000Z");
  BOOST_TEST(fires(s, utc(2026, 1, 5, 22, 59), 3) ==
             (strings{"2026-01-06T00:00:00.000Z",
                      "2026-01-06T01:30:00.000Z", "2026-01-06T03:00:00.000Z"}));
  BOOST_TEST(fires(schedule{"@every 250ms"}, utc(2026, 1, 5, 0, 0, 0, 100), 3) ==
             (strings{"2026-01-05T00:00:00.250Z", "2026-01-05T00:00:00.500Z", "2026-01-05T00:00:00.750Z"}));
  BOOST_TEST(iso(schedule{"@every 30s"}.next_after(utc(2026, 1, 5, 0, 0, 30))) == "2026-01-05T00:01:00.000Z");
  BOOST_TEST(schedule{"@every 5m"}.interval().value_or(0ms).count() == 300000);
  BOOST_TEST(schedule{"@every 1ms"}.interval().value_or(0ms).count() == 1);
  // The zone does not move an interval.
  BOOST_TEST(iso(schedule("@every 1h", time_zone::locate("America/New_York")).next_after(utc(2026, 1, 5, 0, 10))) ==
             "2026-01-05T01:00:00.000Z");
}

BOOST_AUTO_TEST_CASE(bad_expressions_name_the_field_and_the_token) {
  const std::map<std::string, std::string> cases{
      {"*/0 * * * *", R"(cron "*/0 * * * *": field 1 (minute): step 0 in "*/0")"},
      {"60 * * * *", R"(cron "60 * * * *": field 1 (minute): value 60 out of range 0-59 in "60")"},
      {"* 20-24 * * *", R"(cron "* 20-24 * * *": field 2 (hour): value 24 out of range 0-23 in "20-24")"},
      {"* * 0 * *", R"(cron "* * 0 * *": field 3 (day-of-month): value 0 out of range 1-31 in "0")"},
      {"* * * 13 *", R"(cron "* * * 13 *": field 4 (month): value 13 out of range 1-12 in "13")"},
      {"* * * FOO *", R"(cron "* * * FOO *": field 4 (month): bad value "FOO" in "FOO")"},
      {"* * * * 8", R"(cron "* * * * 8": field 5 (day-of-week): value 8 out of range 0-7 in "8")"},
      {"* * * * MON-FUN", R"(cron "* * * * MON-FUN": field 5 (day-of-week): bad value "FUN" in "MON-FUN")"},
      {"* * * JAN *", "no error"},
      {"* * * * JAN", R"(cron "* * * * JAN": field 5 (day-of-week): bad value "JAN" in "JAN")"},
      {"5-1 * * * *", R"(cron "5-1 * * * *": field 1 (minute): range 5-1 is backwards in "5-1")"},
      {"*/x * * * *", R"(cron "*/x * * * *": field 1 (minute): bad step "x" in "*/x")"},
      {"1,,2 * * * *", R"(cron "1,,2 * * * *": field 1 (minute): empty list item in "1,,2")"},
      {"1- * * * *", R"(cron "1- * * * *": field 1 (minute): bad value "" in "1-")"},
      {"61 * * * * *", R"(cron "61 * * * * *": field 1 (second): value 61 out of range 0-59 in "61")"},
      {"0 60 * * * *", R"(cron "0 60 * * * *": field 2 (minute): value 60 out of range 0-59 in "60")"},
      {"* * * *", R"(cron "* * * *": expected 5 or 6 fields, got 4)"},
      {"* * * * * * *", R"(cron "* * * * * * *": expected 5 or 6 fields, got 7)"},
      {"  ", R"(cron "  ": empty expression)"},
      {"@often", R"(cron "@often": unknown macro "@often")"},
      {"@daily 5", R"(cron "@daily 5": unexpected "5" after @daily)"},
      {"@every", R"(cron "@every": @every needs a duration like 30s, 5m, 1h30m, 250ms)"},
      {"@every 0s", R"(cron "@every 0s": interval below 1 ms)"},
      {"@every 0ms", R"(cron "@every 0ms": interval below 1 ms)"},
      {"@every 5x", R"(cron "@every 5x": bad unit in duration "5x" (use h, m, s, ms))"},
      {"@every m", R"(cron "@every m": bad duration "m")"},
      {"@every 10", R"(cron "@every 10": bad duration "10")"},
      {"@every 1h 30m", R"(cron "@every 1h 30m": bad duration "1h 30m")"},
  };
  for (auto& [expr, want] : cases) BOOST_TEST(error_of(expr) == want, expr);
}

BOOST_AUTO_TEST_CASE(an_impossible_date_gives_no_fire_and_leap_days_wait_for_leap_years) {
  BOOST_TEST(iso(schedule{"0 0 30 2 *"}.next_after(utc(2026, 1, 1))) == "none");
  BOOST_TEST(iso(schedule{"0 0 31 4,6,9,11 *"}.next_after(utc(2026, 1, 1))) == "none");
  BOOST_TEST(schedule{"0 0 30 2 *"}.count_between(utc(2026, 1, 1), utc(2040, 1, 1)) == 0u);
  schedule leap{"0 0 29 2 *"};
  BOOST_TEST(fires(leap, utc(2026, 1, 1), 2) == (strings{"2028-02-29T00:00:00.000Z", "2032-02-29T00:00:00.000Z"}));
  // 2100 is no leap year: eight years from 2096 to 2104, still inside the horizon.
  BOOST_TEST(iso(leap.next_after(utc(2096, 3, 1))) == "2104-02-29T00:00:00.000Z");
  // With a weekday as well, the OR rule finds every Monday in February.
  BOOST_TEST(iso(schedule{"0 0 29 2 MON"}.next_after(utc(2026, 1, 1))) == "2026-02-02T00:00:00.000Z");
}

BOOST_AUTO_TEST_CASE(berlin_spring_forward_fires_a_skipped_time_once_after_the_gap) {
  auto berlin = time_zone::locate("Europe/Berlin"); // 2026-03-29 02:00 CET -> 03:00 CEST at 01:00Z
  BOOST_TEST(berlin.name() == "Europe/Berlin");
  BOOST_TEST(berlin.offset_at(utc(2026, 3, 29, 0, 59, 59)).count() == 3600);
  BOOST_TEST(berlin.offset_at(utc(2026, 3, 29, 1)).count() == 7200);
  BOOST_TEST(fires(schedule("30 2 * * *", berlin), utc(2026, 3, 28, 12), 2) ==
             (strings{"2026-03-29T01:00:00.000Z", "2026-03-30T00:30:00.000Z"}));
  BOOST_TEST(fires(schedule("0 * * * *", berlin), utc(2026, 3, 28, 23, 30), 3) ==
             (strings{"2026-03-29T00:00:00.000Z", "2026-03-29T01:00:00.000Z", "2026-03-29T02:00:00.000Z"}));
  BOOST_TEST(fires(schedule("30 * * * *", berlin), utc(2026, 3, 29, 0), 3) ==
             (strings{"2026-03-29T00:30:00.000Z", "2026-03-29T01:00:00.000Z", "2026-03-29T01:30:00.000Z"}));
  BOOST_TEST(fires(schedule("0 9 * * *", berlin), utc(2026, 3, 28), 2) ==
             (strings{"2026-03-28T08:00:00.000Z", "2026-03-29T07:00:00.000Z"}));
}

BOOST_AUTO_TEST_CASE(berlin_fall_back_fires_a_repeated_time_once_at_its_first_occurrence) {
  auto berlin = time_zone::locate("Europe/Berlin"); // 2026-10-25 03:00 CEST -> 02:00 CET at 01:00Z
  BOOST_TEST(fires(schedule("30 2 * * *", berlin), utc(2026, 10, 24, 12), 2) ==
             (strings{"2026-10-25T00:30:00.000Z", "2026-10-26T01:30:00.000Z"}));
  BOOST_TEST(iso(schedule("30 2 * * *", berlin).next_after(utc(2026, 10, 25, 1, 15))) == "2026-10-26T01:30:00.000Z");
  BOOST_TEST(fires(schedule("0 * * * *", berlin), utc(2026, 10, 24, 23, 30), 3) ==
             (strings{"2026-10-25T00:00:00.000Z", "2026-10-25T02:00:00.000Z", "2026-10-25T03:00:00.000Z"}));
}

BOOST_AUTO_TEST_CASE(new_york_gap_and_repeat_follow_the_same_rules) {
  auto ny = time_zone::locate("America/New_York"); // 2026-03-08 07:00Z, 2026-11-01 06:00Z
  BOOST_TEST(fires(schedule("30 2 * * *", ny), utc(2026, 3, 7), 3) ==
             (strings{"2026-03-07T07:30:00.000Z", "2026-03-08T07:00:00.000Z", "2026-03-09T06:30:00.000Z"}));
  BOOST_TEST(fires(schedule("30 1 * * *", ny), utc(2026, 10, 31, 12), 2) ==
             (strings{"2026-11-01T05:30:00.000Z", "2026-11-02T06:30:00.000Z"}));
  BOOST_TEST(fires(schedule("0 9 * * MON-FRI", ny), utc(2026, 3, 6, 15), 2) ==
             (strings{"2026-03-09T13:00:00.000Z", "2026-03-10T13:00:00.000Z"}));
}

BOOST_AUTO_TEST_CASE(past_the_last_transition_the_posix_footer_decides) {
  // tzdata's files list transitions up to 2037; 2040 comes from the footer.
  auto berlin = time_zone::locate("Europe/Berlin"); // 2040-03-25 and 2040-10-28 at 01:00Z
  BOOST_TEST(berlin.offset_at(utc(2040, 7, 1)).count() == 7200);
  BOOST_TEST(berlin.offset_at(utc(2040, 12, 1)).count() == 3600);
  BOOST_TEST(fires(schedule("30 2 * * *", berlin), utc(2040, 3, 24, 12), 2) ==
             (strings{"2040-03-25T01:00:00.000Z", "2040-03-26T00:30:00.000Z"}));
  // A crafted file whose only transition is in 2000: the footer carries 2026.
  auto z = footer_berlin();
  BOOST_TEST(z.offset_at(utc(1999, 7, 1)).count() == 3600); // before the first transition: type 0
  BOOST_TEST(z.offset_at(utc(2026, 7, 1)).count() == 7200);
  BOOST_TEST(fires(schedule("30 2 * * *", z), utc(2026, 3, 28, 12), 2) ==
             (strings{"2026-03-29T01:00:00.000Z", "2026-03-30T00:30:00.000Z"}));
  BOOST_TEST(fires(schedule("0 * * * *", z), utc(2026, 10, 24, 23, 30), 3) ==
             (strings{"2026-10-25T00:00:00.000Z", "2026-10-25T02:00:00.000Z", "2026-10-25T03:00:00.000Z"}));
  // Southern hemisphere: DST spans the new year.
  auto syd = time_zone::from_tzif("Test/Sydney", tzif('2', {}, {{36000, false}}, "AEST-10AEDT,M10.1.0,M4.1.0/3"));
  BOOST_TEST(syd.offset_at(utc(2026, 1, 15)).count() == 39600);
  BOOST_TEST(syd.offset_at(utc(2026, 7, 15)).count() == 36000);
  BOOST_TEST(syd.offset_at(utc(2026, 12, 15)).count() == 39600);
  auto fixed = time_zone::from_tzif("Test/Plus3", tzif('2', {{0, 1}}, {{0, false}, {10800, false}}, "<+03>-3"));
  BOOST_TEST(fixed.offset_at(utc(2030, 7, 1)).count() == 10800);
}

BOOST_AUTO_TEST_CASE(a_footer_not_understood_keeps_the_last_transitions_offset) {
  auto z = time_zone::from_tzif("Test/Julian", tzif('3', {{946684800, 1}}, {{-14400, true}, {-18000, false}},
                                                    "EST5EDT,J60/2,J300/2"));
  BOOST_TEST(z.offset_at(utc(2026, 7, 1)).count() == -18000);
  BOOST_TEST(z.offset_at(utc(1999, 7, 1)).count() == -14400);
}

BOOST_AUTO_TEST_CASE(version_1_files_and_bad_bytes) {
  auto v1 = time_zone::from_tzif("Test/V1", tzif('\0', {{-100, 1}, {1000000000, 0}}, {{0, false}, {19800, false}}));
  BOOST_TEST(v1.offset_at(utc(1960, 1, 1)).count() == 0);
  BOOST_TEST(v1.offset_at(utc(1980, 1, 1)).count() == 19800);
  BOOST_TEST(v1.offset_at(utc(2030, 1, 1)).count() == 0);
  auto bad = [](std::string bytes, std::string want) {
    try {
      (void)time_zone::from_tzif("Test/Bad", bytes);
    } catch (const std::invalid_argument& e) {
      return std::string{e.what()} == want;
    }
    return false;
  };
  auto good = tzif('2', {{0, 1}}, {{0, false}, {3600, false}}, "CET-1");
  BOOST_TEST(bad("TZjf" + good.substr(4), "TZif: no TZif magic"));
  BOOST_TEST(bad(good.substr(0, 60), "TZif: truncated"));
  BOOST_TEST(bad(good.substr(0, good.size() - 1), "TZif: unterminated footer"));
  BOOST_TEST(bad(tzif('2', {{0, 2}}, {{0, false}, {3600, false}}), "TZif: type index out of range"));
  BOOST_TEST(bad(tzif('2', {{5, 1}, {5, 0}}, {{0, false}, {3600, false}}), "TZif: transition times not ascending"));
  BOOST_TEST(bad(tzif('2', {}, {{100000, false}}), "TZif: UT offset out of range"));
}

BOOST_AUTO_TEST_CASE(zone_names_are_checked_and_unknown_zones_name_the_path) {
  BOOST_TEST(zone_error("Mars/Olympus_Mons") ==
             R"(time zone "Mars/Olympus_Mons": cannot read /usr/share/zoneinfo/Mars/Olympus_Mons: No such file or directory)");
  BOOST_TEST(zone_error("Europe") == R"(time zone "Europe": cannot read /usr/share/zoneinfo/Europe: not a regular file)");
  BOOST_TEST(zone_error("../../etc/passwd") == R"(time zone "../../etc/passwd": must not contain "..")");
  BOOST_TEST(zone_error("/etc/localtime") ==
             R"(time zone "/etc/localtime": must be a name like Europe/Berlin, not an absolute path)");
  BOOST_TEST(zone_error("") == R"(time zone "": empty name)");
  BOOST_TEST(zone_error("Europe/Ber lin") == R"(time zone "Europe/Ber lin": unexpected character in name)");
  BOOST_TEST(time_zone::locate("UTC").offset_at(utc(2026, 7, 1)).count() == 0);
  BOOST_TEST(time_zone{}.name() == "UTC");
}

BOOST_AUTO_TEST_CASE(fire_counts_match_a_walk_across_gaps_and_repeats) {
  auto berlin = time_zone::locate("Europe/Berlin");
  struct row {
    const char* expr;
    time_zone zone;
    instant from, to;
  };
  const std::vector<row> rows{
      {"*/10 * * * *", berlin, utc(2026, 3, 28, 23, 55), utc(2026, 3, 29, 3, 0, 0, 1)},
      {"* * 2 * * *", berlin, utc(2026, 3, 28), utc(2026, 3, 30)}, // 3600 local seconds into one fire
      {"0 * * * *", berlin, utc(2026, 10, 24, 22), utc(2026, 10, 25, 4, 30)},
      {"15 */7 * * *", berlin, utc(2026, 10, 20, 3, 3), utc(2027, 4, 2, 0, 0, 0, 7)},
      {"30 2 * * *", footer_berlin(), utc(2025, 1, 1), utc(2027, 1, 1)},
      {"0 0 13 * FRI", time_zone{}, utc(2026, 1, 1), utc(2027, 6, 1, 0, 0, 0, 1)},
      {"*/20 * * * * *", time_zone{}, utc(2026, 1, 1, 0, 0, 0, 999), utc(2026, 1, 3, 0, 0, 20)},
      {"@every 1h30m", berlin, utc(2026, 1, 1, 0, 0, 0, 1), utc(2026, 3, 1, 1, 30)},
  };
  for (auto& r : rows) {
    schedule s{r.expr, r.zone};
    BOOST_TEST(s.count_between(r.from, r.to) == walked(s, r.from, r.to), r.expr);
  }
  BOOST_TEST(schedule("* * 2 * * *", berlin).count_between(utc(2026, 3, 29), utc(2026, 3, 29, 1, 0, 1)) == 1u);
  BOOST_TEST(schedule{"0 * * * *"}.count_between(utc(2026, 1, 1), utc(2026, 1, 2)) == 24u);
  BOOST_TEST(schedule{"0 * * * *"}.count_between(utc(2026, 1, 2), utc(2026, 1, 1)) == 0u);
}

BOOST_AUTO_TEST_CASE(skip_fires_none_of_the_missed_and_schedules_the_next) {
  schedule hourly{"0 * * * *"};
  auto p = plan_fires(hourly, utc(2026, 1, 5, 10), utc(2026, 1, 5, 15, 30), {});
  BOOST_TEST(p.due.empty());
  BOOST_TEST(p.missed == 5u);
  BOOST_TEST(p.dropped == 5u);
  BOOST_TEST(iso(p.next) == "2026-01-05T16:00:00.000Z");
  // A fire inside the grace is on time, not missed.
  p = plan_fires(hourly, utc(2026, 1, 5, 10), utc(2026, 1, 5, 15, 0, 0, 400), {});
  BOOST_TEST(p.due.size() == 1u);
  BOOST_TEST(iso(p.due.at(0)) == "2026-01-05T15:00:00.000Z");
  BOOST_TEST(p.missed == 4u);
  // Nothing recorded (a first start): nothing is due.
  p = plan_fires(hourly, std::nullopt, utc(2026, 1, 5, 15, 0, 0, 400), {});
  BOOST_TEST(p.due.empty());
  BOOST_TEST(p.missed == 0u);
  BOOST_TEST(iso(p.next) == "2026-01-05T16:00:00.000Z");
}

BOOST_AUTO_TEST_CASE(catch_up_fires_the_most_recent_missed_up_to_its_bound) {
  schedule hourly{"0 * * * *"};
  missed_policy three{on_missed::catch_up, 3, 0ms};
  auto p = plan_fires(hourly, utc(2026, 1, 5, 10), utc(2026, 1, 5, 15, 30), three);
  BOOST_TEST(p.missed == 5u);
  BOOST_TEST(p.dropped == 2u);
  BOOST_TEST(isos(p.due) == (strings{"2026-01-05T13:00:00.000Z", "2026-01-05T14:00:00.000Z", "2026-01-05T15:00:00.000Z"}));
  p = plan_fires(hourly, utc(2026, 1, 5, 10), utc(2026, 1, 5, 15, 30), {on_missed::catch_up, 10, 0ms});
  BOOST_TEST(p.due.size() == 5u);
  BOOST_TEST(p.dropped == 0u);
  // Two months of a fire a second: counted, not walked; the newest two kept.
  auto now = utc(2026, 3, 1);
  p = plan_fires(schedule{"* * * * * *"}, utc(2026, 1, 1), now, {on_missed::catch_up, 2, 1000ms});
  BOOST_TEST(p.missed == 59u * 86400u - 1u);
  BOOST_TEST(p.dropped == p.missed - 2u);
  BOOST_TEST(isos(p.due) == isos({now - 2s, now - 1s, now}));
  p = plan_fires(schedule{"@every 250ms"}, utc(2026, 1, 1), now, {on_missed::catch_up, 1, 0ms});
  BOOST_TEST(p.missed == 59u * 86400u * 4u);
  BOOST_TEST(isos(p.due) == isos({now}));
}

BOOST_AUTO_TEST_CASE(fire_ids_and_ticks_are_the_same_on_every_node) {
  auto t = utc(2026, 3, 29, 1);
  BOOST_TEST(fire_id("daily-summary", t) == "daily-summary@1774746000000");
  BOOST_TEST(iso8601_utc(utc(1969, 12, 31, 23, 59, 59, 5)) == "1969-12-31T23:59:59.005Z");
  auto k = make_tick("daily-summary", t);
  msgpack::sbuffer buf;
  msgpack::pack(buf, k);
  auto oh = msgpack::unpack(buf.data(), buf.size());
  auto as_map = oh.get().as<std::map<std::string, msgpack::object>>();
  BOOST_TEST(as_map.at("schedule").as<std::string>() == "daily-summary");
  BOOST_TEST(as_map.at("fire_time").as<std::int64_t>() == 1774746000000);
  BOOST_TEST(as_map.at("fire_time_iso").as<std::string>() == "2026-03-29T01:00:00.000Z");
  auto back = oh.get().as<tick>();
  BOOST_TEST(back.fire_time == k.fire_time);
}

BOOST_AUTO_TEST_SUITE_END()
