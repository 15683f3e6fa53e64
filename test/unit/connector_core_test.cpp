// SPDX-License-Identifier: Apache-2.0
// The client connector's core (connector_core.hpp) driven alone with a
// fake clock: the session rules a client keeps with its broker, written as
// what a user of plexus::client may rely on.
#define BOOST_TEST_MODULE plexus_connector_core
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "connector_rig.hpp"
#include "outbox.hpp"
#include "print.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using plexus::test::connector_rig;

namespace {

wire::header from_broker(wire::op kind) {
  wire::header h;
  h.kind = kind;
  return h;
}

wire::header confirm_of(std::string_view msg_id, std::uint32_t code = 0) {
  auto h = from_broker(wire::op::confirm);
  h.msg_id = msg_id;
  h.code = code;
  return h;
}

} // namespace

BOOST_AUTO_TEST_SUITE(handshake)

BOOST_AUTO_TEST_CASE(hello_goes_first_with_the_lineage_and_nothing_else_before_welcome) {
  connector_rig r;
  r.start();
  BOOST_TEST(r.dialed == std::vector<std::string>{"tcp://a:1"});
  r.take(connector_rig::pub("orders", "1"));
  BOOST_TEST(r.write() == 1u);
  BOOST_TEST_REQUIRE(r.out.size() == 1u);
  BOOST_TEST(r.out[0].kind == wire::op::hello);
  BOOST_TEST(r.out[0].node == "n1");
  BOOST_TEST(r.out[0].seq == 0xabcu); // the lineage: the scope of our msg ids
  BOOST_TEST(r.out[0].heartbeat_ms == 250u);
  BOOST_TEST(r.write() == 0u); // the PUB waits for the session
  r.welcome();
  BOOST_TEST(r.began == 1u);
  r.write();
  BOOST_TEST_REQUIRE(r.out.size() == 2u);
  BOOST_TEST(r.out[1].kind == wire::op::pub);
  BOOST_TEST(r.out[1].payload == "1");
  BOOST_TEST(r.finished == 1u); // flush() may return
}

BOOST_AUTO_TEST_CASE(a_hello_the_socket_refuses_is_tried_again_until_it_goes) {
  connector_rig r;
  r.start();
  r.room = false; // with ZMQ_IMMEDIATE, nothing goes before the TCP link is up
  BOOST_TEST(r.core.saying_hello());
  r.advance(100ms);
  BOOST_TEST(r.write() == 0u);
  r.room = true;
  BOOST_TEST(r.write() == 1u);
  BOOST_TEST(!r.core.saying_hello());
  BOOST_TEST(r.of(wire::op::hello).size() == 1u);
}

BOOST_AUTO_TEST_CASE(welcome_restores_subscriptions_then_unconfirmed_publishes_before_new_work) {
  connector_rig r;
  r.connect();
  r.subs = {{1, "orders.>"}, {2, "audit"}};
  r.take(connector_rig::confirmed("orders.new", "m1", [](std::uint32_t) {}));
  r.write();
  r.out.clear();
  // The broker goes away; the next one knows nothing of us.
  r.core.link_lost();
  r.advance(1ms);
  BOOST_TEST(!r.socket);
  r.advance(1ms);
  BOOST_TEST(r.dialed.back() == "tcp://b:2");
  r.take(connector_rig::pub("fresh", "f"));
  r.write();
  r.welcome("b2");
  r.write();
  BOOST_TEST_REQUIRE(r.out.size() == 5u);
  BOOST_TEST(r.out[0].kind == wire::op::hello);
  BOOST_TEST(r.out[1].kind == wire::op::sub);
  BOOST_TEST(r.out[1].topic == "orders.>");
  BOOST_TEST(r.out[2].kind == wire::op::sub);
  BOOST_TEST(r.out[3].msg_id == "m1"); // the unconfirmed publish again, same id: dedup sees it
  BOOST_TEST(r.out[3].confirm);
  BOOST_TEST(r.out[4].topic == "fresh");
  BOOST_TEST(r.core.counts().resent == 1u);
  BOOST_TEST(r.core.counts().failovers == 1u);
}

BOOST_AUTO_TEST_CASE(brokers_advertised_in_welcome_join_the_failover_list_once) {
  auto cfg = connector_rig::config();
  cfg.endpoints = {"tcp://a:1"};
  connector_rig r{cfg};
  r.start();
  r.write();
  r.welcome("b1", {"tcp://a:1", "tcp://c:3"});
  r.core.link_lost();
  r.advance(1ms);
  r.advance(1ms);
  BOOST_TEST(r.dialed == (std::vector<std::string>{"tcp://a:1", "tcp://c:3"}));
}

BOOST_AUTO_TEST_CASE(endpoints_zeromq_would_refuse_are_named_with_what_is_expected) {
  for (auto good : {"tcp://127.0.0.1:7400", "tcp://broker-1.example:65535", "tcp://[::1]:7400",
                    "tcp://eth0;10.0.0.1:7400", "ipc:///tmp/plexus.sock", "inproc://plexus"})
    BOOST_TEST(detail::endpoint_problem(good).empty(), good << ": " << detail::endpoint_problem(good));
  for (auto bad : {"nonsense", "", "tcp://host:notaport", "tcp://host:0", "tcp://host:65536",
                   "tcp://host:", "tcp://host", "tcp://:7400", "tcp://ho st:7400", "ipc://",
                   "inproc://", "udp://host:7400"}) {
    auto why = detail::endpoint_problem(bad);
    BOOST_TEST(why.starts_with("bad broker endpoint '" + std::string{bad} + "': "), bad << ": " << why);
  }
  BOOST_TEST(detail::endpoint_problem("nonsense")
             == "bad broker endpoint 'nonsense': expected tcp://HOST:PORT, ipc://PATH or inproc://NAME");
  BOOST_TEST(detail::endpoint_problem("tcp://host:notaport").find("port") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_core_with_an_endpoint_that_cannot_be_dialled_is_not_made) {
  auto cfg = connector_rig::config();
  cfg.endpoints = {"tcp://a:1", "tcp://b:x"};
  BOOST_CHECK_THROW(detail::connector_core{cfg}, std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(a_peer_advertised_in_welcome_that_cannot_be_dialled_is_skipped_and_reported) {
  auto cfg = connector_rig::config();
  cfg.endpoints = {"tcp://a:1"};
  connector_rig r{cfg};
  r.start();
  r.write();
  r.welcome("b1", {"garbage", "tcp://c:3", "tcp://d:notaport"});
  BOOST_TEST(r.began == 1u); // the session goes on
  BOOST_TEST_REQUIRE(r.reports.size() == 2u);
  BOOST_TEST(r.reports[0].first == static_cast<std::uint32_t>(wire::errc::value_out_of_range));
  BOOST_TEST(r.reports[0].second.find("bad broker endpoint 'garbage'") != std::string::npos,
             r.reports[0].second);
  BOOST_TEST(r.reports[1].second.find("tcp://d:notaport") != std::string::npos, r.reports[1].second);
  // Failover goes round a, c only.
  for (int k = 0; k < 3; ++k) {
    r.core.link_lost();
    r.advance(1ms);
    r.advance(1ms);
    r.write();
    r.welcome("b1");
  }
  BOOST_TEST(r.dialed == (std::vector<std::string>{"tcp://a:1", "tcp://c:3", "tcp://a:1", "tcp://c:3"}));
}

BOOST_AUTO_TEST_CASE(welcome_hands_the_brokers_payload_limit_to_the_shell) {
  connector_rig r;
  r.start();
  r.write();
  r.welcome("b1", {}, 4096);
  BOOST_TEST(r.max_payload == 4096u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(confirms)

BOOST_AUTO_TEST_CASE(a_confirm_settles_its_publish_once_with_the_brokers_code) {
  connector_rig r;
  r.connect();
  std::vector<std::uint32_t> codes;
  r.take(connector_rig::confirmed("t", "m1", [&](std::uint32_t c) { codes.push_back(c); }));
  r.write();
  BOOST_TEST(r.slots == 1u);
  r.hear(confirm_of("m1", 104)); // (103 is sent again: see flow_control)
  r.hear(confirm_of("m1", 0)); // a duplicate's second confirm: nothing left to settle
  BOOST_TEST(codes == std::vector<std::uint32_t>{104});
  BOOST_TEST(r.slots == 0u);
  BOOST_TEST(r.core.unconfirmed() == 0u);
}

BOOST_AUTO_TEST_CASE(two_publishes_with_one_msg_id_share_one_slot_and_both_hear_its_confirm) {
  connector_rig r;
  r.connect();
  int first = -1, second = -1;
  r.take(connector_rig::confirmed("t", "m1", [&](std::uint32_t c) { first = int(c); }));
  r.take(connector_rig::confirmed("t", "m1", [&](std::uint32_t c) { second = int(c); }));
  BOOST_TEST(r.slots == 1u); // the second's slot came back at once
  BOOST_TEST(r.core.unconfirmed() == 1u);
  r.hear(confirm_of("m1"));
  BOOST_TEST(first == 0);
  BOOST_TEST(second == 0);
  BOOST_TEST(r.slots == 0u);
}

BOOST_AUTO_TEST_CASE(an_err_naming_a_confirmed_publish_is_its_outcome) {
  connector_rig r;
  r.connect();
  int code = -1;
  r.take(connector_rig::confirmed("t", "m9", [&](std::uint32_t c) { code = int(c); }));
  auto err = from_broker(wire::op::err);
  err.code = 105;
  err.msg_id = "m9";
  err.text = "payload too large";
  r.hear(err);
  BOOST_TEST(code == 105);
  BOOST_TEST(r.reports.empty()); // settled: the handler heard it, not on_error
  BOOST_TEST(r.core.counts().errors == 1u);
}

BOOST_AUTO_TEST_CASE(a_full_durable_queue_sends_the_publish_again_later_instead_of_settling_it) {
  connector_rig r; // unkept_retry_min 50 ms, doubling, at most 2 s
  r.connect();
  std::vector<std::uint32_t> codes;
  r.take(connector_rig::confirmed("orders.x", "m1", [&](std::uint32_t c) { codes.push_back(c); }));
  r.write();
  BOOST_TEST(r.of(wire::op::pub).size() == 1u);
  r.hear(confirm_of("m1", code_of(status::full)));
  BOOST_TEST(codes.empty()); // still the publisher's: its slot stays taken
  BOOST_TEST(r.slots == 1u);
  r.advance(40ms);
  r.write();
  BOOST_TEST(r.of(wire::op::pub).size() == 1u); // not yet
  r.advance(20ms);
  r.write();
  BOOST_TEST(r.of(wire::op::pub).size() == 2u); // once the wait is over
  r.hear(confirm_of("m1", code_of(status::full)));
  r.advance(60ms);
  r.write();
  BOOST_TEST(r.of(wire::op::pub).size() == 2u); // the wait doubled: 100 ms
  r.advance(60ms);
  r.write();
  BOOST_TEST(r.of(wire::op::pub).size() == 3u);
  BOOST_TEST(r.core.counts().unkept_retries == 2u);
  r.hear(confirm_of("m1", 0));
  BOOST_TEST(codes == std::vector<std::uint32_t>{0});
  BOOST_TEST(r.slots == 0u);
}

BOOST_AUTO_TEST_CASE(a_durable_whose_home_is_out_of_reach_gets_the_publish_again_later) {
  connector_rig r;
  r.connect();
  std::vector<std::uint32_t> codes;
  r.take(connector_rig::confirmed("orders.x", "m1", [&](std::uint32_t c) { codes.push_back(c); }));
  r.write();
  r.hear(confirm_of("m1", code_of(status::unavailable)));
  BOOST_TEST(codes.empty()); // held in the outbox, unconfirmed
  r.advance(60ms);
  r.write();
  BOOST_TEST(r.of(wire::op::pub).size() == 2u);
  r.hear(confirm_of("m1", 0)); // the home is back and stored it
  BOOST_TEST(codes == std::vector<std::uint32_t>{0});
}

BOOST_AUTO_TEST_CASE(without_retry_unkept_the_publisher_hears_full) {
  auto cfg = connector_rig::config();
  cfg.retry_unkept = false;
  connector_rig r{cfg};
  r.connect();
  std::vector<std::uint32_t> codes;
  r.take(connector_rig::confirmed("orders.x", "m1", [&](std::uint32_t c) { codes.push_back(c); }));
  r.write();
  r.hear(confirm_of("m1", code_of(status::full)));
  BOOST_TEST(codes == std::vector<std::uint32_t>{code_of(status::full)});
}

BOOST_AUTO_TEST_CASE(unconfirmed_publishes_survive_any_number_of_reconnects_until_confirmed) {
  connector_rig r;
  r.connect();
  int code = -1;
  r.take(connector_rig::confirmed("t", "m1", [&](std::uint32_t c) { code = int(c); }));
  r.write();
  for (int k = 0; k < 3; ++k) {
    r.core.link_lost();
    r.advance(1ms);
    r.advance(1ms);
    r.write();
    r.welcome();
    r.write();
  }
  BOOST_TEST(code == -1);
  BOOST_TEST(r.of(wire::op::pub).size() == 4u); // once, then after each of 3 reconnects
  r.hear(confirm_of("m1"));
  BOOST_TEST(code == 0);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(sessions)

BOOST_AUTO_TEST_CASE(acks_of_an_ended_session_never_reach_the_next_one) {
  connector_rig r;
  r.connect();
  auto old = r.core.session();
  r.take(connector_rig::ack(7, old)); // queued, then the session ends before it goes
  r.core.link_lost();
  r.advance(1ms);
  r.take(connector_rig::ack(8, old)); // a handler acks late
  r.advance(1ms);
  r.write();
  r.welcome();
  r.write();
  BOOST_TEST(r.core.session() != old);
  BOOST_TEST(r.of(wire::op::ack).empty());
  BOOST_TEST(r.core.counts().stale_acks == 2u);
  r.take(connector_rig::ack(1, r.core.session()));
  r.write();
  BOOST_TEST(r.of(wire::op::ack).size() == 1u);
  BOOST_TEST(r.finished == r.taken_counted); // flush() is not kept waiting by dropped ones
}

BOOST_AUTO_TEST_CASE(a_broker_that_forgot_the_session_gets_a_new_hello_on_the_same_link) {
  connector_rig r;
  r.connect();
  auto old = r.core.session();
  r.take(connector_rig::ack(3, old));
  auto err = from_broker(wire::op::err);
  err.code = code_of(status::protocol_violation);
  err.text = "HELLO must come first";
  r.hear(err);
  BOOST_TEST(r.dialed.size() == 1u); // no new socket
  BOOST_TEST(r.core.session() != old);
  BOOST_TEST(r.core.counts().sessions_lost == 1u);
  BOOST_TEST_REQUIRE(r.reports.size() == 1u);
  BOOST_TEST(r.reports[0].first == status_session_lost);
  r.take(connector_rig::pub("t", "p"));
  r.write();
  BOOST_TEST(r.out.back().kind == wire::op::hello); // and the PUB waits for WELCOME
  r.welcome();
  r.write();
  BOOST_TEST(r.out.back().kind == wire::op::pub);
  BOOST_TEST(r.of(wire::op::ack).empty());
}

BOOST_AUTO_TEST_CASE(bye_from_the_broker_ends_the_session_and_says_why) {
  connector_rig r;
  r.connect();
  auto bye = from_broker(wire::op::bye);
  bye.text = "heartbeat timeout: nothing heard for 3000 ms";
  r.hear(bye);
  BOOST_TEST(r.core.ending());
  BOOST_TEST_REQUIRE(r.reports.size() == 1u);
  BOOST_TEST(r.reports[0].first == status_session_lost);
  BOOST_TEST(r.reports[0].second.find("heartbeat timeout") != std::string::npos);
  r.advance(1ms);
  BOOST_TEST(!r.socket);
  BOOST_TEST(r.core.counts().sessions_lost == 1u);
}

BOOST_AUTO_TEST_CASE(a_slow_consumer_err_counts_what_the_broker_dropped) {
  connector_rig r;
  r.connect();
  auto err = from_broker(wire::op::err);
  err.code = status_slow_consumer;
  err.count = 40;
  r.hear(err);
  r.hear(err);
  BOOST_TEST(r.core.counts().broker_dropped == 80u);
  BOOST_TEST(r.reports.size() == 2u);
  BOOST_TEST(!r.core.ending()); // the session goes on
}

BOOST_AUTO_TEST_CASE(unsent_plain_publishes_go_at_a_reconnect_and_count_as_finished) {
  connector_rig r;
  r.connect();
  r.room = false;
  for (int k = 0; k < 5; ++k) r.take(connector_rig::pub("t", "p"));
  r.core.link_lost();
  r.advance(1ms);
  BOOST_TEST(r.finished == 5u); // at most once: flush() does not wait for them
  BOOST_TEST(r.core.queued() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(liveness)

BOOST_AUTO_TEST_CASE(an_idle_session_pings_every_heartbeat_and_a_pong_keeps_it) {
  connector_rig r;
  r.connect();
  for (int k = 0; k < 20; ++k) {
    r.advance(250ms);
    r.write();
    r.hear(from_broker(wire::op::pong));
  }
  BOOST_TEST(r.of(wire::op::ping).size() >= 19u);
  BOOST_TEST(r.socket);
  BOOST_TEST(r.core.counts().reconnects == 0u);
}

BOOST_AUTO_TEST_CASE(a_ping_from_the_broker_gets_a_pong) {
  connector_rig r;
  r.connect();
  r.hear(from_broker(wire::op::ping));
  r.write();
  BOOST_TEST(r.out.back().kind == wire::op::pong);
}

BOOST_AUTO_TEST_CASE(a_silent_broker_is_left_for_the_next_endpoint_after_the_silence_timeout) {
  connector_rig r;
  r.connect();
  r.advance(2900ms);
  r.write();
  BOOST_TEST(r.socket); // under silence_timeout: still trusted
  r.advance(200ms); // 3.1 s silent, but the PING of 2.9 s has not had a heartbeat to be answered
  BOOST_TEST(r.socket);
  r.advance(100ms);
  BOOST_TEST(!r.socket);
  r.advance(1ms);
  BOOST_TEST(r.dialed.back() == "tcp://b:2"); // a session that ends moves on at once
}

BOOST_AUTO_TEST_CASE(a_link_that_never_answers_hello_backs_off_doubling_to_the_max) {
  connector_rig r;
  r.start();
  r.write(); // HELLO out; nobody answers
  // silence_timeout (3 s) per attempt, then 100, 200, 400, 800, 800 ms.
  std::vector<std::chrono::milliseconds> waits;
  auto last_dial = r.now;
  std::size_t dials = r.dialed.size();
  for (int ms = 0; ms < 30000 && r.dialed.size() < 7; ++ms) {
    r.advance(1ms);
    if (r.socket && r.core.saying_hello()) r.write();
    if (r.dialed.size() != dials) {
      dials = r.dialed.size();
      waits.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(r.now - last_dial));
      last_dial = r.now;
    }
  }
  BOOST_TEST_REQUIRE(waits.size() == 6u);
  std::vector<long> expected{3100, 3200, 3400, 3800, 3800, 3800};
  for (std::size_t k = 0; k < waits.size(); ++k) BOOST_TEST(waits[k].count() == expected[k]);
  BOOST_TEST(r.dialed[1] == "tcp://b:2");
  BOOST_TEST(r.dialed[2] == "tcp://a:1");
}

BOOST_AUTO_TEST_CASE(a_link_that_never_comes_up_is_dropped_after_liveness_heartbeats) {
  connector_rig r;
  r.start();
  r.room = false; // HELLO cannot go out
  r.advance(740ms);
  BOOST_TEST(r.socket);
  r.advance(10ms); // 3 x 250 ms
  BOOST_TEST(!r.socket);
}

BOOST_AUTO_TEST_CASE(a_handler_that_keeps_the_thread_past_the_brokers_heartbeat_is_a_stall) {
  connector_rig r;
  r.connect(); // WELCOME says heartbeat 1000 ms
  r.core.heard(r.now);
  r.now += 400ms;
  BOOST_TEST(r.core.handler_returned(1, r.now)); // a heartbeat since we last wrote: PING
  r.carry_out();
  BOOST_TEST(r.reports.empty());
  r.write();
  r.now += 1200ms;
  r.core.handler_returned(1, r.now);
  r.carry_out();
  BOOST_TEST_REQUIRE(r.reports.size() == 1u);
  BOOST_TEST(r.reports[0].first == status_handler_stall);
  BOOST_TEST(r.core.counts().stalls == 1u);
  r.write();
  BOOST_TEST(r.of(wire::op::ping).size() == 2u); // a PING went out between the handlers
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(requests)

BOOST_AUTO_TEST_CASE(a_reply_on_the_inbox_completes_its_request_once) {
  connector_rig r;
  r.connect();
  std::vector<reply> got;
  r.take(r.request(7, 1000ms, [&](reply a) { got.push_back(std::move(a)); }));
  message_view v;
  v.topic = "_INBOX.n1.7";
  v.payload = "answer";
  r.core.reply_arrived(v);
  r.core.reply_arrived(v); // a second reply finds nobody waiting
  r.carry_out();
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].code == 0u);
  BOOST_TEST(got[0].payload == "answer");
  r.advance(2000ms);
  BOOST_TEST(got.size() == 1u);
  BOOST_TEST(r.core.open_requests() == 0u);
}

BOOST_AUTO_TEST_CASE(a_failure_answered_on_the_inbox_says_who_failed_and_how) {
  connector_rig r;
  r.connect();
  std::optional<reply> got;
  r.take(r.request(2, 1000ms, [&](reply a) { got = std::move(a); }));
  std::string raw;
  auto headers = wire::pack_string_map(
    {{failure_header, "crash"}, {failure_from_header, "shop.label"}, {failure_cause_header, "boom"}}, raw);
  message_view v;
  v.topic = "_INBOX.n1.2";
  v.headers = headers;
  r.core.reply_arrived(v);
  r.carry_out();
  BOOST_TEST_REQUIRE(got.has_value());
  BOOST_TEST(got->code == status_failed);
  BOOST_TEST(got->failure == "crash");
  BOOST_TEST(got->from == "shop.label");
  BOOST_TEST(got->text == "boom");
}

BOOST_AUTO_TEST_CASE(no_responders_answers_a_request_at_once) {
  connector_rig r;
  r.connect();
  std::optional<reply> got;
  r.take(r.request(3, 1000ms, [&](reply a) { got = std::move(a); }));
  auto err = from_broker(wire::op::err);
  err.code = code_of(status::no_responders);
  err.reply_to = "_INBOX.n1.3";
  r.hear(err);
  BOOST_TEST_REQUIRE(got.has_value());
  BOOST_TEST(got->code == code_of(status::no_responders));
}

BOOST_AUTO_TEST_CASE(a_request_times_out_at_its_deadline_even_while_disconnected) {
  connector_rig r;
  r.connect();
  std::optional<reply> got;
  r.take(r.request(4, 500ms, [&](reply a) { got = std::move(a); }));
  r.core.link_lost();
  r.advance(1ms); // hung up; every later attempt fails
  r.room = false;
  r.advance(498ms);
  BOOST_TEST(!got.has_value());
  r.advance(1ms);
  BOOST_TEST_REQUIRE(got.has_value());
  BOOST_TEST(got->code == status_timeout);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(frames_and_closing)

BOOST_AUTO_TEST_CASE(a_backlog_goes_in_batches_bounded_by_count_and_bytes) {
  auto cfg = connector_rig::config();
  cfg.max_batch_envelopes = 10;
  cfg.max_batch_bytes = 4096;
  connector_rig r{cfg};
  r.connect();
  r.out.clear();
  for (int k = 0; k < 25; ++k) r.take(connector_rig::pub("t", std::string(10, 'a')));
  BOOST_TEST(r.write() == 3u); // 10 + 10 + 5
  BOOST_TEST(r.out.size() == 25u);
  for (int k = 0; k < 5; ++k) r.take(connector_rig::pub("t", std::string(1500, 'b')));
  BOOST_TEST(r.write() == 3u); // 2 + 2 + 1 under 4096 bytes
  BOOST_TEST(r.finished == r.taken_counted);
}

BOOST_AUTO_TEST_CASE(closing_writes_what_is_queued_then_bye_and_fails_open_requests) {
  connector_rig r;
  r.connect();
  std::optional<reply> got;
  r.take(r.request(5, 10000ms, [&](reply a) { got = std::move(a); }));
  r.take(connector_rig::pub("t", "last"));
  r.core.close();
  r.write();
  r.core.finish();
  r.carry_out();
  BOOST_TEST_REQUIRE(r.out.size() >= 3u);
  BOOST_TEST(r.out[r.out.size() - 2].payload == "last");
  BOOST_TEST(r.out.back().kind == wire::op::bye);
  BOOST_TEST_REQUIRE(got.has_value());
  BOOST_TEST(got->code == status_disconnected);
  BOOST_TEST(r.finished == r.taken_counted);
}

BOOST_AUTO_TEST_CASE(closing_before_welcome_says_nothing) {
  connector_rig r;
  r.start();
  r.core.close();
  BOOST_TEST(r.write() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(flow_control)

namespace {
wire::header flow(wire::op kind, std::string_view pattern) {
  auto h = from_broker(kind);
  h.topic = pattern;
  return h;
}
std::vector<std::string> topics_of(const std::vector<plexus::test::written>& w) {
  std::vector<std::string> r;
  for (auto& x : w) r.push_back(x.topic + "/" + x.payload);
  return r;
}
} // namespace

BOOST_AUTO_TEST_CASE(hello_says_the_client_does_flow_control_unless_it_is_off) {
  connector_rig on;
  on.start();
  on.write();
  BOOST_TEST_REQUIRE(on.of(wire::op::hello).size() == 1u);
  BOOST_TEST(on.of(wire::op::hello)[0].confirm); // flags bit 0: on HELLO it is flag_flow_control
  auto cfg = connector_rig::config();
  cfg.flow_control = false;
  connector_rig off{cfg};
  off.start();
  off.write();
  BOOST_TEST(!off.of(wire::op::hello)[0].confirm);
  // And a PAUSE it never asked for changes nothing.
  off.welcome();
  off.hear(flow(wire::op::pause, "jobs.>"));
  off.take(connector_rig::pub("jobs.a", "1"));
  off.write();
  BOOST_TEST(off.of(wire::op::pub).size() == 1u);
  BOOST_TEST(off.paused.empty());
}

BOOST_AUTO_TEST_CASE(a_pause_holds_back_publishes_to_its_pattern_and_resume_sends_them_in_order) {
  connector_rig r;
  r.connect();
  r.take(connector_rig::pub("jobs.a", "0"));
  r.hear(flow(wire::op::pause, "jobs.>")); // "0" was not written yet: held too
  BOOST_TEST(r.paused == std::vector<std::string>{"jobs.>"});
  r.take(connector_rig::pub("jobs.a", "1"));
  r.take(connector_rig::pub("other", "x"));
  r.take(connector_rig::pub("jobs.b", "2"));
  r.write();
  BOOST_TEST(topics_of(r.of(wire::op::pub)) == std::vector<std::string>{"other/x"});
  BOOST_TEST(r.core.held() == 3u);
  BOOST_TEST(r.core.counts().pauses == 1u);
  auto flushed = r.finished;
  r.hear(flow(wire::op::resume, "jobs.>"));
  BOOST_TEST(r.paused.empty());
  r.take(connector_rig::pub("jobs.a", "3"));
  r.write();
  BOOST_TEST(topics_of(r.of(wire::op::pub))
             == (std::vector<std::string>{"other/x", "jobs.a/0", "jobs.a/1", "jobs.b/2", "jobs.a/3"}));
  BOOST_TEST(r.core.held() == 0u);
  BOOST_TEST(r.finished == flushed + 4); // flush() waits for held ones, and they went
}

BOOST_AUTO_TEST_CASE(two_paused_groups_each_hold_their_own_topics_until_their_own_resume) {
  connector_rig r;
  r.connect();
  r.hear(flow(wire::op::pause, "a.*"));
  r.hear(flow(wire::op::pause, "b.>"));
  r.take(connector_rig::pub("a.1", "x"));
  r.take(connector_rig::pub("b.1.2", "y"));
  r.write();
  BOOST_TEST(r.of(wire::op::pub).empty());
  r.hear(flow(wire::op::resume, "b.>"));
  BOOST_TEST(r.paused == std::vector<std::string>{"a.*"});
  r.write();
  BOOST_TEST(topics_of(r.of(wire::op::pub)) == std::vector<std::string>{"b.1.2/y"});
  BOOST_TEST(r.core.held() == 1u);
}

BOOST_AUTO_TEST_CASE(a_request_is_never_held_the_broker_answers_it) {
  connector_rig r;
  r.connect();
  r.hear(flow(wire::op::pause, ">"));
  r.take(r.request(1, 1s, [](reply) {}));
  r.write();
  BOOST_TEST(r.of(wire::op::pub).size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_confirm_saying_overloaded_is_sent_again_with_backoff_and_at_once_on_resume) {
  connector_rig r; // unkept_retry_min 50 ms, doubling
  r.connect();
  std::vector<std::uint32_t> codes;
  r.take(connector_rig::confirmed("jobs.a", "m1", [&](std::uint32_t c) { codes.push_back(c); }));
  r.write();
  r.hear(confirm_of("m1", code_of(status::overloaded)));
  BOOST_TEST(codes.empty()); // not settled: the slot stays taken
  BOOST_TEST(r.slots == 1u);
  r.advance(40ms);
  r.write();
  BOOST_TEST(r.of(wire::op::pub).size() == 1u);
  r.advance(20ms);
  r.write();
  BOOST_TEST(r.of(wire::op::pub).size() == 2u);
  BOOST_TEST(r.of(wire::op::pub)[1].msg_id == "m1"); // the same id: no duplicate at the broker
  BOOST_TEST(r.core.counts().overload_retries == 1u);
  // Refused again, and paused: the next try waits for RESUME, not for 100 ms.
  r.hear(flow(wire::op::pause, "jobs.>"));
  r.hear(confirm_of("m1", code_of(status::overloaded)));
  r.advance(200ms);
  r.write();
  BOOST_TEST(r.of(wire::op::pub).size() == 2u); // due, but held: its group is paused
  r.hear(flow(wire::op::resume, "jobs.>"));
  r.write();
  BOOST_TEST(r.of(wire::op::pub).size() == 3u);
  r.hear(confirm_of("m1", 0));
  BOOST_TEST(codes == std::vector<std::uint32_t>{0});
  BOOST_TEST(r.slots == 0u);
  BOOST_TEST(r.core.counts().unkept_retries == 0u); // counted apart from 115/116
}

BOOST_AUTO_TEST_CASE(a_resume_cuts_the_backoff_of_a_refused_confirmed_publish_short) {
  connector_rig r;
  r.connect();
  std::vector<std::uint32_t> codes;
  r.take(connector_rig::confirmed("jobs.a", "m1", [&](std::uint32_t c) { codes.push_back(c); }));
  r.write();
  r.hear(flow(wire::op::pause, "jobs.>"));
  r.hear(confirm_of("m1", code_of(status::overloaded)));
  r.advance(10ms); // 50 ms of backoff left
  r.hear(flow(wire::op::resume, "jobs.>"));
  r.write();
  BOOST_TEST(r.of(wire::op::pub).size() == 2u);
}

BOOST_AUTO_TEST_CASE(without_retry_overloaded_the_publisher_hears_103) {
  auto cfg = connector_rig::config();
  cfg.retry_overloaded = false;
  connector_rig r{cfg};
  r.connect();
  std::vector<std::uint32_t> codes;
  r.take(connector_rig::confirmed("jobs.a", "m1", [&](std::uint32_t c) { codes.push_back(c); }));
  r.write();
  r.hear(confirm_of("m1", code_of(status::overloaded)));
  BOOST_TEST(codes == std::vector<std::uint32_t>{code_of(status::overloaded)});
}

BOOST_AUTO_TEST_CASE(a_lost_session_ends_every_pause_and_held_confirmed_publishes_go_to_the_next) {
  connector_rig r;
  r.connect();
  r.hear(flow(wire::op::pause, "jobs.>"));
  std::vector<std::uint32_t> codes;
  r.take(connector_rig::confirmed("jobs.a", "m1", [&](std::uint32_t c) { codes.push_back(c); }));
  r.take(connector_rig::pub("jobs.a", "plain"));
  r.write();
  BOOST_TEST(r.of(wire::op::pub).empty());
  BOOST_TEST(r.core.held() == 2u);
  r.core.link_lost();
  r.advance(1ms); // hangs up: the plain one is gone (at most once), counted for flush()
  BOOST_TEST(r.paused.empty()); // publishers waiting in publish() are let go
  BOOST_TEST(r.finished == r.taken_counted);
  r.advance(1ms);
  r.write();
  r.welcome("b2");
  r.write();
  auto pubs = r.of(wire::op::pub);
  BOOST_TEST_REQUIRE(pubs.size() == 1u);
  BOOST_TEST(pubs[0].msg_id == "m1"); // the confirmed one, again, to the new session
  BOOST_TEST(r.core.paused().empty());
}

BOOST_AUTO_TEST_CASE(the_publish_window_bounds_what_the_broker_has_not_read_and_pongs_open_it) {
  auto cfg = connector_rig::config();
  cfg.publish_window = 8; // a PING after every 2 PUBs
  connector_rig r{cfg};
  r.connect();
  for (int i = 0; i < 20; ++i) r.take(connector_rig::pub("t", std::to_string(i)));
  r.write();
  BOOST_TEST(r.of(wire::op::pub).size() == 8u); // then it waits for the broker
  BOOST_TEST(r.of(wire::op::ping).size() == 4u); // one after each 2: the last covers the tail
  BOOST_TEST(r.core.counts().window_waits == 1u);
  r.hear(from_broker(wire::op::pong)); // the broker read the first 2
  r.write();
  BOOST_TEST(r.of(wire::op::pub).size() == 10u);
  for (int i = 0; i < 4; ++i) r.hear(from_broker(wire::op::pong));
  r.write();
  BOOST_TEST(r.of(wire::op::pub).size() == 18u);
  // Order is kept through all of it.
  auto pubs = r.of(wire::op::pub);
  for (std::size_t i = 0; i < pubs.size(); ++i) BOOST_TEST(pubs[i].payload == std::to_string(i));
}

BOOST_AUTO_TEST_CASE(without_flow_control_there_is_no_publish_window) {
  auto cfg = connector_rig::config();
  cfg.publish_window = 8;
  cfg.flow_control = false;
  connector_rig r{cfg};
  r.connect();
  for (int i = 0; i < 20; ++i) r.take(connector_rig::pub("t", std::to_string(i)));
  r.write();
  BOOST_TEST(r.of(wire::op::pub).size() == 20u);
  BOOST_TEST(r.of(wire::op::ping).empty());
}

BOOST_AUTO_TEST_CASE(the_shells_gate_lets_a_waiting_publisher_go_once_nothing_pauses_its_topic) {
  detail::flow_gate gate;
  BOOST_TEST(!gate.any());
  BOOST_TEST(!gate.wait("jobs.a")); // nothing paused: no wait
  gate.set({"jobs.>"});
  BOOST_TEST(gate.any());
  BOOST_TEST(gate.paused("jobs.a"));
  BOOST_TEST(!gate.paused("other"));
  bool waited = false;
  std::thread publisher{[&] { waited = gate.wait("jobs.a"); }};
  gate.set({}); // RESUME (or the session ended)
  publisher.join(); // hangs, and times out, if set() did not wake it
  BOOST_TEST(!gate.paused("jobs.a"));
  gate.set({"jobs.>"});
  std::thread closing{[&] { gate.wait("jobs.b"); }};
  gate.close(); // the client goes: nobody stays blocked
  closing.join();
  static_cast<void>(waited); // true if it got there before set(); either way it returned
}

BOOST_AUTO_TEST_SUITE_END()
