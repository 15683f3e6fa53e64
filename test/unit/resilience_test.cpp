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

#include "plexus/node.hpp"
#include "runtime_helpers.hpp"
#include "waiter.hpp"

using namespace std::chrono_literals;
using namespace plexus;
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

BOOST_AUTO_TEST_SUITE_END()
