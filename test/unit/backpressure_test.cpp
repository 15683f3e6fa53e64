// SPDX-License-Identifier: Apache-2.0
// Flow control end to end (PROTOCOL.md "Flow control"): plexus::client
// publishers faster than a queue group's consumer, over a real TCP broker.
// The broker pauses them instead of dropping; every message arrives; the
// group's queue stays within its bound (read from the broker's own stats).
#define BOOST_TEST_MODULE plexus_backpressure
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "broker_stats_watch.hpp"
#include "plexus/client.hpp"
#include "server.hpp"
#include "waiter.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using plexus::test::number_after;

namespace {

// Paused at 1000, resumed at 500. Each publisher has at most 64 PUBs the
// broker has not read (publish_window): well within the 1000 between the
// pause mark and the limit, so nothing on its way when PAUSE goes is lost.
constexpr std::size_t group_limit = 2000;
constexpr std::size_t window = 64;

struct tcp_broker {
  zmq::context_t zctx{1};
  broker::server server;
  tcp_broker() : server{options(), &zctx} { server.start(); }
  ~tcp_broker() { server.stop(); }
  [[nodiscard]] std::string endpoint() const { return server.endpoint(); }
  static broker::server_options options() {
    broker::server_options so;
    so.listen = "tcp://127.0.0.1:*";
    so.quiet = true;
    so.core.id = "bp";
    so.core.group_queue_msgs = group_limit;
    so.core.stats_interval = 100ms;
    return so;
  }
};

client_options opts(const tcp_broker& b) {
  client_options o;
  o.endpoint = b.endpoint();
  o.publish_window = window;
  return o;
}

/// The broker's stats ($SYS.broker.bp.stats), through a client of their own.
struct broker_stats {
  client c;
  test::broker_stats_watch watch{c, "bp"};
  explicit broker_stats(const tcp_broker& b) : c{opts(b)} {}
  std::string fresh() { return watch.fresh(); }
};

/// A queue group member that takes `per_message` for each message (work
/// it simulates), ACKs it and grants one credit back, as a pool does.
struct slow_consumer {
  test::waiter w;
  std::multiset<std::string> got;
  client c;
  std::uint32_t sid = 0;
  slow_consumer(const tcp_broker& b, std::chrono::microseconds per_message, std::uint32_t credit)
    : c{opts(b)} {
    sid = c.subscribe("jobs.>", [this, per_message](const message_view& v) {
      if (per_message.count() > 0) std::this_thread::sleep_for(per_message); // the work
      w.update([&] { got.insert(std::string{v.payload}); });
      c.ack(v.sid, v.seq);
      if (regrant) c.grant_credit(v.sid, 1);
    }, {.queue = "workers", .acked = true, .credit = credit});
    // In order on one connection: once "ready" arrives, the group SUB is in.
    c.subscribe("ready", [this](const message_view&) { w.update([&] { ready = true; }); });
  }
  void wait_ready(client& publisher) {
    BOOST_TEST_REQUIRE(w.until([&] {
      publisher.publish("ready", "?");
      return ready;
    }, 5s));
  }
  std::size_t count() {
    std::lock_guard lock{w.m};
    return got.size();
  }
  bool ready = false;
  /// Each message's credit back, as a pool gives it; off, the member takes
  /// no more once set_credit(0) lands (what it still holds grants none).
  std::atomic<bool> regrant{true};
};

/// try_publish to `topic` (its payloads "0", "1", ...) until the broker
/// pauses it for `pub`; how many were taken.
std::size_t publish_until_paused(client& pub, const std::string& topic) {
  std::size_t taken = 0;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!pub.paused(topic) && std::chrono::steady_clock::now() < deadline)
    if (pub.try_publish(topic, std::to_string(taken))) ++taken;
  BOOST_TEST_REQUIRE(pub.paused(topic), "never paused (" << taken << " taken)");
  return taken;
}

} // namespace

BOOST_AUTO_TEST_SUITE(backpressure_end_to_end)

BOOST_AUTO_TEST_CASE(a_publisher_faster_than_its_consumer_is_slowed_and_loses_nothing) {
  tcp_broker b;
  broker_stats stats{b};
  slow_consumer consumer{b, 50us, 20};
  auto po = opts(b); // when_paused = block, the default
  po.outbox_limit = 2048; // what it may have queued, held or unwritten: its lead
  client pub{po};
  consumer.wait_ready(pub);
  constexpr int n = 20000; // about a second of the consumer's work
  auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) pub.publish("jobs.a", std::to_string(i));
  auto took = std::chrono::steady_clock::now() - started;
  BOOST_TEST_REQUIRE(pub.flush(20s));
  BOOST_TEST_REQUIRE(consumer.w.until([&] { return consumer.got.size() >= std::size_t{n}; }, 30s),
                     "delivered " << consumer.count() << " of " << n);
  {
    std::lock_guard lock{consumer.w.m};
    BOOST_TEST(consumer.got.size() == std::size_t{n});
    std::set<std::string> unique(consumer.got.begin(), consumer.got.end());
    BOOST_TEST(unique.size() == std::size_t{n}); // each once
  }
  auto s = pub.stats();
  BOOST_TEST(s.pauses > 0u); // the broker paused it...
  // ...and publish() kept it to the consumer's pace: it can be no further
  // ahead than its outbox, its window and the group's queue, and the
  // consumer takes at least 50 us a message.
  auto lead = po.outbox_limit + window + group_limit;
  BOOST_TEST(took >= std::chrono::microseconds{50} * (n - lead),
             "publishing took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                                << " ms");
  BOOST_TEST(s.paused_drops == 0u);
  auto json = stats.fresh();
  BOOST_TEST_MESSAGE("publisher paused " << s.pauses << " times, waited in publish() "
                     << s.paused_waits << " times; the group's queue peaked at "
                     << number_after(json, "group_queue_peak") << " of " << group_limit);
  BOOST_TEST(number_after(json, "group_queue_drops") == 0u);
  BOOST_TEST(number_after(json, "flow_overruns") == 0u);
  BOOST_TEST(number_after(json, "group_queue_peak") <= group_limit); // bounded
  BOOST_TEST(number_after(json, "pauses") > 0u);
}

BOOST_AUTO_TEST_CASE(confirmed_publishes_refused_while_paused_are_sent_again_until_all_are_confirmed) {
  tcp_broker b;
  broker_stats stats{b};
  slow_consumer consumer{b, 50us, 20};
  client pub{opts(b)};
  consumer.wait_ready(pub);
  constexpr int n = 3000;
  test::waiter done;
  std::vector<std::uint32_t> codes;
  for (int i = 0; i < n; ++i)
    pub.publish_confirmed("jobs.c", std::to_string(i), [&](std::uint32_t code) {
      done.update([&] { codes.push_back(code); });
    });
  BOOST_TEST_REQUIRE(done.until([&] { return codes.size() >= std::size_t{n}; }, 30s),
                     "confirmed " << codes.size() << " of " << n);
  {
    std::lock_guard lock{done.m};
    BOOST_TEST(std::count(codes.begin(), codes.end(), 0u) == n); // every one delivered and acked
  }
  BOOST_TEST(consumer.w.until([&] { return consumer.got.size() >= std::size_t{n}; }, 5s));
  {
    std::lock_guard lock{consumer.w.m};
    std::set<std::string> unique(consumer.got.begin(), consumer.got.end());
    BOOST_TEST(unique.size() == std::size_t{n});
  }
  BOOST_TEST(pub.stats().overload_retries > 0u); // 103s came, and were sent again
  auto json = stats.fresh();
  BOOST_TEST(number_after(json, "paused_refusals") > 0u);
  BOOST_TEST(number_after(json, "group_queue_drops") == 0u);
  BOOST_TEST(number_after(json, "group_queue_peak") <= group_limit);
}

BOOST_AUTO_TEST_CASE(try_publish_says_false_while_paused_and_every_message_it_took_arrives) {
  tcp_broker b;
  slow_consumer consumer{b, 0us, 0}; // takes nothing until credit comes
  client pub{opts(b)};
  consumer.wait_ready(pub);
  std::size_t taken = 0;
  bool refused = false;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!refused && std::chrono::steady_clock::now() < deadline) {
    if (pub.try_publish("jobs.t", std::to_string(taken))) ++taken;
    else refused = pub.stats().paused_refusals > 0;
  }
  BOOST_TEST_REQUIRE(refused, "try_publish never said false (" << taken << " taken)");
  BOOST_TEST(taken >= group_limit / 2); // the pause mark was reached first
  consumer.c.grant_credit(consumer.sid, 100000);
  BOOST_TEST_REQUIRE(consumer.w.until([&] { return consumer.got.size() >= taken; }, 10s),
                     "delivered " << consumer.count() << " of " << taken);
  // Resumed: it takes again.
  BOOST_TEST(consumer.w.until([&] { return pub.try_publish("jobs.t", "again"); }, 10s));
  BOOST_TEST(consumer.w.until([&] { return consumer.got.size() == taken + 1; }, 10s));
}

BOOST_AUTO_TEST_CASE(when_paused_drop_counts_what_it_drops_and_fail_throws_overloaded) {
  tcp_broker b;
  slow_consumer consumer{b, 0us, 0}; // takes nothing until credit comes
  auto o = opts(b);
  o.when_paused = paused_publish::drop;
  client pub{o};
  consumer.wait_ready(pub);
  std::size_t published = 0;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (pub.stats().paused_drops == 0 && std::chrono::steady_clock::now() < deadline) {
    pub.publish("jobs.d", std::to_string(published));
    ++published;
  }
  auto dropped = pub.stats().paused_drops;
  BOOST_TEST_REQUIRE(dropped == 1u, "never paused (" << published << " published)");
  consumer.c.grant_credit(consumer.sid, 100000);
  // Every publish not counted as dropped arrives: none is lost silently.
  BOOST_TEST(consumer.w.until([&] { return consumer.got.size() >= published - dropped; }, 10s),
             "delivered " << consumer.count() << " of " << published - dropped);

  o.when_paused = paused_publish::fail;
  client failing{o};
  // Stopped for good: without regrant off, the messages still on their way
  // when the credit is set to 0 would each grant one back, and a member as
  // fast as the publisher (a loaded or ASan run) would never let it pause.
  consumer.regrant = false;
  consumer.c.set_credit(consumer.sid, 0);
  std::optional<publish_error> refused;
  deadline = std::chrono::steady_clock::now() + 10s;
  while (!refused && std::chrono::steady_clock::now() < deadline) {
    try {
      failing.publish("jobs.f", "x");
    } catch (const publish_error& e) {
      refused = e;
    }
  }
  BOOST_TEST_REQUIRE(refused.has_value());
  BOOST_TEST(refused->code == code_of(status::overloaded));
  BOOST_TEST(failing.stats().paused_failures == 1u);
}

// What a node's runtime relies on (docs/backpressure.md, "A chain of
// functions"): a thread's override of when_paused. `hold` returns at once
// and the message goes on RESUME; `fail` throws 103 naming the topic; the
// client's own `block` is untouched outside the scope.
BOOST_AUTO_TEST_CASE(a_threads_override_holds_or_fails_a_paused_publish_and_never_blocks) {
  tcp_broker b;
  slow_consumer consumer{b, 0us, 0}; // takes nothing until credit comes
  client pub{opts(b)};               // when_paused = block
  consumer.wait_ready(pub);
  const auto taken = publish_until_paused(pub, "jobs.h");
  BOOST_TEST(!pub.paused("ready")); // another topic, no queue group: never paused
  BOOST_TEST(!thread_when_paused(std::nullopt).has_value()); // no override here yet
  {
    paused_publish_scope hold{paused_publish::hold};
    pub.publish("jobs.h", "held"); // would block without the scope
    BOOST_TEST(pub.stats().paused_holds == 1u);
    {
      paused_publish_scope fail{paused_publish::fail};
      std::optional<publish_error> refused;
      try {
        pub.publish("jobs.h", "refused");
      } catch (const publish_error& e) {
        refused = e;
      }
      BOOST_TEST_REQUIRE(refused.has_value());
      BOOST_TEST(refused->code == code_of(status::overloaded));
      BOOST_TEST(refused->topic == "jobs.h");
    }
    auto inner = thread_when_paused(std::nullopt); // the outer scope's again
    BOOST_TEST_REQUIRE(inner.has_value());
    BOOST_TEST((inner->how == paused_publish::hold && inner->only == nullptr));
    thread_when_paused(inner);
  }
  {
    paused_publish_scope mine{paused_publish::hold, &pub}; // this client's, named
    pub.publish("jobs.h", "held too");
    BOOST_TEST(pub.stats().paused_holds == 2u);
  }
  BOOST_TEST(!thread_when_paused(std::nullopt).has_value()); // restored
  BOOST_TEST(pub.stats().paused_failures == 1u);
  BOOST_TEST(pub.stats().paused_waits == 0u);
  consumer.c.grant_credit(consumer.sid, 100000);
  BOOST_TEST_REQUIRE(consumer.w.until([&] { return consumer.got.size() >= taken + 2; }, 10s),
                     "delivered " << consumer.count() << " of " << taken + 2);
  std::lock_guard lock{consumer.w.m};
  BOOST_TEST(consumer.got.count("held") == 1u); // held, then sent on RESUME
  BOOST_TEST(consumer.got.count("held too") == 1u);
  BOOST_TEST(consumer.got.count("refused") == 0u);
}

// `hold` keeps what the client holds within twice outbox_limit: an actor
// publishing in a loop to a paused group gets 103 once that many wait (as
// the I/O thread last counted), instead of growing the client; what was
// held all arrives, what was refused never does.
BOOST_AUTO_TEST_CASE(a_hold_keeps_at_most_twice_outbox_limit_then_fails_with_103) {
  constexpr std::size_t limit = 64;
  tcp_broker b;
  slow_consumer consumer{b, 0us, 0}; // takes nothing until credit comes
  auto o = opts(b);
  o.outbox_limit = limit;
  client pub{o};
  consumer.wait_ready(pub);
  const auto taken = publish_until_paused(pub, "jobs.b");
  std::optional<publish_error> refused;
  std::size_t held = 0;
  {
    paused_publish_scope hold{paused_publish::hold};
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!refused && std::chrono::steady_clock::now() < deadline) {
      try {
        pub.publish("jobs.b", "held-" + std::to_string(held));
        ++held;
      } catch (const publish_error& e) {
        refused = e;
      }
    }
  }
  BOOST_TEST_REQUIRE(refused.has_value(), held << " held, none refused");
  BOOST_TEST(refused->code == code_of(status::overloaded));
  BOOST_TEST(refused->topic == "jobs.b");
  BOOST_TEST(std::string{refused->what()}.find("outbox_limit") != std::string::npos, refused->what());
  // Twice the limit (less what the PAUSE found queued, held too), plus what
  // went into the outbox before the I/O thread counted again: the outbox
  // itself (outbox_limit) and what its turn had taken (as much again).
  BOOST_TEST(held <= 4 * limit);
  BOOST_TEST(pub.stats().paused_holds == held);
  BOOST_TEST(pub.stats().paused_failures == 1u);
  consumer.c.grant_credit(consumer.sid, 100000);
  BOOST_TEST_REQUIRE(consumer.w.until([&] { return consumer.got.size() >= taken + held; }, 10s),
                     "delivered " << consumer.count() << " of " << taken + held);
  std::lock_guard lock{consumer.w.m};
  BOOST_TEST(consumer.got.size() == taken + held);
  for (std::size_t i = 0; i < held; ++i) BOOST_TEST(consumer.got.count("held-" + std::to_string(i)) == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
