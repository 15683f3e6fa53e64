// SPDX-License-Identifier: Apache-2.0
// Deadlines: a message already past its deadline is dropped by the broker
// and counted as expired in its stats; the stream behind it flows on.
#include "harness.hpp"

using namespace plexus::itest;

namespace {
std::uint64_t unix_ns(std::chrono::system_clock::time_point t) {
  return static_cast<std::uint64_t>(
    std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}
} // namespace

BOOST_AUTO_TEST_SUITE(deadline)

BOOST_AUTO_TEST_CASE(an_expired_message_is_dropped_and_counted_by_the_broker) {
  broker_process broker{{"--id", "dl", "--stats-interval-ms", "200"}};
  stats_watch stats{broker, "dl"};
  collector got;
  auto sub = broker.connect("subscriber");
  sub->subscribe("events.x", got.handler());
  sync_with_broker(*sub);

  auto pub = broker.connect("publisher");
  auto now = std::chrono::system_clock::now();
  plexus::publish_options stale;
  stale.deadline_ns = unix_ns(now - 1s);
  plexus::publish_options later;
  later.deadline_ns = unix_ns(now + 60s);
  pub->publish("events.x", "stale", stale);
  pub->publish("events.x", "fresh");
  pub->publish("events.x", "in time", later);

  BOOST_REQUIRE(got.wait_count(2));
  sync_with_broker(*pub);
  sync_with_broker(*sub); // anything still on its way to the subscriber is here now
  auto m = got.messages();
  BOOST_REQUIRE_EQUAL(m.size(), 2u);
  BOOST_TEST(m[0].payload == "fresh");
  BOOST_TEST(m[1].payload == "in time");

  BOOST_REQUIRE_MESSAGE(stats.wait_for("expired", [](auto v) { return v >= 1; }),
                        "no stats with expired >= 1 within 10 s; last: " << stats.json());
  BOOST_TEST(stats.counter("expired") == 1u, stats.json());
  BOOST_TEST(stats.counter("msgs_in") >= 2u); // the two live ones were accepted
}

BOOST_AUTO_TEST_CASE(a_message_delivered_before_its_deadline_carries_it) {
  broker_process broker;
  guarded<std::vector<std::uint64_t>> deadlines;
  auto sub = broker.connect();
  sub->subscribe("events.y", [&deadlines](const plexus::message_view& v) {
    deadlines.update([&](auto& d) { d.push_back(v.deadline_ns); });
  });
  sync_with_broker(*sub);
  auto pub = broker.connect();
  plexus::publish_options o;
  o.deadline_ns = unix_ns(std::chrono::system_clock::now() + 30s);
  pub->publish("events.y", "x", o);
  BOOST_REQUIRE(deadlines.wait_until([](auto& d) { return !d.empty(); }));
  BOOST_TEST(deadlines.snapshot().at(0) == o.deadline_ns);
}

BOOST_AUTO_TEST_SUITE_END()
