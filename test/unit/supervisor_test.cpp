// SPDX-License-Identifier: Apache-2.0
// The supervision core without actors or clocks: strategies, restart
// types, intensity, backoff with jitter, the root's policy.
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "supervisor.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using namespace plexus::detail;

namespace {

const steady::time_point t0{};

crash_report fresh(std::size_t fn, std::string key) { return {fn, 1, std::move(key)}; }

} // namespace

BOOST_AUTO_TEST_SUITE(supervision_core)

BOOST_AUTO_TEST_CASE(one_for_one_restarts_the_crashed_instance_alone) {
  supervisor s{{.strategy = one_for_one}, {permanent, permanent}, 1};
  auto p = s.crashed(fresh(1, "m1"), t0);
  BOOST_TEST(p.restart);
  BOOST_TEST(p.delay == 0ms); // the first restart after a success is immediate
  BOOST_TEST(p.recycle.empty());
  BOOST_TEST(!p.escalate);
}

BOOST_AUTO_TEST_CASE(one_for_all_replaces_every_function_of_the_service) {
  supervisor s{{.strategy = one_for_all}, {permanent, permanent, permanent}, 1};
  auto p = s.crashed(fresh(1, "m1"), t0);
  BOOST_TEST(p.restart);
  BOOST_TEST((p.recycle == std::vector<std::size_t>{0, 1, 2}));
}

BOOST_AUTO_TEST_CASE(rest_for_one_replaces_the_crashed_function_and_those_declared_after_it) {
  supervisor s{{.strategy = rest_for_one}, {permanent, permanent, permanent}, 1};
  BOOST_TEST((s.crashed(fresh(1, "m1"), t0).recycle == std::vector<std::size_t>{1, 2}));
  BOOST_TEST((s.crashed(fresh(2, "m2"), t0).recycle == std::vector<std::size_t>{2}));
}

BOOST_AUTO_TEST_CASE(restart_types_decide_who_comes_back) {
  supervisor s{{}, {permanent, transient, temporary}, 1};
  BOOST_TEST(s.crashed(fresh(0, "a"), t0).restart);
  BOOST_TEST(s.crashed(fresh(1, "b"), t0).restart); // transient: a crash is abnormal
  BOOST_TEST(!s.crashed(fresh(2, "c"), t0).restart);
  BOOST_TEST(s.exited(0).restart); // a normal exit: only permanent ones return
  BOOST_TEST(!s.exited(1).restart);
  BOOST_TEST(!s.exited(2).restart);
}

BOOST_AUTO_TEST_CASE(more_fresh_crashes_than_max_restarts_within_the_window_escalate) {
  supervisor s{{.max_restarts = 3, .within = 10s}, {permanent}, 1};
  for (int i = 0; i < 3; ++i) {
    auto p = s.crashed(fresh(0, "m" + std::to_string(i)), t0 + std::chrono::seconds{i});
    BOOST_TEST(!p.escalate);
    BOOST_TEST(p.intensity == static_cast<std::uint32_t>(i + 1));
  }
  auto p = s.crashed(fresh(0, "m3"), t0 + 3s);
  BOOST_TEST(p.escalate);
  BOOST_TEST(!p.restart);
  BOOST_TEST(s.escalated());
  // Escalated: nothing restarts until the root revives the service.
  BOOST_TEST(!s.crashed(fresh(0, "m4"), t0 + 4s).restart);
  BOOST_TEST(!s.exited(0).restart);
  s.reset();
  BOOST_TEST(!s.escalated());
  BOOST_TEST(s.crashed(fresh(0, "m5"), t0 + 5s).restart);
}

BOOST_AUTO_TEST_CASE(crashes_older_than_the_window_no_longer_count) {
  supervisor s{{.max_restarts = 2, .within = 10s}, {permanent}, 1};
  s.crashed(fresh(0, "a"), t0);
  s.crashed(fresh(0, "b"), t0 + 1s);
  auto p = s.crashed(fresh(0, "c"), t0 + 10500ms); // a is out of the window, b in
  BOOST_TEST(!p.escalate);
  BOOST_TEST(p.intensity == 2u);
}

BOOST_AUTO_TEST_CASE(redeliveries_and_repeats_of_one_message_never_count) {
  supervisor s{{.max_restarts = 1, .within = 10s}, {permanent}, 1};
  BOOST_TEST(s.crashed(fresh(0, "poison"), t0).intensity == 1u);
  for (std::uint32_t d = 2; d <= 10; ++d) { // the poison suspect, redelivered
    auto p = s.crashed({0, d, "poison"}, t0 + 1s);
    BOOST_TEST(!p.escalate);
    BOOST_TEST(p.intensity == 1u);
  }
  BOOST_TEST(s.crashed(fresh(0, "poison"), t0 + 2s).intensity == 1u); // same key, one entry
}

BOOST_AUTO_TEST_CASE(a_success_clears_the_count_and_the_backoff) {
  supervisor s{{.max_restarts = 2, .within = 10s, .backoff_initial = 100ms, .backoff_max = 1s},
               {permanent}, 1};
  s.crashed(fresh(0, "a"), t0);
  BOOST_TEST(s.crashed(fresh(0, "b"), t0).delay > 0ms);
  s.succeeded();
  auto p = s.crashed(fresh(0, "c"), t0);
  BOOST_TEST(p.intensity == 1u);
  BOOST_TEST(p.delay == 0ms);
}

BOOST_AUTO_TEST_CASE(crashes_in_a_row_back_off_exponentially_with_jitter_up_to_the_max) {
  supervisor s{{.max_restarts = 100, .within = 10s, .backoff_initial = 100ms, .backoff_max = 1s},
               {permanent}, 7};
  std::vector<std::chrono::milliseconds> delays;
  for (int i = 0; i < 8; ++i) delays.push_back(s.crashed(fresh(0, std::to_string(i)), t0).delay);
  BOOST_TEST(delays[0] == 0ms);
  // step n >= 1 draws from [d/2, d], d = 100 ms * 2^(n-1), capped at 1 s
  for (std::size_t n = 1; n < delays.size(); ++n) {
    auto d = std::min<std::chrono::milliseconds>(1s, 100ms * (1 << (n - 1)));
    BOOST_TEST(delays[n] >= d / 2);
    BOOST_TEST(delays[n] <= d);
  }
}

BOOST_AUTO_TEST_CASE(jitter_spreads_the_restarts_of_supervisors_that_crash_together) {
  std::vector<std::chrono::milliseconds> third;
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    backoff b{0ms, 100ms, 10s, seed};
    b.next();
    b.next();
    third.push_back(b.next()); // from [100, 200] ms
  }
  std::sort(third.begin(), third.end());
  BOOST_TEST((third.back() - third.front()) >= 20ms); // not all in step
}

BOOST_AUTO_TEST_CASE(the_root_restarts_a_failed_service_after_a_growing_backoff) {
  root_supervisor r{node_options::failure_policy::restart_service, 1000ms, 8000ms, 2, 3};
  auto d1 = r.escalated(0);
  BOOST_TEST(!d1.stop_node);
  BOOST_TEST(d1.delay == 1000ms);
  BOOST_TEST(d1.attempt == 1u);
  auto d2 = r.escalated(0);
  BOOST_TEST(d2.delay >= 1000ms);
  BOOST_TEST(d2.delay <= 2000ms);
  BOOST_TEST(d2.attempt == 2u);
  BOOST_TEST(r.escalated(1).delay == 1000ms); // services back off apart
  r.recovered(0);
  BOOST_TEST(r.escalated(0).delay == 1000ms);
  for (int i = 0; i < 10; ++i) BOOST_TEST(r.escalated(1).delay <= 8000ms);
}

BOOST_AUTO_TEST_CASE(the_roots_backoff_never_passes_its_max) {
  root_supervisor r{node_options::failure_policy::restart_service, 1000ms, 1000ms, 1, 5};
  for (int i = 0; i < 10; ++i) BOOST_TEST(r.escalated(0).delay <= 1000ms);
}

BOOST_AUTO_TEST_CASE(the_root_stops_the_node_when_its_policy_says_so) {
  root_supervisor r{node_options::failure_policy::stop_node, 1000ms, 8000ms, 1, 3};
  BOOST_TEST(r.escalated(0).stop_node);
}

BOOST_AUTO_TEST_SUITE_END()
