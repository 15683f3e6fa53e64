// SPDX-License-Identifier: Apache-2.0
// Functions as actors on a node with its embedded broker: typed payloads,
// automatic ACK/NACK, crashes, poison quarantine, restart intensity.
#define BOOST_TEST_MODULE plexus_runtime
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <future>
#include <set>
#include <stdexcept>
#include <string>

#include <cctype>
#include <thread>

#include <zmq.hpp>

#include "plexus/node.hpp"
#include "server.hpp"
#include "waiter.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using plexus::test::waiter;

namespace {

struct order {
  int id = 0;
  std::string city;
  MSGPACK_DEFINE_MAP(id, city)
};

function_stats stats_of(node& n, std::string_view fn) {
  for (auto& s : n.stats())
    if (s.function == fn) return s;
  BOOST_FAIL("no function " << fn);
  return {};
}

/// Publishes `payload` with a confirm and waits for it: proves the
/// subscription is live and, for acked functions, that it was handled.
std::uint32_t confirmed(client& c, std::string_view topic, std::string_view payload) {
  std::promise<std::uint32_t> p;
  auto f = p.get_future();
  c.publish_confirmed(topic, payload, [&p](std::uint32_t code) { p.set_value(code); });
  return f.wait_for(20s) == std::future_status::ready ? f.get() : 999u;
}

} // namespace

BOOST_AUTO_TEST_SUITE(runtime)

BOOST_AUTO_TEST_CASE(a_typed_function_handles_every_message_and_acks_it) {
  node n{node_options{}};
  waiter w;
  std::set<int> seen;
  n.service("shipping").function("count").on("orders.*.shipped")
    .handle([&](const order& o, context& ctx) -> result<void> {
      if (o.city.empty()) return error{"no city"};
      w.update([&] { seen.insert(o.id); });
      ctx.publish("orders.counted", std::to_string(o.id));
      return {};
    });
  n.start();
  // Confirms come after the function's ACK: every one is handled.
  for (int i = 0; i < 200; ++i)
    BOOST_TEST_REQUIRE(confirmed(n.client(), "orders.eu.shipped", encode_payload(order{i, "Lyon"})) == 0u);
  BOOST_TEST(seen.size() == 200u);
  BOOST_TEST(stats_of(n, "count").ok == 200u);
  n.stop();
}

BOOST_AUTO_TEST_CASE(a_payload_of_the_wrong_type_is_dead_lettered_with_the_reason) {
  node n{node_options{}};
  std::atomic<int> handled{0};
  n.service("shipping").function("typed").on("orders.new")
    .handle([&](const order&, context&) -> result<void> {
      ++handled;
      return {};
    });
  n.start();
  waiter w;
  std::string reason;
  n.client().subscribe("$DLQ.>", [&](const message_view& m) {
    w.update([&] { reason = std::string{m.headers.find("plexus-dlq-reason")}; });
  });
  BOOST_TEST(confirmed(n.client(), "orders.new", "not msgpack of an order") == 102u); // dead-lettered
  BOOST_TEST_REQUIRE(w.until([&] { return !reason.empty(); }));
  BOOST_TEST(reason.find("payload does not decode as") == 0u);
  BOOST_TEST(handled == 0);
  BOOST_TEST(stats_of(n, "typed").rejected == 1u);
}

BOOST_AUTO_TEST_CASE(an_error_result_is_retried_then_dead_lettered) {
  node n{node_options{}};
  std::atomic<int> attempts{0};
  n.service("svc").function("flaky").on("jobs").max_deliver(3)
    .handle([&](std::string_view, context& ctx) -> result<void> {
      ++attempts;
      return error{"attempt " + std::to_string(ctx.delivery()) + " failed"};
    });
  n.start();
  BOOST_TEST(confirmed(n.client(), "jobs", "x") == 102u);
  BOOST_TEST(attempts == 3);
  BOOST_TEST(stats_of(n, "flaky").errors == 3u);
}

BOOST_AUTO_TEST_CASE(a_poison_message_is_quarantined_and_the_function_lives_on) {
  node n{node_options{}};
  n.service("svc").function("fragile").on("work").instances(4)
    .handle([](std::string_view payload, context&) -> result<void> {
      if (payload.ends_with("7")) throw std::runtime_error("boom on " + std::string{payload});
      return {};
    });
  n.start();
  waiter w;
  std::set<std::string> dead;
  std::string reason;
  n.client().subscribe("$DLQ.work", [&](const message_view& m) {
    w.update([&] {
      dead.emplace(m.payload);
      reason = std::string{m.headers.find("plexus-dlq-reason")};
    });
  });
  // The DLQ subscription is live once a message to it arrives in order.
  BOOST_TEST_REQUIRE(confirmed(n.client(), "$DLQ.work", "probe") == 0u);
  w.update([&] { dead.clear(); });
  std::atomic<int> ok{0}, quarantined{0}, other{0};
  for (int i = 0; i < 100; ++i)
    n.client().publish_confirmed("work", std::to_string(i), [&](std::uint32_t code) {
      (code == 0 ? ok : code == 102 ? quarantined : other)++;
    });
  BOOST_TEST_REQUIRE(w.until([&] { return ok + quarantined + other == 100; }, 60s));
  BOOST_TEST(ok == 90);          // every message without a 7 at its end
  BOOST_TEST(quarantined == 10); // 7, 17, ... 97
  BOOST_TEST(other == 0);
  BOOST_TEST_REQUIRE(w.until([&] { return dead.size() == 10; }));
  BOOST_TEST(reason.find("crashed on 3 deliveries: boom on") == 0u);
  auto s = stats_of(n, "fragile");
  BOOST_TEST(s.quarantined == 10u);
  BOOST_TEST(s.crashes == 30u);
  BOOST_TEST(!s.stopped); // poison never counts against restart intensity
  BOOST_TEST(confirmed(n.client(), "work", "still alive") == 0u);
}

BOOST_AUTO_TEST_CASE(past_its_restart_intensity_a_broken_function_stops_and_unsubscribes) {
  node n{node_options{}};
  std::atomic<bool> broken{true};
  n.service("svc", {.max_restarts = 3, .within = 60s}).function("broken").on("tasks").instances(1)
    .handle([&](std::string_view, context&) -> result<void> {
      if (broken) throw std::runtime_error("database down");
      return {};
    });
  n.start();
  std::atomic<int> answered{0};
  for (int i = 0; i < 10; ++i)
    n.client().publish_confirmed("tasks", "task " + std::to_string(i), [&](std::uint32_t) { ++answered; });
  waiter w;
  BOOST_TEST_REQUIRE(w.until([&] { return stats_of(n, "broken").stopped; }));
  auto s = stats_of(n, "broken");
  BOOST_TEST(s.crashes >= 4u); // four different messages crashed: more than 3
  // It left its queue group: new work finds nobody (no interest).
  BOOST_TEST_REQUIRE(w.until([&] { return confirmed(n.client(), "tasks", "later") == 101u; }));
}

BOOST_AUTO_TEST_CASE(a_node_serves_through_a_separate_broker_over_tcp) {
  zmq::context_t zctx{1};
  broker::server_options so;
  so.listen = "tcp://127.0.0.1:*";
  so.quiet = true;
  broker::server b{so, &zctx};
  b.start();
  node n{node_options{.broker = b.endpoint(), .duration = {}}};
  n.service("echo").function("upper").on("echo.*")
    .handle([](std::string_view s, context& ctx) -> result<void> {
      std::string out{s};
      for (auto& ch : out) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      ctx.reply(out);
      return {};
    });
  n.start();
  // A second process would do the same: a client of its own on the broker.
  client_options co;
  co.endpoint = b.endpoint();
  client caller{co};
  BOOST_TEST_REQUIRE(confirmed(caller, "echo.warmup", "x") == 0u); // the function is subscribed
  auto r = caller.request("echo.one", "plexus", 5s);
  BOOST_TEST(r.code == 0u);
  BOOST_TEST(r.payload == "PLEXUS");
  n.stop();
  b.stop();
}

BOOST_AUTO_TEST_CASE(stopping_a_node_finishes_what_its_functions_run) {
  node n{node_options{}};
  std::atomic<int> started{0}, finished{0};
  std::atomic<bool> release{false};
  n.service("svc").function("slow").on("slow").instances(2)
    .handle([&](std::string_view, context&) -> result<void> {
      ++started;
      while (!release) std::this_thread::yield(); // held until the test lets go
      ++finished;
      return {};
    });
  n.start();
  n.client().publish("slow", "a");
  n.client().publish("slow", "b");
  waiter w;
  BOOST_TEST_REQUIRE(w.until([&] { return started == 2; }));
  std::atomic<bool> stopping{false};
  std::thread releaser{[&] {
    while (!stopping) std::this_thread::yield();
    release = true; // the handlers end only once stop() has begun
  }};
  stopping = true;
  n.stop(); // must wait for the two in flight
  releaser.join();
  BOOST_TEST(finished == 2);
  BOOST_TEST(stats_of(n, "slow").ok == 2u);
}

BOOST_AUTO_TEST_SUITE_END()
