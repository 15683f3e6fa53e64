// SPDX-License-Identifier: Apache-2.0
// What a confirm with code 0 promises, and what keeps a session honest:
// dedup scoped to the publisher and holding no payloads, a slow consumer
// told what it missed, a receive-only client kept alive by answering PINGs.
#include <boost/test/unit_test.hpp>

#include <malloc.h>

#include <string>

#include "broker_harness.hpp"
#include "dedup.hpp"
#include "print.hpp"

using namespace plexus;
using namespace plexus::test;
using broker::status;
using wire::op;

namespace {

std::vector<seen> of_kind(std::vector<seen> all, op kind) {
  std::vector<seen> out;
  for (auto& s : all)
    if (s.kind == kind) out.push_back(std::move(s));
  return out;
}

void pong(harness& t, conn_id c) {
  wire::header h;
  h.kind = op::pong;
  t.send(c, h);
}

} // namespace

BOOST_AUTO_TEST_SUITE(broker_promises)

BOOST_AUTO_TEST_CASE(two_publishers_numbering_their_ids_alike_both_get_every_message_delivered) {
  harness t;
  // The same node name too: only the lineage tells them apart.
  auto p1 = t.connect("orders", 1), p2 = t.connect("orders", 2);
  auto anon1 = t.connect("anon"), anon2 = t.connect("anon"); // no lineage: a scope each
  auto sub = t.connect();
  t.subscribe(sub, 1, "a");
  t.subscribe(sub, 2, "b", {.acked = true});
  for (auto pub : {p1, p2, anon1, anon2})
    for (int i = 1; i <= 3; ++i) {
      t.publish(pub, "a", "x", {.msg_id = std::to_string(i), .confirm = true});
      t.publish(pub, "b", "x", {.msg_id = "b" + std::to_string(i), .confirm = true});
    }
  auto got = t.take_msgs(sub);
  BOOST_TEST(got.size() == 24u);
  for (auto& m : got)
    if (m.sid == 2) t.simple(sub, op::ack, 2, m.seq);
  for (auto pub : {p1, p2, anon1, anon2}) {
    auto confirms = of_kind(t.take(pub), op::confirm);
    BOOST_TEST(confirms.size() == 6u);
    for (auto& c : confirms) BOOST_TEST(c.code == 0u);
  }
  BOOST_TEST(t.core().stats().duplicates == 0u);
}

BOOST_AUTO_TEST_CASE(a_publisher_reconnecting_with_its_lineage_is_still_deduplicated) {
  harness t;
  auto sub = t.connect();
  t.subscribe(sub, 1, "t");
  auto first = t.connect("pub", 99);
  t.publish(first, "t", "x", {.msg_id = "m1", .confirm = true});
  BOOST_TEST(of_kind(t.take(first), op::confirm).size() == 1u);
  t.core().disconnected(first, t.now());
  auto again = t.connect("pub", 99);
  t.publish(again, "t", "x", {.msg_id = "m1", .confirm = true});
  auto confirms = of_kind(t.take(again), op::confirm);
  BOOST_TEST_REQUIRE(confirms.size() == 1u);
  BOOST_TEST(confirms[0].code == 0u); // delivered once, confirmed again
  BOOST_TEST(t.take_msgs(sub).size() == 1u);
  BOOST_TEST(t.core().stats().duplicates == 1u);
  // Without the lineage it is somebody else: a new message.
  auto other = t.connect("pub");
  t.publish(other, "t", "x", {.msg_id = "m1"});
  BOOST_TEST(t.take_msgs(sub).size() == 1u);
}

// glibc's count of bytes in use by malloc: what the core still holds.
std::size_t heap_in_use() { return mallinfo2().uordblks; }

BOOST_AUTO_TEST_CASE(the_dedup_window_keeps_ids_and_outcomes_not_payloads) {
#if defined(__SANITIZE_ADDRESS__)
  BOOST_TEST_MESSAGE("skipped under ASan: its allocator is not glibc's");
#else
  broker::config cfg;
  cfg.heartbeat = 3600s;
  harness t{cfg};
  auto pub = t.connect("pub", 5);
  auto sub = t.connect();
  t.subscribe(sub, 1, "big", {.acked = true});
  const std::string payload(1 << 20, 'p');
  auto before = heap_in_use();
  for (int i = 0; i < 64; ++i) {
    t.publish(pub, "big", payload, {.msg_id = "id" + std::to_string(i), .confirm = true});
    auto got = t.take_msgs(sub);
    BOOST_TEST_REQUIRE(got.size() == 1u);
    t.simple(sub, op::ack, 1, got[0].seq);
    auto confirms = of_kind(t.take(pub), op::confirm);
    BOOST_TEST_REQUIRE(confirms.size() == 1u);
    BOOST_TEST_REQUIRE(confirms[0].code == 0u);
  }
  BOOST_TEST(t.core().current().dedup_entries == 64u);
  auto grew = heap_in_use() - std::min(heap_in_use(), before);
  // 64 MiB of payloads went through; the window remembers 64 ids.
  BOOST_TEST(grew < std::size_t{1} << 20, "the core still holds " << grew << " bytes");
  // And a duplicate of a settled one is still recognised.
  t.publish(pub, "big", "x", {.msg_id = "id3", .confirm = true});
  BOOST_TEST(t.take_msgs(sub).empty());
  auto confirms = of_kind(t.take(pub), op::confirm);
  BOOST_TEST_REQUIRE(confirms.size() == 1u);
  BOOST_TEST(confirms[0].code == 0u);
#endif
}

BOOST_AUTO_TEST_CASE(the_dedup_window_is_bounded_in_bytes_and_counts_what_it_forgets_early) {
  broker::config cfg;
  cfg.dedup_bytes = 10 * (broker::dedup_window::entry_overhead + 40);
  harness t{cfg};
  auto pub = t.connect("pub", 5);
  auto sub = t.connect();
  t.subscribe(sub, 1, "t");
  for (int i = 0; i < 100; ++i) t.publish(pub, "t", "x", {.msg_id = "id-" + std::to_string(1000 + i)});
  BOOST_TEST(t.take_msgs(sub).size() == 100u);
  auto g = t.core().current();
  BOOST_TEST(g.dedup_bytes <= cfg.dedup_bytes);
  BOOST_TEST(g.dedup_entries >= 5u);
  BOOST_TEST(g.dedup_entries < 100u);
  BOOST_TEST(t.core().stats().dedup_evictions == 100u - g.dedup_entries);
  // The newest are still known.
  t.publish(pub, "t", "x", {.msg_id = "id-1099"});
  BOOST_TEST(t.take_msgs(sub).empty());
}

BOOST_AUTO_TEST_CASE(a_confirm_is_not_ok_when_the_only_subscriber_dropped_the_message) {
  broker::config cfg;
  cfg.max_pending_msgs = 2;
  cfg.heartbeat = 3600s;
  harness t{cfg};
  auto pub = t.connect();
  auto slow = t.connect();
  t.subscribe(slow, 1, "t");
  t.subscribe(slow, 2, "acked", {.acked = true});
  t.core().flush([](conn_id, std::span<const broker::output>) { return std::size_t{0}; });
  t.publish_only(pub, "t", "1");
  t.publish_only(pub, "t", "2");
  // The queue is full: these two reach nobody, whatever the ack mode.
  wire::header h;
  h.kind = op::pub;
  h.flags = wire::flag_confirm;
  h.topic = "t";
  h.msg_id = "plain";
  t.receive_only(pub, h, "3");
  h.topic = "acked";
  h.msg_id = "acked";
  t.receive_only(pub, h, "4");
  t.flush();
  auto seen_by_slow = t.take(slow);
  BOOST_TEST(of_kind(seen_by_slow, op::msg).size() == 2u);
  BOOST_TEST(of_kind(seen_by_slow, op::err).size() == 1u); // ERR 112: it missed some
  auto confirms = of_kind(t.take(pub), op::confirm);
  BOOST_TEST_REQUIRE(confirms.size() == 2u);
  for (auto& c : confirms) BOOST_TEST(c.code == static_cast<std::uint32_t>(status::overloaded));
  BOOST_TEST(t.core().stats().slow_consumer_drops == 2u);
  BOOST_TEST(!t.was_closed(slow));
}

BOOST_AUTO_TEST_CASE(a_slow_consumer_under_drop_is_told_how_many_it_missed_and_keeps_its_session) {
  broker::config cfg;
  cfg.max_pending_msgs = 10;
  harness t{cfg};
  auto pub = t.connect();
  auto slow = t.connect();
  t.subscribe(slow, 1, "flood");
  // It reads nothing while 30 messages come.
  t.core().flush([](conn_id, std::span<const broker::output>) { return std::size_t{0}; });
  for (int i = 0; i < 30; ++i) t.publish_only(pub, "flood", "m");
  // A full queue of messages does not stop control frames: it PINGs and
  // gets its PONG.
  wire::header ping;
  ping.kind = op::ping;
  t.receive_only(slow, ping);
  t.advance(1500ms); // a heartbeat: the drops since the first notice are told
  auto got = t.take(slow);
  BOOST_TEST(t.core().stats().slow_consumer_drops == 20u);
  BOOST_TEST(!t.was_closed(slow));
  BOOST_TEST(of_kind(got, op::msg).size() == 10u);
  BOOST_TEST(of_kind(got, op::pong).size() == 1u);
  auto errs = of_kind(got, op::err);
  BOOST_TEST_REQUIRE(!errs.empty());
  std::uint32_t told = 0;
  for (auto& e : errs) {
    BOOST_TEST(e.code == static_cast<std::uint32_t>(status::slow_consumer));
    BOOST_TEST(e.text.find("dropped") != std::string::npos, e.text);
    told += e.count;
  }
  BOOST_TEST(told == 20u);
  auto conns = t.core().connections();
  auto it = std::find_if(conns.begin(), conns.end(), [&](auto& c) { return c.id == slow; });
  BOOST_TEST_REQUIRE((it != conns.end()));
  BOOST_TEST(it->drops == 20u);
  // Reading again, it gets what comes next.
  t.publish(pub, "flood", "after");
  BOOST_TEST(t.take_msgs(slow).size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_client_that_only_receives_stays_alive_by_answering_pings) {
  broker::config cfg; // heartbeat 1 s, liveness 3
  harness t{cfg};
  auto pub = t.connect();
  auto reader = t.connect();
  t.subscribe(reader, 1, "steady");
  std::size_t received = 0;
  // Ten seconds of steady traffic: the reader says nothing but PONG.
  for (int step = 0; step < 100; ++step) {
    t.publish(pub, "steady", "x");
    t.advance(100ms);
    for (auto& s : t.take(reader)) {
      if (s.kind == op::msg) ++received;
      if (s.kind == op::ping) pong(t, reader);
      BOOST_TEST_REQUIRE((s.kind != op::bye), "the broker closed it: " << s.text);
    }
  }
  BOOST_TEST(received == 100u);
  BOOST_TEST(!t.was_closed(reader));
  BOOST_TEST(t.core().stats().heartbeat_timeouts == 0u);
}

BOOST_AUTO_TEST_CASE(a_silent_client_is_told_why_its_session_ended) {
  harness t;
  auto quiet = t.connect();
  t.subscribe(quiet, 1, "t");
  t.advance(3500ms);
  BOOST_TEST(t.was_closed(quiet));
  auto got = t.take(quiet);
  BOOST_TEST_REQUIRE(!got.empty());
  BOOST_TEST(got.back().kind == op::bye);
  BOOST_TEST(got.back().text.starts_with("heartbeat timeout"), got.back().text);
  // Whatever it sends next is a new connection's, which must say HELLO first.
  t.publish(quiet, "t", "late");
  auto err = t.take(quiet);
  BOOST_TEST_REQUIRE(err.size() == 1u);
  BOOST_TEST(err[0].code == static_cast<std::uint32_t>(status::protocol_violation));
}

BOOST_AUTO_TEST_CASE(a_shared_id_is_the_event_s_kept_once_whoever_publishes_it_and_every_publisher_hears_its_outcome) {
  harness t;
  auto sub = t.connect();
  t.subscribe(sub, 1, "ticks.>", {.acked = true});
  auto node1 = t.connect("n1", 1), node2 = t.connect("n2", 2);
  auto tick = [&](conn_id c, std::string_view topic, std::string_view id) {
    wire::header h;
    h.kind = op::pub;
    h.topic = topic;
    h.msg_id = id;
    h.flags = wire::flag_confirm | wire::flag_shared_id;
    t.send(c, h, "tick");
  };
  tick(node1, "ticks.daily", "daily@1000");
  tick(node2, "ticks.daily", "daily@1000"); // while the first is in flight
  auto got = t.take_msgs(sub);
  BOOST_TEST_REQUIRE(got.size() == 1u); // one event
  BOOST_TEST(of_kind(t.take(node1), op::confirm).empty()); // not acked yet: nobody hears 0
  BOOST_TEST(of_kind(t.take(node2), op::confirm).empty());
  t.simple(sub, op::ack, 1, got[0].seq);
  for (auto pub : {node1, node2}) {
    auto confirms = of_kind(t.take(pub), op::confirm);
    BOOST_TEST_REQUIRE(confirms.size() == 1u);
    BOOST_TEST(confirms[0].code == 0u);
  }
  tick(node2, "ticks.daily", "daily@1000"); // late: answered from the window
  auto late = of_kind(t.take(node2), op::confirm);
  BOOST_TEST_REQUIRE(late.size() == 1u);
  BOOST_TEST(late[0].code == 0u);
  BOOST_TEST(t.take_msgs(sub).empty());
  // Its scope is the topic: the same id on another topic is another event,
  // and a plain publish of the same id is the publisher's own.
  tick(node1, "ticks.hourly", "daily@1000");
  t.publish(node1, "ticks.daily", "x", {.msg_id = "daily@1000", .confirm = true});
  BOOST_TEST(t.take_msgs(sub).size() == 2u);
  BOOST_TEST(t.core().stats().duplicates == 2u);
}

BOOST_AUTO_TEST_SUITE_END()
