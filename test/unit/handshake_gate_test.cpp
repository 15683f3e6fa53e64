// SPDX-License-Identifier: Apache-2.0
// The cap on connections in their handshake (brokers/server/handshakes.hpp):
// the bookkeeping the server feeds with its socket monitor's events.
#include <boost/test/unit_test.hpp>

#include "handshakes.hpp"

using plexus::broker::handshake_gate;
using namespace std::chrono_literals;

BOOST_AUTO_TEST_SUITE(handshake_cap)

BOOST_AUTO_TEST_CASE(past_the_cap_a_connection_is_refused_until_one_finishes) {
  handshake_gate g{3, 5000ms};
  auto t = handshake_gate::clock::time_point{} + 1h;
  for (int i = 0; i < 3; ++i) BOOST_TEST(g.accepted(t));
  BOOST_TEST(!g.accepted(t));
  BOOST_TEST(!g.accepted(t));
  BOOST_TEST(g.refused() == 2u);
  BOOST_TEST(g.in_progress(t) == 3u);
  // The two refused ones hang up: their failures free no admitted place.
  g.finished(true, t);
  g.finished(true, t);
  BOOST_TEST(g.in_progress(t) == 3u);
  BOOST_TEST(g.failed() == 0u);
  BOOST_TEST(!g.accepted(t));
  g.finished(true, t); // the third refused one
  g.finished(false, t); // an admitted one succeeds: a place frees
  BOOST_TEST(g.succeeded() == 1u);
  BOOST_TEST(g.in_progress(t) == 2u);
  BOOST_TEST(g.accepted(t));
  BOOST_TEST(!g.accepted(t));
  g.finished(true, t); // that refused one
  g.finished(true, t); // an admitted one fails (a wrong key, a timeout)
  BOOST_TEST(g.failed() == 1u);
  BOOST_TEST(g.in_progress(t) == 2u);
}

// Were an event lost, the count would never come down; but no handshake
// outlives its timeout, so neither does its place.
BOOST_AUTO_TEST_CASE(a_place_is_forgotten_after_the_handshake_timeout) {
  handshake_gate g{2, 5000ms};
  auto t = handshake_gate::clock::time_point{} + 1h;
  BOOST_TEST(g.accepted(t));
  BOOST_TEST(g.accepted(t + 1s));
  BOOST_TEST(!g.accepted(t + 2s));
  BOOST_TEST(g.in_progress(t + 6100ms) == 1u); // the first's time is up (5 s + 1 s slack)
  BOOST_TEST(g.accepted(t + 6500ms));
  BOOST_TEST(g.in_progress(t + 20s) == 0u);
}

BOOST_AUTO_TEST_CASE(a_cap_of_zero_counts_and_refuses_nothing) {
  handshake_gate g{0, 5000ms};
  auto t = handshake_gate::clock::time_point{} + 1h;
  for (int i = 0; i < 10'000; ++i) BOOST_TEST_REQUIRE(g.accepted(t));
  BOOST_TEST(g.in_progress(t) == 10'000u);
  BOOST_TEST(g.refused() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
