// SPDX-License-Identifier: Apache-2.0
// A subscriber that stops reading (SIGSTOP) must not make the broker's
// memory grow with the stream: its queue is bounded, the excess is dropped
// and counted, and the broker keeps serving everybody else.
#include <future>

#include "harness.hpp"

using namespace plexus::itest;

namespace {

constexpr std::size_t payload_bytes = 1024;
// Under AddressSanitizer freed memory sits in its quarantine (256 MiB by
// default), so RSS says nothing about the broker's bounds: the drop and
// still-serving checks run, the RSS bound does not.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool rss_meaningful = false;
#else
constexpr bool rss_meaningful = true;
#endif
constexpr std::size_t rss_bound = 64u << 20;

struct flood_result {
  std::size_t baseline = 0, peak = 0;
  milliseconds took{};
  std::string stats;
};

// A broker with a 4 MiB pending limit and `plexus sub flood` as a process,
// stopped with SIGSTOP; `messages` of 1 KiB published at it while the
// broker's VmRSS is sampled. `after` runs with the subscriber continued.
template <class After>
flood_result flood_a_stopped_subscriber(std::size_t messages, After&& after) {
  broker_process broker{{"--id", "slow", "--stats-interval-ms", "200", "--max-pending-bytes",
                         "4194304", "--sndhwm", "1000"}};
  stats_watch stats{broker, "slow"};

  spawn_options so;
  so.args = {cli_bin, "--broker", broker.endpoint(), "sub", "flood", "--raw"};
  so.out = redirect::null;
  child_process sub{so};

  auto pub = broker.connect("flooder");
  // Subscribed once a confirmed publish is no longer "no interest" (101).
  BOOST_REQUIRE_MESSAGE(poll_until([&] {
    auto code = std::make_shared<std::promise<std::uint32_t>>();
    auto f = code->get_future();
    pub->publish_confirmed("flood", "probe", [code](std::uint32_t c) { code->set_value(c); });
    return f.wait_for(default_wait) == std::future_status::ready && f.get() == 0;
  }), "the plexus sub process never subscribed" << (sub.running() ? "" : " (it exited)"));

  sub.signal(SIGSTOP);
  auto& bp = broker.process();
  flood_result r;
  r.baseline = bp.rss_bytes().value_or(0);
  BOOST_REQUIRE(r.baseline > 0);

  std::atomic<std::size_t> peak{r.baseline};
  std::jthread sampler([&](std::stop_token stop) {
    while (!stop.stop_requested()) {
      if (auto rss = bp.rss_bytes()) peak = std::max(peak.load(), *rss);
      std::this_thread::sleep_for(1ms); // sampling period
    }
  });

  const std::string payload(payload_bytes, 'x');
  auto start = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < messages; ++i) pub->publish("flood", payload);
  sync_with_broker(*pub); // the broker has read and routed every one of them
  r.took = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
  // Stats published after the whole flood was routed.
  bool counted = stats.wait_for("msgs_in", [&](auto v) { return v >= messages; });
  sampler.request_stop();
  sampler.join();
  r.peak = peak.load();
  r.stats = stats.json();
  BOOST_REQUIRE_MESSAGE(counted, "stats never counted the flood: " << r.stats);
  BOOST_TEST_MESSAGE("flood of " << messages << " x " << payload_bytes << " B took " << r.took.count()
                     << " ms; broker RSS " << r.baseline / 1024 << " KiB at start, peak +"
                     << (r.peak - r.baseline) / 1024 << " KiB; msgs_out "
                     << json_number(r.stats, "msgs_out").value_or(0) << ", slow_consumer_drops "
                     << json_number(r.stats, "slow_consumer_drops").value_or(0));

  sub.signal(SIGCONT);
  BOOST_REQUIRE(bp.running());
  after(broker, *pub);
  return r;
}

} // namespace

BOOST_AUTO_TEST_SUITE(slow_consumer)

BOOST_AUTO_TEST_CASE(a_stopped_subscriber_does_not_grow_the_brokers_memory) {
  auto r = flood_a_stopped_subscriber(100000, [](const broker_process& broker, plexus::client& pub) {
    // The broker still serves: a fresh subscriber gets a fresh message.
    collector fresh;
    auto c = broker.connect("fresh");
    c->subscribe("after.flood", fresh.handler());
    sync_with_broker(*c);
    pub.publish("after.flood", "still here");
    BOOST_REQUIRE(fresh.wait_count(1));
    BOOST_TEST(fresh.payloads().at(0) == "still here");
  });
  BOOST_TEST(json_number(r.stats, "slow_consumer_drops").value_or(0) > 0u, r.stats);
  auto grew = r.peak - r.baseline;
  BOOST_TEST((!rss_meaningful || grew < rss_bound), "broker RSS grew by " << grew / (1024 * 1024) << " MiB (bound "
                                                     << rss_bound / (1024 * 1024) << " MiB)");
}

// The server caps each batch frame at max-pending-bytes / sndhwm, so what
// ZeroMQ holds for a stopped peer is bounded like the core's queue: a ten
// times longer flood must stay within the same bound.
BOOST_AUTO_TEST_CASE(a_long_flood_at_a_stopped_subscriber_stays_within_the_same_bound) {
  auto r = flood_a_stopped_subscriber(1000000, [](const broker_process&, plexus::client&) {});
  auto grew = r.peak - r.baseline;
  BOOST_TEST((!rss_meaningful || grew < rss_bound), "broker RSS grew by " << grew / (1024 * 1024) << " MiB (bound "
                                                     << rss_bound / (1024 * 1024) << " MiB)");
}

BOOST_AUTO_TEST_SUITE_END()
