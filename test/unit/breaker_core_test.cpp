// SPDX-License-Identifier: Apache-2.0
// Request circuit breakers (breaker_core.hpp) driven alone on a fake clock:
// every change of state, the minimum of requests, the sliding window, the
// half-open trials, which outcomes count, and the `$SYS.breaker.*` event.
#define BOOST_TEST_MODULE plexus_breaker_core
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "breaker_core.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using detail::breaker_core;
using detail::request_outcome;

namespace {

const breaker_core::time_point t0 = breaker_core::time_point{} + 1000h;

breaker_options defaults() {
  breaker_options o;
  o.enabled = true;
  return o; // 50% of >= 20 requests in 60 s, half-open after 10 s, 1 trial
}

// A request to `topic` admitted and ended at `now` with `o`; false if refused.
bool request(breaker_core& b, std::string_view topic, request_outcome o, breaker_core::time_point now) {
  auto a = b.admit(topic, now);
  if (!a.admitted) return false;
  b.record(topic, a.ticket, o, now);
  return true;
}

void requests(breaker_core& b, std::string_view topic, int n, request_outcome o,
              breaker_core::time_point now) {
  for (int i = 0; i < n; ++i) BOOST_TEST_REQUIRE(request(b, topic, o, now));
}

// Opens `topic` at `now` with 20 timeouts.
void trip(breaker_core& b, std::string_view topic, breaker_core::time_point now) {
  requests(b, topic, 20, request_outcome::timeout, now);
  BOOST_TEST_REQUIRE((b.state(topic, now) == breaker_state::open));
}

} // namespace

BOOST_AUTO_TEST_SUITE(breaker_core_suite)

BOOST_AUTO_TEST_CASE(a_breaker_opens_when_half_of_twenty_requests_in_its_window_failed) {
  breaker_core b{defaults()};
  requests(b, "svc.a", 10, request_outcome::success, t0);
  requests(b, "svc.a", 9, request_outcome::timeout, t0 + 1s);
  BOOST_TEST((b.state("svc.a", t0 + 1s) == breaker_state::closed)); // 19 requests: too few
  BOOST_TEST(b.take_transitions().empty());
  requests(b, "svc.a", 1, request_outcome::no_responders, t0 + 2s); // 10 of 20 failed
  BOOST_TEST((b.state("svc.a", t0 + 2s) == breaker_state::open));
  auto changes = b.take_transitions();
  BOOST_TEST_REQUIRE(changes.size() == 1u);
  BOOST_TEST(changes[0].topic == "svc.a");
  BOOST_TEST((changes[0].to == breaker_state::open));
  BOOST_TEST(changes[0].requests == 20u);
  BOOST_TEST(changes[0].failures == 10u);
  BOOST_TEST((b.state("svc.b", t0 + 2s) == breaker_state::closed)); // one breaker per topic
  BOOST_TEST(request(b, "svc.b", request_outcome::success, t0 + 2s));
}

BOOST_AUTO_TEST_CASE(fewer_requests_than_the_minimum_never_open_it_whatever_failed) {
  auto o = defaults();
  o.min_requests = 5;
  breaker_core b{o};
  requests(b, "svc.a", 4, request_outcome::crash, t0);
  BOOST_TEST((b.state("svc.a", t0) == breaker_state::closed));
  requests(b, "svc.a", 1, request_outcome::crash, t0);
  BOOST_TEST((b.state("svc.a", t0) == breaker_state::open));
}

BOOST_AUTO_TEST_CASE(a_failure_ratio_below_the_threshold_keeps_it_closed) {
  breaker_core b{defaults()};
  requests(b, "svc.a", 11, request_outcome::success, t0);
  requests(b, "svc.a", 10, request_outcome::timeout, t0); // 10 of 21: 47.6%
  BOOST_TEST((b.state("svc.a", t0) == breaker_state::closed));
  auto info = b.snapshot(t0);
  BOOST_TEST_REQUIRE(info.size() == 1u);
  BOOST_TEST(info[0].requests == 21u);
  BOOST_TEST(info[0].failures == 10u);
  requests(b, "svc.a", 1, request_outcome::timeout, t0); // 11 of 22: 50%
  BOOST_TEST((b.state("svc.a", t0) == breaker_state::open));
}

BOOST_AUTO_TEST_CASE(successes_alone_never_open_it_even_with_a_ratio_of_zero) {
  auto o = defaults();
  o.failure_ratio = 0;
  breaker_core b{o};
  requests(b, "svc.a", 40, request_outcome::success, t0);
  BOOST_TEST((b.state("svc.a", t0) == breaker_state::closed));
  requests(b, "svc.a", 1, request_outcome::crash, t0);
  BOOST_TEST((b.state("svc.a", t0) == breaker_state::open));
}

BOOST_AUTO_TEST_CASE(an_open_breaker_refuses_at_once_until_its_wait_is_over_then_half_opens) {
  breaker_core b{defaults()};
  trip(b, "svc.a", t0);
  static_cast<void>(b.take_transitions());
  auto a = b.admit("svc.a", t0 + 4s);
  BOOST_TEST(!a.admitted);
  BOOST_TEST((a.state == breaker_state::open));
  BOOST_TEST(a.requests == 20u);
  BOOST_TEST(a.failures == 20u);
  BOOST_TEST((a.half_open_in == std::chrono::nanoseconds{6s}));
  BOOST_TEST(!b.admit("svc.a", t0 + 10s - 1ns).admitted);
  BOOST_TEST(b.take_transitions().empty());
  auto trial = b.admit("svc.a", t0 + 10s);
  BOOST_TEST(trial.admitted);
  BOOST_TEST(trial.ticket.trial);
  auto changes = b.take_transitions();
  BOOST_TEST_REQUIRE(changes.size() == 1u);
  BOOST_TEST((changes[0].to == breaker_state::half_open));
  auto info = b.snapshot(t0 + 10s);
  BOOST_TEST(info[0].opened == 1u);
  BOOST_TEST(info[0].refused == 2u);
}

BOOST_AUTO_TEST_CASE(half_open_lets_its_trials_through_refuses_the_rest_and_closes_when_all_succeed) {
  auto o = defaults();
  o.trials = 3;
  breaker_core b{o};
  trip(b, "svc.a", t0);
  auto now = t0 + 10s;
  std::vector<detail::breaker_ticket> tickets;
  for (int i = 0; i < 3; ++i) {
    auto a = b.admit("svc.a", now);
    BOOST_TEST_REQUIRE(a.admitted);
    BOOST_TEST(a.ticket.trial);
    tickets.push_back(a.ticket);
  }
  auto fourth = b.admit("svc.a", now);
  BOOST_TEST(!fourth.admitted);
  BOOST_TEST((fourth.state == breaker_state::half_open));
  static_cast<void>(b.take_transitions());
  b.record("svc.a", tickets[0], request_outcome::success, now);
  b.record("svc.a", tickets[1], request_outcome::success, now);
  BOOST_TEST((b.state("svc.a", now) == breaker_state::half_open)); // 2 of 3
  BOOST_TEST(!b.admit("svc.a", now).admitted);
  b.record("svc.a", tickets[2], request_outcome::success, now + 1s);
  BOOST_TEST((b.state("svc.a", now + 1s) == breaker_state::closed));
  auto changes = b.take_transitions();
  BOOST_TEST_REQUIRE(changes.size() == 1u);
  BOOST_TEST((changes[0].to == breaker_state::closed));
  BOOST_TEST(changes[0].trials == 3u);
  // Closed with an empty window: 19 more failures are not enough.
  requests(b, "svc.a", 19, request_outcome::timeout, now + 1s);
  BOOST_TEST((b.state("svc.a", now + 1s) == breaker_state::closed));
}

BOOST_AUTO_TEST_CASE(a_failed_trial_opens_it_again_for_another_wait) {
  breaker_core b{defaults()};
  trip(b, "svc.a", t0);
  auto a = b.admit("svc.a", t0 + 10s);
  BOOST_TEST_REQUIRE(a.ticket.trial);
  static_cast<void>(b.take_transitions());
  b.record("svc.a", a.ticket, request_outcome::timeout, t0 + 11s);
  BOOST_TEST((b.state("svc.a", t0 + 11s) == breaker_state::open));
  auto changes = b.take_transitions();
  BOOST_TEST_REQUIRE(changes.size() == 1u);
  BOOST_TEST((changes[0].to == breaker_state::open));
  BOOST_TEST(changes[0].trials == 1u);
  BOOST_TEST(!b.admit("svc.a", t0 + 20s).admitted); // the wait counts from the failed trial
  BOOST_TEST(b.admit("svc.a", t0 + 21s).admitted);
  BOOST_TEST(b.snapshot(t0 + 21s)[0].opened == 2u);
}

BOOST_AUTO_TEST_CASE(a_trial_that_never_reached_the_callee_gives_its_turn_to_another) {
  breaker_core b{defaults()};
  trip(b, "svc.a", t0);
  auto a = b.admit("svc.a", t0 + 10s);
  BOOST_TEST_REQUIRE(a.ticket.trial);
  BOOST_TEST(!b.admit("svc.a", t0 + 10s).admitted);
  b.record("svc.a", a.ticket, request_outcome::neutral, t0 + 10s); // e.g. the client closed
  BOOST_TEST((b.state("svc.a", t0 + 10s) == breaker_state::half_open));
  auto again = b.admit("svc.a", t0 + 10s);
  BOOST_TEST(again.admitted);
  BOOST_TEST(again.ticket.trial);
}

BOOST_AUTO_TEST_CASE(outcomes_of_requests_sent_before_it_opened_change_nothing) {
  breaker_core b{defaults()};
  std::vector<detail::breaker_ticket> early;
  for (int i = 0; i < 30; ++i) early.push_back(b.admit("svc.a", t0).ticket);
  for (int i = 0; i < 20; ++i) b.record("svc.a", early[i], request_outcome::timeout, t0);
  BOOST_TEST_REQUIRE((b.state("svc.a", t0) == breaker_state::open));
  for (int i = 20; i < 30; ++i) b.record("svc.a", early[i], request_outcome::success, t0 + 10s);
  // Late successes neither close it nor take the trial's place.
  BOOST_TEST((b.state("svc.a", t0 + 10s) == breaker_state::half_open));
  auto trial = b.admit("svc.a", t0 + 10s);
  BOOST_TEST(trial.ticket.trial);
  BOOST_TEST(!b.admit("svc.a", t0 + 10s).admitted);
}

BOOST_AUTO_TEST_CASE(failures_leave_the_window_as_it_slides) {
  breaker_core still{defaults()};
  requests(still, "svc.a", 15, request_outcome::timeout, t0);
  requests(still, "svc.a", 5, request_outcome::timeout, t0 + 53s); // within the window
  BOOST_TEST((still.state("svc.a", t0 + 53s) == breaker_state::open));

  breaker_core slid{defaults()};
  requests(slid, "svc.a", 15, request_outcome::timeout, t0);
  requests(slid, "svc.a", 5, request_outcome::timeout, t0 + 61s); // the first 15 are gone
  BOOST_TEST((slid.state("svc.a", t0 + 61s) == breaker_state::closed));
  BOOST_TEST(slid.snapshot(t0 + 61s)[0].requests == 5u);
  requests(slid, "svc.a", 15, request_outcome::timeout, t0 + 62s);
  BOOST_TEST((slid.state("svc.a", t0 + 62s) == breaker_state::open));
}

BOOST_AUTO_TEST_CASE(replies_map_to_outcomes) {
  using detail::outcome_of;
  BOOST_TEST((outcome_of(0, "") == request_outcome::success));
  BOOST_TEST((outcome_of(status_timeout, "") == request_outcome::timeout));
  BOOST_TEST((outcome_of(code_of(status::no_responders), "") == request_outcome::no_responders));
  BOOST_TEST((outcome_of(status_failed, "crash") == request_outcome::crash));
  BOOST_TEST((outcome_of(status_failed, "timeout") == request_outcome::timeout));
  BOOST_TEST((outcome_of(status_failed, "error") == request_outcome::error));
  BOOST_TEST((outcome_of(status_failed, "downstream") == request_outcome::error));
  BOOST_TEST((outcome_of(code_of(status::overloaded), "") == request_outcome::overloaded));
  BOOST_TEST((outcome_of(status_outbox_full, "") == request_outcome::overloaded));
  BOOST_TEST((outcome_of(status_disconnected, "") == request_outcome::neutral));
  BOOST_TEST((outcome_of(status_circuit_open, "") == request_outcome::neutral));
}

BOOST_AUTO_TEST_CASE(by_default_timeouts_no_responders_and_crashes_count_and_errors_do_not) {
  auto opens_on = [](const breaker_options& o, request_outcome r) {
    breaker_core b{o};
    for (int i = 0; i < 20; ++i) request(b, "svc.a", r, t0);
    return b.state("svc.a", t0) == breaker_state::open;
  };
  auto o = defaults();
  BOOST_TEST(opens_on(o, request_outcome::timeout));
  BOOST_TEST(opens_on(o, request_outcome::no_responders));
  BOOST_TEST(opens_on(o, request_outcome::crash));
  BOOST_TEST(!opens_on(o, request_outcome::error));
  BOOST_TEST(!opens_on(o, request_outcome::overloaded));
  BOOST_TEST(!opens_on(o, request_outcome::neutral));
  BOOST_TEST(!opens_on(o, request_outcome::success));
  o.count_errors = true;
  o.count_overloaded = true;
  o.count_no_responders = false;
  BOOST_TEST(opens_on(o, request_outcome::error));
  BOOST_TEST(opens_on(o, request_outcome::overloaded));
  BOOST_TEST(!opens_on(o, request_outcome::no_responders));
}

BOOST_AUTO_TEST_CASE(a_neutral_outcome_is_not_a_request_of_the_window) {
  breaker_core b{defaults()};
  requests(b, "svc.a", 50, request_outcome::neutral, t0);
  requests(b, "svc.a", 19, request_outcome::timeout, t0);
  BOOST_TEST((b.state("svc.a", t0) == breaker_state::closed)); // 19 requests, not 69
}

BOOST_AUTO_TEST_CASE(past_max_topics_a_new_topic_goes_untracked_until_an_idle_breaker_is_forgotten) {
  auto o = defaults();
  o.max_topics = 2;
  breaker_core b{o};
  requests(b, "svc.a", 1, request_outcome::success, t0);
  requests(b, "svc.b", 1, request_outcome::timeout, t0);
  auto c = b.admit("svc.c", t0);
  BOOST_TEST(c.admitted);
  BOOST_TEST(!c.ticket.tracked);
  BOOST_TEST(b.size() == 2u);
  auto later = b.admit("svc.c", t0 + 61s); // a and b remember nothing by now
  BOOST_TEST(later.ticket.tracked);
  BOOST_TEST(b.size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_state_change_event_reads_back_as_written) {
  breaker_event e{"node-1", "orders.price", "opened", 20, 13, 0};
  auto back = decode_breaker_event(detail::encode_breaker_event(e));
  BOOST_TEST(back.node == "node-1");
  BOOST_TEST(back.topic == "orders.price");
  BOOST_TEST(back.state == "opened");
  BOOST_TEST(back.requests == 20u);
  BOOST_TEST(back.failures == 13u);
  breaker_event big{"n", std::string(300, 't'), "closed", 1ull << 40, 70000, 300};
  auto b2 = decode_breaker_event(detail::encode_breaker_event(big));
  BOOST_TEST(b2.topic == big.topic);
  BOOST_TEST(b2.requests == big.requests);
  BOOST_TEST(b2.failures == big.failures);
  BOOST_TEST(b2.trials == big.trials);
  BOOST_CHECK_THROW(static_cast<void>(decode_breaker_event("")), std::runtime_error);
  BOOST_CHECK_THROW(static_cast<void>(decode_breaker_event("\x81\xa4node")), std::runtime_error);
  auto bytes = detail::encode_breaker_event(e);
  BOOST_CHECK_THROW(static_cast<void>(decode_breaker_event(bytes.substr(0, bytes.size() - 1))),
                    std::runtime_error);
  BOOST_TEST(std::string{detail::event_word(breaker_state::open)} == "opened");
  BOOST_TEST(std::string{detail::event_word(breaker_state::half_open)} == "half_open");
  BOOST_TEST(std::string{to_string(breaker_state::closed)} == "closed");
}

BOOST_AUTO_TEST_SUITE_END()
