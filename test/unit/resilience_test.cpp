// SPDX-License-Identifier: Apache-2.0
// A function's resilience on a real node with its embedded broker: errors
// retried with a backoff while the message waits in the broker, a rate
// limit that defers and never drops, and a dispatcher of its own that
// keeps a CPU-bound neighbour off the threads a sibling needs.
#define BOOST_TEST_MODULE plexus_resilience
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <set>
#include <thread>
#include <variant>

#include "broker_stats_watch.hpp"
#include "plexus/node.hpp"
#include "pool_core.hpp"
#include "runtime_helpers.hpp"
#include "server.hpp"
#include "waiter.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using plexus::test::number_after;
using plexus::test::stats_of;
using plexus::test::waiter;
using steady = std::chrono::steady_clock;

namespace {

/// Confirmed publishes whose codes arrive on the I/O thread.
struct confirms {
  waiter w;
  std::map<std::string, std::uint32_t> codes; // msg id -> CONFIRM code

  void publish(client& c, std::string_view topic, const std::string& id, std::string_view payload) {
    publish_options o;
    o.msg_id = id;
    c.publish_confirmed(topic, payload, [this, id](std::uint32_t code) { w.update([&] { codes[id] = code; }); }, o);
  }
  bool all(std::size_t n) {
    return w.until([&] { return codes.size() == n; }, 30s);
  }
  std::size_t with(std::uint32_t code) {
    std::lock_guard lock{w.m};
    return static_cast<std::size_t>(
      std::count_if(codes.begin(), codes.end(), [code](const auto& kv) { return kv.second == code; }));
  }
};

/// Counts what reaches $DLQ.<topic>.
struct dead_letters {
  std::atomic<int> n{0};
  dead_letters(client& c, const std::string& topic) {
    c.subscribe("$DLQ." + topic, [this](const message_view&) { ++n; });
  }
};

void burn(std::chrono::milliseconds d) { // CPU-bound work, no sleep
  auto end = steady::now() + d;
  volatile std::uint64_t x = 0;
  while (steady::now() < end)
    for (int i = 0; i < 1000; ++i) x = x + static_cast<std::uint64_t>(i);
}

} // namespace

BOOST_AUTO_TEST_SUITE(resilience)

// ---------------------------------------------------------------- retries

BOOST_AUTO_TEST_CASE(a_downstream_down_for_two_seconds_loses_nothing_and_tries_follow_the_backoff) {
  node n{node_options{}};
  const retry_policy policy{.max = 7, .initial = 100ms, .max_delay = 1s, .multiplier = 2, .jitter = no_jitter};
  struct attempt {
    std::uint32_t delivery;
    steady::time_point at;
    std::optional<std::chrono::milliseconds> next; // what ctx said the next delay would be
  };
  std::mutex m;
  std::map<std::string, std::vector<attempt>> tries; // msg id -> its attempts
  auto t0 = steady::now() + 1h; // set before the first publish
  n.service("shop").function("charge").on("payments").instances(4).retry(policy)
    .handle([&](std::string_view, context& ctx) -> result<void> {
      {
        std::lock_guard lock{m};
        tries[std::string{ctx.msg_id()}].push_back({ctx.delivery(), steady::now(), ctx.next_retry_delay()});
      }
      if (steady::now() - t0 < 2s) return error{"the bank is down"}; // down for 2 s, then up
      return {};
    });
  n.start();
  dead_letters dlq{n.client(), "payments"};
  confirms c;
  const std::size_t total = 40;
  {
    std::lock_guard lock{m};
    t0 = steady::now();
  }
  for (std::size_t i = 0; i < total; ++i) c.publish(n.client(), "payments", "pay-" + std::to_string(i), "x");
  BOOST_TEST_REQUIRE(c.all(total));
  BOOST_TEST(c.with(0) == total); // every one ACKed: none dead-lettered
  BOOST_TEST(dlq.n.load() == 0);
  auto s = stats_of(n, "charge");
  BOOST_TEST(s.ok == total);
  BOOST_TEST(s.retries == s.errors); // every error waited for a later try
  BOOST_TEST(s.errors >= 4 * total); // 0, .1, .3, .7, 1.5 s: 5 tries within the outage
  std::lock_guard lock{m};
  BOOST_TEST_REQUIRE(tries.size() == total);
  for (auto& [id, a] : tries) {
    BOOST_TEST_REQUIRE(a.size() >= 5u, id << " was tried " << a.size() << " times"); // 4 errors at least
    BOOST_TEST(a.size() <= 8u); // at most max + 1 deliveries
    for (std::size_t k = 0; k < a.size(); ++k) {
      BOOST_TEST(a[k].delivery == k + 1, id << " try " << k); // the broker counts each delivery
      if (k + 1 == a.size()) break;
      // ctx's next delay is the schedule's, and the broker held the
      // message at least that long (it never came back early).
      auto want = std::min<std::chrono::milliseconds>(100ms * (1 << k), 1s);
      BOOST_TEST_REQUIRE(a[k].next.has_value());
      BOOST_TEST(a[k].next->count() == want.count(), id << " try " << k);
      auto gap = std::chrono::duration_cast<std::chrono::milliseconds>(a[k + 1].at - a[k].at);
      BOOST_TEST(gap.count() >= want.count() - 2, id << " try " << k << " came back after " << gap.count() << " ms");
    }
  }
  n.stop();
}

BOOST_AUTO_TEST_CASE(an_error_with_retry_after_waits_that_long_and_the_last_try_dead_letters) {
  node n{node_options{}};
  std::mutex m;
  std::vector<steady::time_point> at;
  std::vector<bool> last; // ctx.next_retry_delay() empty: the last try
  n.service("shop").function("quote").on("quotes").instances(1).retry({.max = 2, .initial = 10ms})
    .handle([&](std::string_view, context& ctx) -> result<void> {
      std::lock_guard lock{m};
      at.push_back(steady::now());
      last.push_back(!ctx.next_retry_delay());
      return error{"rates not ready"}.retry_after(400ms);
    });
  n.start();
  dead_letters dlq{n.client(), "quotes"};
  confirms c;
  c.publish(n.client(), "quotes", "q-1", "x");
  BOOST_TEST_REQUIRE(c.all(1));
  BOOST_TEST(c.with(102) == 1u); // dead-lettered after max + 1 deliveries
  waiter w;
  BOOST_TEST(w.until([&] { return dlq.n.load() == 1; }));
  std::lock_guard lock{m};
  BOOST_TEST_REQUIRE(at.size() == 3u);
  for (std::size_t k = 0; k + 1 < at.size(); ++k)
    BOOST_TEST(std::chrono::duration_cast<std::chrono::milliseconds>(at[k + 1] - at[k]).count() >= 398);
  BOOST_TEST(!last[0]);
  BOOST_TEST(!last[1]);
  BOOST_TEST(last[2]);
  n.stop();
}

// ---------------------------------------------------------------- rate limit

BOOST_AUTO_TEST_CASE(a_rate_limited_function_runs_everything_within_burst_plus_rate_times_t) {
  node n{node_options{}};
  const double rate = 20;
  const std::uint32_t burst = 5;
  std::mutex m;
  std::vector<steady::time_point> starts;
  n.service("mail").function("send").on("mail.out").instances(4).rate_limit(rate, burst)
    .handle([&](std::string_view, context&) -> result<void> {
      std::lock_guard lock{m};
      starts.push_back(steady::now());
      return {};
    });
  n.start();
  dead_letters dlq{n.client(), "mail.out"};
  confirms c;
  const std::size_t total = 40; // 2 s of work at 20/s, sent at once
  for (std::size_t i = 0; i < total; ++i) c.publish(n.client(), "mail.out", "mail-" + std::to_string(i), "x");
  BOOST_TEST_REQUIRE(c.all(total));
  BOOST_TEST(c.with(0) == total); // nothing lost, nothing dead-lettered
  BOOST_TEST(dlq.n.load() == 0);
  auto s = stats_of(n, "send");
  BOOST_TEST(s.ok == total);
  BOOST_TEST(s.throttled >= total / 2); // most waited in the broker for their turn
  std::lock_guard lock{m};
  BOOST_TEST_REQUIRE(starts.size() == total);
  std::sort(starts.begin(), starts.end());
  // Structural: in any window from the first start, at most burst + rate * t.
  for (std::size_t k = 0; k < starts.size(); ++k) {
    auto t = std::chrono::duration<double>(starts[k] - starts.front()).count();
    BOOST_TEST_REQUIRE(static_cast<double>(k + 1) <= burst + rate * t + 1,
                       k + 1 << " started within " << t << " s");
  }
  n.stop();
}

// ---------------------------------------------------------------- bulkheads

BOOST_AUTO_TEST_CASE(a_cpu_bound_neighbour_on_its_own_dispatcher_leaves_a_sibling_fast) {
  node n{node_options{}};
  const auto work = 300ms;
  std::atomic<int> burned{0};
  auto& svc = n.service("app");
  svc.function("crunch").on("crunch").instances(4).dispatcher(thread_pool{"cpu", 1})
    .handle([&](std::string_view, context&) -> result<void> {
      burn(work);
      ++burned;
      return {};
    });
  svc.function("echo").on("echo").instances(2).handle([](std::string_view p, context& ctx) -> result<void> {
    ctx.reply(p);
    return {};
  });
  n.start();
  BOOST_TEST_REQUIRE(n.client().request("echo", "warm", 5s).code == 0u);
  const int jobs = 8; // 2.4 s of work on 1 thread
  for (int i = 0; i < jobs; ++i) n.client().publish("crunch", "x");
  waiter w;
  BOOST_TEST_REQUIRE(w.until([&] { return stats_of(n, "crunch").in_flight >= 1; }));
  std::chrono::nanoseconds worst{0};
  for (int i = 0; i < 20; ++i) {
    auto t = steady::now();
    auto r = n.client().request("echo", "ping", 5s);
    auto took = steady::now() - t;
    BOOST_TEST_REQUIRE(r.code == 0u);
    worst = std::max(worst, std::chrono::duration_cast<std::chrono::nanoseconds>(took));
  }
  // The neighbour's pool was saturated the whole time: its one thread ran
  // one handler after another, and its work was not done.
  BOOST_TEST(burned.load() < jobs);
  // The sibling never waited behind one of the neighbour's handlers.
  BOOST_TEST(std::chrono::duration_cast<std::chrono::milliseconds>(worst).count() < work.count() / 3,
             "the sibling's worst request took " << worst.count() / 1000 << " us");
  BOOST_TEST(w.until([&] { return burned.load() == jobs; }));
  n.stop();
}

BOOST_AUTO_TEST_CASE(a_handler_on_a_dispatcher_can_make_requests_and_fail_and_crash_as_elsewhere) {
  node n{node_options{}};
  auto& svc = n.service("app");
  svc.function("rates").on("rates").handle([](std::string_view p, context& ctx) -> result<void> {
    ctx.reply("rate for " + std::string{p});
    return {};
  });
  std::atomic<int> crashed{0};
  svc.function("front").on("front").instances(2).dispatcher(thread_pool{"front", 2})
    .handle([&](std::string_view p, context& ctx) -> result<void> {
      if (p == "crash" && ++crashed == 1) throw std::runtime_error("boom");
      return ctx.request("rates", p, 5s, [](const reply& r, context& c) -> result<void> {
        if (r.code != 0) return error{"no rate"};
        c.reply("front: " + r.payload);
        return {};
      });
    });
  n.start();
  for (int i = 0; i < 10; ++i) {
    auto r = n.client().request("front", "eur" + std::to_string(i), 5s);
    BOOST_TEST_REQUIRE(r.code == 0u);
    BOOST_TEST(r.payload == "front: rate for eur" + std::to_string(i));
  }
  // A crash on the dispatcher is a crash as anywhere: its message is tried again.
  plexus::test::confirmed(n.client(), "front", "crash");
  waiter w;
  BOOST_TEST(w.until([&] { return stats_of(n, "front").crashes == 1u && stats_of(n, "front").ok == 11u; }));
  n.stop();
}

BOOST_AUTO_TEST_CASE(a_service_dispatcher_is_shared_and_conflicting_ones_are_refused_at_start) {
  {
    node n{node_options{}};
    auto& svc = n.service("batch", service_options{.dispatcher = {"batch", 1}});
    std::atomic<int> at_once{0}, most{0};
    for (const char* name : {"a", "b"})
      svc.function(name).on(std::string{"batch."} + name).instances(3)
        .handle([&](std::string_view, context&) -> result<void> {
          auto now = ++at_once;
          int seen = most.load();
          while (now > seen && !most.compare_exchange_weak(seen, now)) {}
          burn(5ms);
          --at_once;
          return {};
        });
    n.start();
    for (int i = 0; i < 10; ++i) {
      n.client().publish("batch.a", "x");
      n.client().publish("batch.b", "x");
    }
    waiter w;
    BOOST_TEST(w.until([&] { return stats_of(n, "a").ok + stats_of(n, "b").ok == 20u; }));
    BOOST_TEST(most.load() == 1); // six instances, one thread: one handler at a time
    n.stop();
  }
  node bad{node_options{}};
  bad.service("s").function("f").on("f").blocking().dispatcher({"x", 1})
    .handle([](std::string_view, context&) -> result<void> { return {}; });
  BOOST_CHECK_THROW(bad.start(), std::exception);
  node clash{node_options{}};
  clash.service("s").function("f").on("f").dispatcher({"x", 1})
    .handle([](std::string_view, context&) -> result<void> { return {}; });
  clash.service("t").function("g").on("g").dispatcher({"x", 2})
    .handle([](std::string_view, context&) -> result<void> { return {}; });
  BOOST_CHECK_THROW(clash.start(), std::exception);
}

BOOST_AUTO_TEST_CASE(requests_past_a_bulkheads_queue_are_rejected_at_once_and_the_rest_answered) {
  node n{node_options{}};
  std::mutex gate_m;
  std::condition_variable gate_cv;
  bool open = false;
  std::atomic<int> started{0};
  n.service("app").function("slow").on("slow").bulkhead(1, 2).blocking()
    .handle([&](std::string_view p, context& ctx) -> result<void> {
      ++started;
      std::unique_lock lock{gate_m};
      gate_cv.wait(lock, [&] { return open; });
      ctx.reply(p);
      return {};
    });
  n.start();
  waiter w;
  std::vector<reply> replies;
  const int total = 8;
  for (int i = 0; i < total; ++i) {
    n.client().request_async("slow", std::to_string(i), 10s, [&w, &replies](reply r) {
      w.update([&] { replies.push_back(std::move(r)); });
    });
    if (i == 0) BOOST_TEST_REQUIRE(w.until([&] { return started.load() == 1; })); // the one at work
  }
  // 1 runs, 2 wait, the other 5 hear `rejected` at once, while the gate is shut.
  BOOST_TEST_REQUIRE(w.until([&] { return replies.size() >= 5u; }));
  {
    std::lock_guard lock{w.m};
    for (auto& r : replies) {
      BOOST_TEST(r.code == status_failed);
      BOOST_TEST(r.failure == "rejected");
      BOOST_TEST(r.from == "app.slow");
    }
  }
  {
    std::lock_guard lock{gate_m};
    open = true;
  }
  gate_cv.notify_all();
  BOOST_TEST_REQUIRE(w.until([&] { return replies.size() == static_cast<std::size_t>(total); }));
  std::lock_guard lock{w.m};
  BOOST_TEST(std::count_if(replies.begin(), replies.end(), [](const reply& r) { return r.code == 0; }) == 3);
  BOOST_TEST(stats_of(n, "slow").shed == 5u);
}

// ---------------------------------------------------------------- a chain under backpressure

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(downstream_backpressure)

namespace {

template <class T>
std::vector<T> only(const std::vector<detail::pool_command>& cmds) {
  std::vector<T> out;
  for (auto& c : cmds)
    if (auto* p = std::get_if<T>(&c)) out.push_back(*p);
  return out;
}

detail::delivery_batch deliveries(std::uint32_t sid, std::uint64_t first, std::uint64_t n,
                                  std::uint32_t count = 1) {
  std::vector<std::string> ids;
  for (auto s = first; s < first + n; ++s) ids.push_back("m" + std::to_string(s));
  std::vector<detail::delivery> views(n);
  for (std::uint64_t i = 0; i < n; ++i)
    views[i] = detail::delivery{sid, first + i, count, 0, 0, "orders", "p", ids[i], {}, {}};
  return detail::copy_deliveries(std::move(views));
}

/// The chain's last function: it holds every message until released (the
/// consumers are "full"), then records each one it gets.
struct gated_sink {
  waiter w;
  bool open = false;
  std::set<std::string> seen; // distinct payloads (a check per arrival is O(1))
  std::size_t arrivals = 0;   // every one, twice counted twice
  result<void> take(std::string_view payload) {
    w.until([&] { return open; }, 60s); // a blocking function: its own thread waits
    w.update([&] {
      seen.emplace(payload);
      ++arrivals;
    });
    return {};
  }
  void release() {
    w.update([&] { open = true; });
  }
  /// Waits until `n` distinct messages arrived.
  bool got_all(std::size_t n, std::chrono::milliseconds deadline) {
    return w.until([&] { return seen.size() == n; }, deadline);
  }
  std::size_t distinct() {
    std::lock_guard lock{w.m};
    return seen.size();
  }
  std::size_t total() {
    std::lock_guard lock{w.m};
    return arrivals;
  }
};

/// publisher -> a (fast: publishes each input to b's topic) -> b (gated,
/// then fast), on one node. `publish` runs on a thread of the test's own.
struct chain {
  gated_sink sink;
  void declare(node& n) {
    auto& svc = n.service("chain");
    svc.function("a").on("chain.in").instances(2).prefetch(16)
      .handle([](std::string_view payload, context& ctx) -> result<void> {
        ctx.publish("chain.out", payload);
        return {};
      });
    svc.function("b").on("chain.out").instances(2).prefetch(8).blocking()
      .handle([this](std::string_view payload, context&) { return sink.take(payload); });
  }
};

/// Prints where the chain stands (for a failure's context).
std::string where(node& n, gated_sink& sink) {
  auto a = stats_of(n, "a");
  auto b = stats_of(n, "b");
  return "a ok " + std::to_string(a.ok) + " overloaded " + std::to_string(a.overloaded) + " pauses " +
         std::to_string(a.downstream_pauses) + " credit " + std::to_string(a.credit) + " queued " +
         std::to_string(a.queue_depth) + "; b ok " + std::to_string(b.ok) + "; sink " +
         std::to_string(sink.total());
}

} // namespace

// The pool's decision, sans-IO: an invocation that found its downstream
// paused is NACKed with the policy's first delay (no error, retry or
// crash), the pool withdraws its credit and starts nothing until a probe
// finds the topic resumed, then sets its credit to what it can hold.
BOOST_AUTO_TEST_CASE(a_pool_whose_downstream_is_paused_nacks_with_a_delay_holds_its_credit_and_resumes) {
  function_options o;
  o.scale.min = o.scale.max = 2;
  o.prefetch = 8;
  o.retry = {.max = 4, .initial = 100ms, .max_delay = 2s, .multiplier = 2, .jitter = no_jitter};
  auto counters = std::make_shared<detail::pool_counters>();
  auto sup = std::make_shared<detail::shared_supervisor>(service_options{},
                                                         std::vector<restart_type>{permanent}, 1);
  detail::pool_core core{detail::pool_core_spec{"svc", "fn", 0, o, counters, sup}};
  auto t = detail::pool_core::clock::time_point{} + 1h;
  core.start(t);
  core.subscribed(7);
  static_cast<void>(core.take_commands());
  core.take(deliveries(7, 1, 6), t);
  auto runs = only<detail::pool_cmd::run>(core.take_commands());
  BOOST_TEST_REQUIRE(runs.size() == 2u); // 3 messages each
  // Instance one: its first item ran fine, its second found "orders.next" paused.
  auto& run = *runs[0].work;
  BOOST_TEST_REQUIRE(run.items.size() == 3u);
  run.outcomes = {{detail::outcome::ok, ""}, {detail::outcome::overloaded, "paused"}};
  run.finished = 2;
  run.overloaded = true;
  run.paused_topic = "orders.next";
  core.run_done(runs[0].id, t);
  auto cmds = core.take_commands();
  auto acks = only<detail::pool_cmd::ack>(cmds);
  auto nacks = only<detail::pool_cmd::nack>(cmds);
  BOOST_TEST_REQUIRE(acks.size() == 1u);
  BOOST_TEST(acks[0].seq == run.items[0]->seq);
  BOOST_TEST_REQUIRE(nacks.size() == 1u);
  BOOST_TEST(nacks[0].seq == run.items[1]->seq);
  BOOST_TEST((nacks[0].action == wire::nack_action::delay));
  BOOST_TEST(nacks[0].delay_ms == 100u); // the policy's first delay, whatever the delivery count
  BOOST_TEST(nacks[0].reason.find("orders.next") != std::string::npos);
  auto credit = only<detail::pool_cmd::set_credit>(cmds);
  BOOST_TEST_REQUIRE(credit.size() == 1u);
  BOOST_TEST(credit[0].n == 0u); // the broker sends it nothing more
  BOOST_TEST(only<detail::pool_cmd::grant_credit>(cmds).empty());
  BOOST_TEST(only<detail::pool_cmd::run>(cmds).empty()); // its idle instance starts nothing
  auto probes = only<detail::pool_cmd::probe_downstream>(cmds);
  BOOST_TEST_REQUIRE(probes.size() == 1u);
  BOOST_TEST(probes[0].topic == "orders.next");
  BOOST_TEST(core.downstream_paused());
  BOOST_TEST(core.waiting() == 1u); // the item it never started waits here, unNACKed
  BOOST_TEST(counters->overloaded == 1u);
  BOOST_TEST(counters->downstream_pauses == 1u);
  BOOST_TEST(counters->errors == 0u);
  BOOST_TEST(counters->retries == 0u);
  BOOST_TEST(counters->crashes == 0u);
  BOOST_TEST(counters->quarantined == 0u);
  BOOST_TEST(only<detail::pool_cmd::event>(cmds).empty()); // no restart, no quarantine
  // More arrives (sent before the broker read the withdrawal): it waits too.
  core.take(deliveries(7, 7, 2), t);
  BOOST_TEST(only<detail::pool_cmd::run>(core.take_commands()).empty());
  BOOST_TEST(core.waiting() == 3u);
  // Instance two ends its run on a message at its last delivery: it is
  // kept here, not NACKed (the broker would dead-letter it).
  auto& run2 = *runs[1].work;
  run2.outcomes = {{detail::outcome::overloaded, "paused"}};
  run2.finished = 1;
  run2.overloaded = true;
  run2.paused_topic = "orders.next";
  const_cast<detail::delivery&>(*run2.items[0]).count = detail::delivery_limit(o);
  const auto kept = run2.items[0]->seq;
  core.run_done(runs[1].id, t);
  cmds = core.take_commands();
  BOOST_TEST(only<detail::pool_cmd::nack>(cmds).empty());
  BOOST_TEST(only<detail::pool_cmd::set_credit>(cmds).empty()); // withdrawn already
  BOOST_TEST(core.waiting() == 6u);
  // Still paused: another probe, nothing else.
  core.downstream_probed(probes[0].episode, true, t + 20ms);
  cmds = core.take_commands();
  BOOST_TEST(cmds.size() == 1u);
  probes = only<detail::pool_cmd::probe_downstream>(cmds);
  BOOST_TEST_REQUIRE(probes.size() == 1u);
  // Resumed: the credit is what it can hold (2 + 8) less what it holds (6
  // waiting, 2 of them now in runs), and the instances start.
  core.downstream_probed(probes[0].episode, false, t + 40ms);
  cmds = core.take_commands();
  credit = only<detail::pool_cmd::set_credit>(cmds);
  BOOST_TEST_REQUIRE(credit.size() == 1u);
  BOOST_TEST(credit[0].n == 4u);
  auto resumed = only<detail::pool_cmd::run>(cmds);
  BOOST_TEST_REQUIRE(resumed.size() == 2u);
  BOOST_TEST(resumed[0].work->items[0]->seq == kept); // the one kept goes first
  BOOST_TEST(!core.downstream_paused());
  // An earlier pause's probe changes nothing.
  core.downstream_probed(probes[0].episode, true, t + 60ms);
  BOOST_TEST(core.take_commands().empty());
}

// End to end over a TCP broker whose queue groups pause at 2,000 (of
// 4,000): b holds everything it gets until released, its group fills and
// the broker pauses the node's publishes to it; a's invocations find it
// paused and go back to wait, a's pool holds its credit, a's group fills
// and the broker pauses the publisher. Released, b gets every message
// (none dropped, none dead-lettered, none quarantined), and no thread of
// the node ever waited (the test ends).
BOOST_AUTO_TEST_CASE(a_chain_with_a_slow_last_function_slows_the_publisher_and_loses_nothing) {
  zmq::context_t zctx{1};
  broker::server_options so;
  so.listen = "tcp://127.0.0.1:*";
  so.quiet = true;
  so.core.id = "chain";
  so.core.group_queue_msgs = 4000;
  so.core.stats_interval = 100ms;
  broker::server b{so, &zctx};
  b.start();
  chain c; // before the node: b's threads must not outlive its sink
  node_options no;
  no.broker = b.endpoint();
  node n{no};
  c.declare(n);
  n.start();
  test::broker_stats_watch stats{n.client(), "chain"};
  client_options po;
  po.endpoint = b.endpoint();
  po.publish_window = 64; // within the 2,000 between the pause mark and the bound
  po.outbox_limit = 256;  // its lead: past it publish() waits for the I/O thread
  client pub{po};         // when_paused = block
  BOOST_TEST_REQUIRE(test::confirmed(pub, "chain.in", "warm-up") == 0u); // a and b subscribed
  constexpr int total = 12000;
  std::atomic<int> sent{0};
  auto started = steady::now();
  std::thread publisher{[&] {
    for (int i = 0; i < total; ++i) {
      pub.publish("chain.in", std::to_string(i));
      ++sent;
    }
  }};
  // The pause travels back: a's invocations are refused, then the publisher waits.
  bool a_paused = c.sink.w.until([&] { return stats_of(n, "a").overloaded > 0; }, 30s);
  bool pub_paused = c.sink.w.until([&] { return pub.stats().pauses > 0; }, 30s);
  auto a = stats_of(n, "a");
  BOOST_TEST(a_paused, where(n, c.sink));
  BOOST_TEST(pub_paused, "sent " << sent.load() << "; " << where(n, c.sink));
  BOOST_TEST(sent.load() < total); // it waits for b
  BOOST_TEST(a.credit == 0u);      // a takes nothing while b is paused
  c.sink.release();
  publisher.join();
  auto took = steady::now() - started;
  BOOST_TEST(pub.stats().paused_waits > 0u); // it waited in publish() (counted once resumed)
  BOOST_TEST_REQUIRE(c.sink.got_all(total + 1u, 60s),
                     "b got " << c.sink.distinct() << " of " << total + 1 << "; " << where(n, c.sink));
  a = stats_of(n, "a");
  auto json = stats.fresh();
  BOOST_TEST(number_after(json, "group_queue_drops") == 0u);
  BOOST_TEST(number_after(json, "flow_overruns") == 0u);
  BOOST_TEST(number_after(json, "dead_letters") == 0u);
  auto pauses = number_after(json, "pauses"), peak = number_after(json, "group_queue_peak");
  BOOST_TEST(pauses >= 2u); // a's node and the publisher
  BOOST_TEST(peak <= 4000u); // never past a group's bound
  BOOST_TEST(a.overloaded > 0u);
  BOOST_TEST(a.downstream_pauses > 0u);
  BOOST_TEST(a.errors == 0u);
  BOOST_TEST(a.retries == 0u);
  BOOST_TEST(a.crashes == 0u);
  BOOST_TEST(a.quarantined == 0u);
  BOOST_TEST(a.ok == total + 1u); // each forwarded once
  BOOST_TEST(stats_of(n, "b").quarantined == 0u);
  BOOST_TEST_MESSAGE("chain over tcp: " << total << " messages in "
                     << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                     << " ms (b held them at first); a overloaded " << a.overloaded << " times, paused "
                     << a.downstream_pauses << " times; b got " << c.sink.total() << " ("
                     << c.sink.total() - c.sink.distinct() << " twice); publisher waited "
                     << pub.stats().paused_waits << " times; broker pauses " << pauses
                     << ", group_queue_peak " << peak);
  n.stop();
}

// The same with the node's embedded broker (inproc, default bounds: b's
// group pauses at 32,768): the publisher is the node's own client, on a
// thread of the program's (it may wait there).
BOOST_AUTO_TEST_CASE(a_chain_on_an_embedded_broker_pauses_the_first_function_and_loses_nothing) {
  chain c; // before the node: b's threads must not outlive its sink
  node n{node_options{}};
  c.declare(n);
  n.start();
  test::broker_stats_watch stats{n.client(), "embedded"};
  BOOST_TEST_REQUIRE(test::confirmed(n.client(), "chain.in", "warm-up") == 0u);
  constexpr int total = 40000; // past b's pause mark with b holding everything
  std::thread publisher{[&] {
    for (int i = 0; i < total; ++i) n.client().publish("chain.in", std::to_string(i));
  }};
  bool a_paused = c.sink.w.until([&] { return stats_of(n, "a").overloaded > 0; }, 60s);
  BOOST_TEST(a_paused, where(n, c.sink));
  c.sink.release();
  publisher.join();
  BOOST_TEST_REQUIRE(c.sink.got_all(total + 1u, 60s),
                     "b got " << c.sink.distinct() << " of " << total + 1 << "; " << where(n, c.sink));
  auto a = stats_of(n, "a");
  auto json = stats.fresh();
  BOOST_TEST(number_after(json, "group_queue_drops") == 0u);
  BOOST_TEST(number_after(json, "flow_overruns") == 0u);
  BOOST_TEST(number_after(json, "dead_letters") == 0u);
  BOOST_TEST(a.downstream_pauses > 0u);
  BOOST_TEST(a.errors == 0u);
  BOOST_TEST(a.crashes == 0u);
  BOOST_TEST(a.quarantined == 0u);
  BOOST_TEST(a.ok == total + 1u);
  BOOST_TEST_MESSAGE("chain on the embedded broker: a overloaded " << a.overloaded << " times, paused "
                     << a.downstream_pauses << " times; b got " << c.sink.total() << " ("
                     << c.sink.total() - c.sink.distinct() << " twice)");
  n.stop();
}

BOOST_AUTO_TEST_SUITE_END()
