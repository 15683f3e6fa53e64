// SPDX-License-Identifier: Apache-2.0
// Flow control in the broker core (PROTOCOL.md "Flow control"), sans-IO:
// a publisher that says it does flow control is told PAUSE when a queue
// group it feeds is full enough, RESUME when credit drains it, and nothing
// it sent is dropped without a count (confirmed ones: without an answer).
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "broker_harness.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using plexus::test::harness;
using plexus::test::pub_options;
using plexus::test::seen;
using plexus::test::sub_options;

namespace {

// A queue of 10, paused at 5 (50 %), resumed at 2 (25 %).
broker::config small_groups() {
  broker::config c;
  c.group_queue_msgs = 10;
  c.pause_percent = 50;
  c.resume_percent = 25;
  return c;
}

// A client whose HELLO says it does flow control; returns WELCOME's flags.
broker::conn_id connect_flow(harness& t, std::uint32_t* welcome_flags = nullptr,
                             std::string node = "publisher") {
  auto c = t.new_conn();
  wire::header h;
  h.kind = wire::op::hello;
  h.node = node;
  h.flags = wire::flag_flow_control;
  t.receive_only(c, h);
  // WELCOME's flags, read off the output itself (the harness keeps no flags).
  t.core().flush([&](broker::conn_id to, std::span<const broker::output> outs) {
    for (auto& o : outs)
      if (to == c && o.kind == wire::op::welcome && welcome_flags) *welcome_flags = o.header().flags;
    return outs.size();
  });
  return c;
}

std::vector<seen> of_kind(const std::vector<seen>& all, wire::op kind) {
  std::vector<seen> r;
  for (auto& s : all)
    if (s.kind == kind) r.push_back(s);
  return r;
}

void publish_n(harness& t, broker::conn_id c, int from, int to) {
  for (int i = from; i < to; ++i) t.publish(c, "jobs.a", std::to_string(i));
}

} // namespace

BOOST_AUTO_TEST_SUITE(backpressure)

BOOST_AUTO_TEST_CASE(welcome_says_the_broker_does_flow_control_unless_it_is_off) {
  harness on{small_groups()};
  std::uint32_t flags = 0;
  connect_flow(on, &flags);
  BOOST_TEST((flags & wire::flag_flow_control) != 0u);

  auto cfg = small_groups();
  cfg.pause_percent = 0;
  harness off{cfg};
  flags = 123;
  connect_flow(off, &flags);
  BOOST_TEST((flags & wire::flag_flow_control) == 0u);
}

BOOST_AUTO_TEST_CASE(a_publisher_is_paused_at_the_mark_and_what_it_sends_on_is_kept_not_dropped) {
  harness t{small_groups()};
  auto worker = t.connect("worker");
  t.subscribe(worker, 1, "jobs.>", {.queue = "w", .acked = true, .credit = 0});
  auto pub = connect_flow(t);
  publish_n(t, pub, 0, 4);
  BOOST_TEST(of_kind(t.take(pub), wire::op::pause).empty()); // 4 waiting: below the mark
  publish_n(t, pub, 4, 5);
  auto got = t.take(pub);
  auto pauses = of_kind(got, wire::op::pause);
  BOOST_TEST_REQUIRE(pauses.size() == 1u); // the 5th reached the mark
  BOOST_TEST(pauses[0].topic == "jobs.>"); // the group's pattern: what to hold back
  // What was on its way when PAUSE went out is still taken: once told, never again.
  publish_n(t, pub, 5, 9);
  BOOST_TEST(of_kind(t.take(pub), wire::op::pause).empty());
  BOOST_TEST(t.core().current().group_queued == 9u);
  BOOST_TEST(t.core().stats().group_queue_drops == 0u);
  BOOST_TEST(t.core().stats().pauses == 1u);
  BOOST_TEST(t.core().stats().group_queue_peak == 9u);
  auto conns = t.core().connections();
  auto it = std::find_if(conns.begin(), conns.end(), [&](auto& c) { return c.id == pub; });
  BOOST_TEST_REQUIRE((it != conns.end()));
  BOOST_TEST(it->flow_control);
  BOOST_TEST(it->paused == 1u);
}

BOOST_AUTO_TEST_CASE(resume_goes_once_credit_drains_the_queue_to_its_resume_mark) {
  harness t{small_groups()};
  auto worker = t.connect("worker");
  t.subscribe(worker, 1, "jobs.>", {.queue = "w", .acked = true, .credit = 0});
  auto pub = connect_flow(t);
  publish_n(t, pub, 0, 8);
  BOOST_TEST(of_kind(t.take(pub), wire::op::pause).size() == 1u);
  t.simple(worker, wire::op::credit, 1, 0, 5); // 3 left waiting: above the resume mark (2)
  BOOST_TEST(t.take_msgs(worker).size() == 5u);
  BOOST_TEST(of_kind(t.take(pub), wire::op::resume).empty());
  t.simple(worker, wire::op::credit, 1, 0, 1); // 2 left: resume
  auto resumes = of_kind(t.take(pub), wire::op::resume);
  BOOST_TEST_REQUIRE(resumes.size() == 1u);
  BOOST_TEST(resumes[0].topic == "jobs.>");
  BOOST_TEST(t.core().stats().resumes == 1u);
  // Everything it published arrives, once, in order.
  t.simple(worker, wire::op::credit, 1, 0, 100);
  auto rest = t.take_msgs(worker); // the one the credit of 1 brought, then the last 2
  BOOST_TEST(rest.size() == 3u);
  BOOST_TEST(rest.back().payload == "7");
  BOOST_TEST(t.core().stats().group_queue_drops == 0u);
  // Paused again only when the queue reaches the mark again.
  publish_n(t, pub, 8, 9);
  BOOST_TEST(of_kind(t.take(pub), wire::op::pause).empty());
}

BOOST_AUTO_TEST_CASE(a_confirmed_publish_past_the_mark_is_answered_overloaded_and_delivered_nowhere) {
  harness t{small_groups()};
  auto worker = t.connect("worker");
  t.subscribe(worker, 1, "jobs.>", {.queue = "w", .acked = true, .credit = 0});
  auto watcher = t.connect("watcher");
  t.subscribe(watcher, 1, "jobs.>"); // a plain subscriber beside the group
  auto pub = connect_flow(t);
  publish_n(t, pub, 0, 5);
  t.take(pub);
  BOOST_TEST(t.take_msgs(watcher).size() == 5u);
  t.publish(pub, "jobs.a", "c1", pub_options{.msg_id = "m1", .confirm = true});
  auto confirms = of_kind(t.take(pub), wire::op::confirm);
  BOOST_TEST_REQUIRE(confirms.size() == 1u);
  BOOST_TEST(confirms[0].msg_id == "m1");
  BOOST_TEST(confirms[0].code == code_of(status::overloaded));
  BOOST_TEST(t.take_msgs(watcher).empty()); // refused before routing: a resend is no duplicate
  BOOST_TEST(t.core().stats().paused_refusals == 1u);
  BOOST_TEST(t.core().current().group_queued == 5u);
  // Drained, the same msg id is taken (it was never seen) and confirmed once acked.
  t.simple(worker, wire::op::credit, 1, 0, 5);
  auto first = t.take_msgs(worker);
  BOOST_TEST_REQUIRE(first.size() == 5u);
  BOOST_TEST(of_kind(t.take(pub), wire::op::resume).size() == 1u);
  t.publish(pub, "jobs.a", "c1", pub_options{.msg_id = "m1", .confirm = true});
  BOOST_TEST(t.take_msgs(watcher).size() == 1u);
  t.simple(worker, wire::op::credit, 1, 0, 1);
  auto m = t.take_msgs(worker);
  BOOST_TEST_REQUIRE(m.size() == 1u);
  BOOST_TEST(m[0].msg_id == "m1");
  t.simple(worker, wire::op::ack, 1, m[0].seq);
  auto done = of_kind(t.take(pub), wire::op::confirm);
  BOOST_TEST_REQUIRE(done.size() == 1u);
  BOOST_TEST(done[0].code == 0u);
  BOOST_TEST(t.core().stats().duplicates == 0u);
}

BOOST_AUTO_TEST_CASE(past_the_limit_what_a_paused_publisher_sends_is_dropped_counted_and_confirmed_overloaded) {
  auto cfg = small_groups();
  harness t{cfg};
  auto worker = t.connect("worker");
  t.subscribe(worker, 1, "jobs.>", {.queue = "w", .acked = true, .credit = 0});
  auto pub = connect_flow(t);
  publish_n(t, pub, 0, 12); // a publisher that ignores PAUSE
  BOOST_TEST(t.core().current().group_queued == 10u);
  BOOST_TEST(t.core().stats().group_queue_drops == 2u);
  BOOST_TEST(t.core().stats().flow_overruns == 2u);
  BOOST_TEST(of_kind(t.take(pub), wire::op::pause).size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_publisher_without_flow_control_is_never_paused_and_loses_past_the_limit_as_before) {
  harness t{small_groups()};
  auto worker = t.connect("worker");
  t.subscribe(worker, 1, "jobs.>", {.queue = "w", .acked = true, .credit = 0});
  auto old = t.connect("old");
  publish_n(t, old, 0, 10);
  t.publish(old, "jobs.a", "c", pub_options{.msg_id = "m1", .confirm = true});
  auto got = t.take(old);
  BOOST_TEST(of_kind(got, wire::op::pause).empty());
  auto confirms = of_kind(got, wire::op::confirm);
  BOOST_TEST_REQUIRE(confirms.size() == 1u);
  BOOST_TEST(confirms[0].code == code_of(status::overloaded));
  BOOST_TEST(t.core().stats().group_queue_drops == 1u);
  BOOST_TEST(t.core().stats().pauses == 0u);
}

BOOST_AUTO_TEST_CASE(a_group_that_loses_its_last_member_resumes_its_publishers) {
  harness t{small_groups()};
  auto worker = t.connect("worker");
  t.subscribe(worker, 1, "jobs.>", {.queue = "w", .acked = true, .credit = 0});
  auto pub = connect_flow(t);
  publish_n(t, pub, 0, 6);
  BOOST_TEST(of_kind(t.take(pub), wire::op::pause).size() == 1u);
  t.simple(worker, wire::op::unsub, 1);
  BOOST_TEST(of_kind(t.take(pub), wire::op::resume).size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_new_session_starts_unpaused_and_a_closed_publisher_is_forgotten) {
  harness t{small_groups()};
  auto worker = t.connect("worker");
  t.subscribe(worker, 1, "jobs.>", {.queue = "w", .acked = true, .credit = 0});
  auto pub = connect_flow(t);
  publish_n(t, pub, 0, 5);
  BOOST_TEST(of_kind(t.take(pub), wire::op::pause).size() == 1u);
  // A second HELLO: the client forgot its pauses, so must the broker, and
  // the next message past the mark pauses it again.
  wire::header h;
  h.kind = wire::op::hello;
  h.node = "publisher";
  h.flags = wire::flag_flow_control;
  t.send(pub, h);
  t.take(pub);
  publish_n(t, pub, 5, 6);
  BOOST_TEST(of_kind(t.take(pub), wire::op::pause).size() == 1u);
  // Gone while paused: draining the group later tells nobody.
  t.core().disconnected(pub, t.now());
  t.simple(worker, wire::op::credit, 1, 0, 100);
  BOOST_TEST(t.take_msgs(worker).size() == 6u);
  BOOST_TEST(t.core().stats().resumes == 0u);
}

BOOST_AUTO_TEST_CASE(a_pause_by_bytes_counts_like_one_by_messages) {
  auto cfg = small_groups();
  cfg.group_queue_msgs = 1000;
  cfg.group_queue_bytes = 1000; // paused at 500 bytes
  harness t{cfg};
  auto worker = t.connect("worker");
  t.subscribe(worker, 1, "jobs.>", {.queue = "w", .acked = true, .credit = 0});
  auto pub = connect_flow(t);
  t.publish(pub, "jobs.a", std::string(300, 'x'));
  BOOST_TEST(of_kind(t.take(pub), wire::op::pause).empty());
  t.publish(pub, "jobs.a", std::string(300, 'y'));
  BOOST_TEST(of_kind(t.take(pub), wire::op::pause).size() == 1u);
  t.simple(worker, wire::op::credit, 1, 0, 2);
  BOOST_TEST(t.take_msgs(worker).size() == 2u);
  BOOST_TEST(of_kind(t.take(pub), wire::op::resume).size() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
