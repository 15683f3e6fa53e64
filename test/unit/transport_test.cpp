// SPDX-License-Identifier: Apache-2.0
// The client connector against a broker server in the same process: over
// inproc (the node's embedded broker) and over loopback TCP.
#define BOOST_TEST_MODULE plexus_transport
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <zmq.hpp>

#include "plexus/client.hpp"
#include "waiter.hpp"
#include "server.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using plexus::test::waiter;

namespace {

struct embedded {
  zmq::context_t ctx{1};
  broker::server srv;
  explicit embedded(std::string endpoint = "inproc://plexus-test")
    : srv(make_options(std::move(endpoint)), &ctx) {
    srv.start();
  }
  ~embedded() { srv.stop(); }
  static broker::server_options make_options(std::string endpoint) {
    broker::server_options o;
    o.listen = std::move(endpoint);
    o.core.id = "embedded";
    o.quiet = true;
    return o;
  }
  client_options client_opts() {
    client_options o;
    o.endpoint = srv.endpoint();
    o.zmq_context = &ctx;
    return o;
  }
};

} // namespace

BOOST_AUTO_TEST_SUITE(transport)

BOOST_AUTO_TEST_CASE(a_client_round_trips_through_an_embedded_inproc_broker) {
  embedded b;
  client c{b.client_opts()};
  BOOST_TEST(c.broker_id() == "embedded");
  waiter w;
  std::vector<std::string> got;
  c.subscribe("greet.*", [&](const message_view& v) {
    w.update([&] { got.emplace_back(v.payload); });
  });
  // The SUB and the PUB travel in order through the same queue.
  c.publish("greet.world", "hello");
  c.publish("other.topic", "not for us");
  c.publish("greet.you", "again");
  BOOST_TEST_REQUIRE(w.until([&] { return got.size() == 2; }));
  BOOST_TEST(got[0] == "hello");
  BOOST_TEST(got[1] == "again");
}

BOOST_AUTO_TEST_CASE(publishes_from_many_threads_all_arrive_in_per_thread_order) {
  embedded b;
  client sub{b.client_opts()};
  client pub{b.client_opts()};
  constexpr int threads = 4, each = 5000;
  waiter w;
  std::map<int, int> next; // per thread: the next sequence number expected
  int received = 0, out_of_order = 0;
  sub.subscribe_batch("load", [&](std::span<const message_view> batch) {
    w.update([&] {
      for (auto& v : batch) {
        auto text = std::string{v.payload};
        auto colon = text.find(':');
        int t = std::stoi(text.substr(0, colon)), seq = std::stoi(text.substr(colon + 1));
        if (next[t] != seq) ++out_of_order;
        next[t] = seq + 1;
        ++received;
      }
    });
  });
  // A round trip proves the subscription is live before the load starts.
  std::atomic<bool> ready{false};
  sub.subscribe("ready", [&](const message_view&) { ready = true; });
  BOOST_TEST_REQUIRE(w.until([&] {
    pub.publish("ready", "?");
    return ready.load();
  }));
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&pub, t] {
      for (int i = 0; i < each; ++i) pub.publish("load", std::to_string(t) + ":" + std::to_string(i));
    });
  for (auto& th : workers) th.join();
  BOOST_TEST_REQUIRE(w.until([&] { return received == threads * each; }, 30s));
  BOOST_TEST(out_of_order == 0);
}

BOOST_AUTO_TEST_CASE(a_request_is_answered_and_nobody_listening_is_no_responders_at_once) {
  embedded b;
  client svc{b.client_opts()};
  client caller{b.client_opts()};
  std::atomic<bool> up{false};
  svc.subscribe("math.double", [&](const message_view& v) {
    if (v.payload == "ping") {
      up = true;
      return;
    }
    svc.publish(v.reply_to, std::to_string(2 * std::stoi(std::string{v.payload})));
  });
  waiter w;
  BOOST_TEST_REQUIRE(w.until([&] {
    caller.publish("math.double", "ping");
    return up.load();
  }));
  auto r = caller.request("math.double", "21", 5s);
  BOOST_TEST(r.code == 0u);
  BOOST_TEST(r.payload == "42");
  auto start = std::chrono::steady_clock::now();
  auto none = caller.request("math.triple", "1", 5s);
  BOOST_TEST(none.code == 100u);
  BOOST_TEST((std::chrono::steady_clock::now() - start < 4s)); // not the timeout
  BOOST_TEST(std::string{status_text(none.code)} == "no responders");
}

BOOST_AUTO_TEST_CASE(a_request_with_a_silent_responder_times_out) {
  embedded b;
  client svc{b.client_opts()};
  client caller{b.client_opts()};
  std::atomic<int> asked{0};
  svc.subscribe("slow", [&](const message_view&) { ++asked; }); // never replies
  waiter w;
  BOOST_TEST_REQUIRE(w.until([&] {
    caller.publish("slow", "warm-up");
    return asked.load() > 0;
  }));
  auto r = caller.request("slow", "x", 200ms);
  BOOST_TEST(r.code == status_timeout);
}

BOOST_AUTO_TEST_CASE(confirmed_publishes_are_confirmed_after_the_consumer_acks) {
  embedded b;
  client worker{b.client_opts()};
  client pub{b.client_opts()};
  waiter w;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> to_ack;
  int confirms = 0, ok = 0;
  subscribe_options o;
  o.queue = "workers";
  o.acked = true;
  o.credit = 100;
  worker.subscribe("jobs", [&](const message_view& v) {
    w.update([&] { to_ack.emplace_back(v.sid, v.seq); });
  }, o);
  // One connection keeps its order: once "ready" arrives, "jobs" is live.
  std::atomic<bool> ready{false};
  worker.subscribe("ready", [&](const message_view&) { ready = true; });
  BOOST_TEST_REQUIRE(w.until([&] {
    pub.publish("ready", "?");
    return ready.load();
  }));
  for (int i = 0; i < 10; ++i)
    pub.publish_confirmed("jobs", std::to_string(i), [&](std::uint32_t code) {
      w.update([&] {
        ++confirms;
        ok += code == 0;
      });
    });
  BOOST_TEST_REQUIRE(w.until([&] { return to_ack.size() >= 10; }));
  BOOST_TEST(confirms == 0); // nothing confirmed before the ACKs
  std::vector<std::pair<std::uint32_t, std::uint64_t>> acks;
  w.update([&] { acks = to_ack; });
  for (auto& [sid, seq] : acks) worker.ack(sid, seq);
  BOOST_TEST_REQUIRE(w.until([&] { return confirms == 10; }));
  BOOST_TEST(ok == 10);
}

BOOST_AUTO_TEST_CASE(a_client_reconnects_resubscribes_and_resends_unconfirmed_publishes) {
  zmq::context_t ctx{1};
  auto opts = embedded::make_options("tcp://127.0.0.1:*");
  opts.core.heartbeat = 100ms;
  auto first = std::make_unique<broker::server>(opts, &ctx);
  auto endpoint = first->endpoint();
  first->start();
  client_options co;
  co.endpoint = endpoint;
  co.heartbeat = 100ms;
  co.reconnect_min = 20ms;
  client c{co};
  waiter w;
  std::set<std::string> got;
  c.subscribe("events", [&](const message_view& v) { w.update([&] { got.emplace(v.payload); }); });
  c.publish("events", "before");
  BOOST_TEST_REQUIRE(w.until([&] { return got.contains("before"); }));

  first.reset(); // the broker goes away (BYE to its clients)
  opts.listen = endpoint;
  // ZeroMQ releases the port on its I/O thread, a moment after the close.
  std::unique_ptr<broker::server> second;
  BOOST_TEST_REQUIRE(w.until([&] {
    try {
      second = std::make_unique<broker::server>(opts, &ctx);
      return true;
    } catch (const std::runtime_error&) {
      return false;
    }
  }));
  second->start();
  // Confirmed publishes survive the switch: kept until confirmed.
  std::atomic<int> confirmed{0};
  c.publish_confirmed("events", "after", [&](std::uint32_t code) {
    if (code == 0) ++confirmed;
  });
  bool done = w.until([&] { return got.contains("after") && confirmed == 1; });
  BOOST_TEST_MESSAGE("reconnects " << c.stats().reconnects << " got " << got.size() << " confirmed " << confirmed.load() << " errors " << c.stats().errors);
  BOOST_TEST_REQUIRE(done);
  BOOST_TEST(c.stats().reconnects >= 1u);
  second->stop();
}

BOOST_AUTO_TEST_CASE(connecting_to_nobody_fails_with_a_clear_error_after_the_timeout) {
  client_options o;
  o.endpoint = "tcp://127.0.0.1:1";
  o.connect_timeout = 200ms;
  try {
    client c{o};
    BOOST_FAIL("connected to nothing");
  } catch (const connect_error& e) {
    BOOST_TEST(std::string{e.what()}.find("no answer from broker at tcp://127.0.0.1:1") == 0u);
  }
}

BOOST_AUTO_TEST_CASE(errors_nobody_waits_for_reach_the_error_handler) {
  embedded b;
  client c{b.client_opts()};
  waiter w;
  std::vector<std::uint32_t> codes;
  c.on_error([&](std::uint32_t code, std::string_view) { w.update([&] { codes.push_back(code); }); });
  BOOST_TEST(c.try_publish("$SYS.broker.spoofed", "{}")); // the broker's own namespace
  BOOST_TEST_REQUIRE(w.until([&] { return !codes.empty(); }));
  BOOST_TEST(codes.front() == 105u);
  BOOST_TEST(std::string{status_text(codes.front())} == "forbidden");
  BOOST_TEST(c.stats().errors == 1u);
}

BOOST_AUTO_TEST_CASE(bad_topics_and_patterns_are_refused_before_they_leave_the_process) {
  embedded b;
  client c{b.client_opts()};
  BOOST_CHECK_THROW(c.publish("orders.*", "x"), std::invalid_argument);
  BOOST_CHECK_THROW(c.publish("", "x"), std::invalid_argument);
  BOOST_CHECK_THROW(c.subscribe("orders.>.x", [](const message_view&) {}), std::invalid_argument);
  try {
    c.publish("a..b", "x");
  } catch (const std::invalid_argument& e) {
    BOOST_TEST(std::string{e.what()} == "bad topic 'a..b': empty token");
  }
  BOOST_TEST(c.stats().published == 0u);
}

BOOST_AUTO_TEST_CASE(flush_returns_once_everything_queued_is_on_the_socket) {
  embedded b;
  client c{b.client_opts()};
  for (int i = 0; i < 1000; ++i) c.publish("nobody", "x");
  BOOST_TEST(c.flush(5s));
  BOOST_TEST(c.stats().published == 1000u);
}

BOOST_AUTO_TEST_SUITE_END()
