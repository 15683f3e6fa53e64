// SPDX-License-Identifier: Apache-2.0
// The crash lines' limit with a fake clock: what is printed, what is
// counted, and when the count is reported.
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdint>

#include "crash_report.hpp"

using namespace std::chrono_literals;
using plexus::detail::crash_limiter;

namespace {

const crash_limiter::clock::time_point t0{1h};

} // namespace

BOOST_AUTO_TEST_SUITE(crash_line_limit)

BOOST_AUTO_TEST_CASE(the_first_n_crashes_of_a_second_are_printed_and_the_rest_counted) {
  crash_limiter l{3};
  for (int i = 0; i < 3; ++i) {
    auto v = l.crash(t0 + i * 100ms);
    BOOST_TEST(v.print);
    BOOST_TEST(v.unprinted == 0u);
  }
  for (int i = 3; i < 7; ++i) BOOST_TEST(!l.crash(t0 + i * 100ms).print);
  BOOST_TEST(l.tick(t0 + 999ms) == 0u); // the second is not over
  BOOST_TEST(l.tick(t0 + 1s) == 4u);
  BOOST_TEST(l.tick(t0 + 2s) == 0u); // reported once
}

BOOST_AUTO_TEST_CASE(a_crash_after_the_second_reports_its_unprinted_first_and_is_printed) {
  crash_limiter l{2};
  for (int i = 0; i < 5; ++i) static_cast<void>(l.crash(t0));
  auto v = l.crash(t0 + 1500ms);
  BOOST_TEST(v.print);
  BOOST_TEST(v.unprinted == 3u);
  // A new window opened at t0 + 1.5 s: one more line fits, the next not.
  BOOST_TEST(l.crash(t0 + 2s).print);
  BOOST_TEST(!l.crash(t0 + 2400ms).print);
  BOOST_TEST(l.tick(t0 + 2400ms) == 0u);
  BOOST_TEST(l.tick(t0 + 2500ms) == 1u);
}

BOOST_AUTO_TEST_CASE(a_second_within_the_limit_has_nothing_to_report) {
  crash_limiter l{2};
  BOOST_TEST(l.crash(t0).print);
  BOOST_TEST(l.crash(t0 + 900ms).print);
  BOOST_TEST(l.tick(t0 + 5s) == 0u);
  BOOST_TEST(l.crash(t0 + 6s).unprinted == 0u);
}

BOOST_AUTO_TEST_CASE(closing_the_window_early_reports_what_it_counted) {
  crash_limiter l{1};
  BOOST_TEST(l.crash(t0).print);
  BOOST_TEST(!l.crash(t0 + 1ms).print);
  BOOST_TEST(l.close_window() == 1u);
  BOOST_TEST(l.close_window() == 0u);
  BOOST_TEST(l.crash(t0 + 2ms).print); // a fresh window
}

BOOST_AUTO_TEST_CASE(the_default_limit_is_ten_lines_a_second) {
  crash_limiter l;
  int printed = 0;
  for (int i = 0; i < 100; ++i) printed += l.crash(t0 + i * 5ms).print ? 1 : 0;
  BOOST_TEST(printed == 10);
  BOOST_TEST(plexus::detail::crash_lines_per_second == 10u);
  BOOST_TEST(l.tick(t0 + 1s) == 90u);
}

BOOST_AUTO_TEST_SUITE_END()
