// SPDX-License-Identifier: Apache-2.0
// Fan-out and wildcards through a real broker, with the client connector.
#include "harness.hpp"

using namespace plexus::itest;

BOOST_AUTO_TEST_SUITE(pubsub)

BOOST_AUTO_TEST_CASE(wildcard_subscribers_get_exactly_the_topics_they_match) {
  broker_process broker;
  collector one_token, tail, exact;
  auto sub = broker.connect("subscriber");
  sub->subscribe("orders.*.shipped", one_token.handler());
  sub->subscribe("orders.>", tail.handler());
  sub->subscribe("orders.eu.shipped", exact.handler());
  sync_with_broker(*sub);

  auto pub = broker.connect("publisher");
  const std::vector<std::pair<std::string, std::string>> sent = {
    {"orders.eu.shipped", "a"},    // all three
    {"orders.us.shipped", "b"},    // * and >
    {"orders.eu.de.shipped", "c"}, // > only: * is exactly one token
    {"orders.eu", "d"},            // > only
    {"orders", "e"},               // nobody: > needs at least one token
    {"orders.eu.packed", "f"},     // > only
    {"invoices.eu.shipped", "g"},  // nobody
  };
  for (auto& [topic, payload] : sent) pub->publish(topic, payload);
  // A last message every subscription matches: one publisher, one broker,
  // one connection each way, so it arrives after everything sent before.
  pub->publish("orders.eu.shipped", "end");

  BOOST_REQUIRE(exact.wait_count(2));
  BOOST_REQUIRE(one_token.wait_count(3));
  BOOST_REQUIRE(tail.wait_count(6));
  using v = std::vector<std::string>;
  BOOST_TEST(one_token.payloads() == (v{"a", "b", "end"}), boost::test_tools::per_element());
  BOOST_TEST(tail.payloads() == (v{"a", "b", "c", "d", "f", "end"}), boost::test_tools::per_element());
  BOOST_TEST(exact.payloads() == (v{"a", "end"}), boost::test_tools::per_element());
  auto got = tail.messages();
  BOOST_TEST(got.at(2).topic == "orders.eu.de.shipped");
  BOOST_TEST(got.at(3).topic == "orders.eu");
}

BOOST_AUTO_TEST_CASE(a_topic_nobody_matches_is_confirmed_as_no_interest) {
  broker_process broker;
  collector tail;
  auto sub = broker.connect();
  sub->subscribe("orders.>", tail.handler());
  sync_with_broker(*sub);

  auto pub = broker.connect();
  guarded<std::vector<std::uint32_t>> codes;
  auto record = [&](std::uint32_t code) { codes.update([&](auto& c) { c.push_back(code); }); };
  pub->publish_confirmed("invoices.eu.paid", "x", record);
  pub->publish_confirmed("orders.eu.paid", "y", record);
  BOOST_REQUIRE(codes.wait_until([](auto& c) { return c.size() == 2; }));
  auto c = codes.snapshot();
  // Confirms come back in publish order on one connection.
  BOOST_TEST(c.at(0) == 101u); // no interest: accepted, nobody subscribes
  BOOST_TEST(c.at(1) == 0u);
  BOOST_REQUIRE(tail.wait_count(1));
  BOOST_TEST(tail.payloads() == (std::vector<std::string>{"y"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(every_subscriber_gets_every_message_in_order) {
  broker_process broker;
  constexpr int subscribers = 3, count = 2000;
  std::vector<std::unique_ptr<collector>> logs;
  for (int i = 0; i < subscribers; ++i) logs.push_back(std::make_unique<collector>());
  std::vector<std::unique_ptr<plexus::client>> subs;
  for (int i = 0; i < subscribers; ++i) {
    subs.push_back(broker.connect());
    subs.back()->subscribe("ticks.>", logs[static_cast<std::size_t>(i)]->handler());
    sync_with_broker(*subs.back());
  }
  auto pub = broker.connect();
  for (int i = 0; i < count; ++i) pub->publish("ticks.t" + std::to_string(i % 7), std::to_string(i));
  for (auto& log : logs) {
    BOOST_REQUIRE(log->wait_count(count));
    auto p = log->payloads();
    BOOST_REQUIRE_EQUAL(p.size(), std::size_t{count});
    for (int i = 0; i < count; ++i) BOOST_REQUIRE_EQUAL(p[static_cast<std::size_t>(i)], std::to_string(i));
  }
}

BOOST_AUTO_TEST_CASE(a_leading_wildcard_does_not_match_broker_internals) {
  broker_process broker{{"--id", "ps", "--stats-interval-ms", "100"}};
  collector everything, internals;
  auto sub = broker.connect();
  sub->subscribe(">", everything.handler());
  sub->subscribe("$SYS.>", internals.handler());
  sync_with_broker(*sub);
  // Stats go to both subscriptions of this one connection at once, if `>`
  // matched them: once `$SYS.>` has one, `>` would have it too.
  BOOST_REQUIRE(internals.wait_count(1));
  auto pub = broker.connect();
  pub->publish("plain.topic", "p");
  BOOST_REQUIRE(everything.wait_count(1));
  sync_with_broker(*sub);
  for (auto& m : everything.messages()) BOOST_TEST(m.topic.front() != '$', m.topic);
  BOOST_TEST(everything.payloads().front() == "p");
  BOOST_TEST(internals.messages().front().topic == "$SYS.broker.ps.stats");
}

BOOST_AUTO_TEST_SUITE_END()
