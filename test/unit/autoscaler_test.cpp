// SPDX-License-Identifier: Apache-2.0
// The autoscaler's policy with a fake clock and a load feed.
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdint>

#include "autoscaler.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using plexus::detail::autoscaler;

namespace {

struct feed {
  autoscaler a;
  autoscaler::clock::time_point now{};
  std::uint32_t current;

  feed(scale_options o, std::uint32_t start) : a(o), current(start) {}

  /// `ticks` samples of `demand`, 100 ms apart, following each decision.
  autoscaler::decision run(std::uint32_t demand, int ticks) {
    autoscaler::decision d;
    for (int i = 0; i < ticks; ++i) {
      now += 100ms;
      d = a.sample(current, demand, now);
      current = d.instances;
    }
    return d;
  }
};

scale_options opts(std::uint32_t min, std::uint32_t max) {
  scale_options o;
  o.min = min;
  o.max = max;
  o.stable_window = 10s;
  o.panic_window = 1s;
  o.idle_grace = 30s;
  return o;
}

} // namespace

BOOST_AUTO_TEST_SUITE(autoscaling_policy)

BOOST_AUTO_TEST_CASE(a_burst_scales_up_within_the_panic_window) {
  feed f{opts(1, 64), 1};
  f.run(1, 100); // steady at 1
  BOOST_TEST(f.current == 1u);
  auto d = f.run(40, 3); // 40 messages in the pool, for 300 ms
  BOOST_TEST(f.current >= 12u); // the 1 s window's average already wants a lot more
  BOOST_TEST(std::string{d.why} == "burst");
  f.run(40, 10); // a second of it
  BOOST_TEST(f.current == 40u);
}

BOOST_AUTO_TEST_CASE(after_a_burst_it_scales_down_only_after_the_stable_window) {
  feed f{opts(1, 64), 1};
  f.run(40, 20);
  BOOST_TEST(f.current == 40u);
  f.run(2, 50); // 5 s of low load: still holding (panic mode)
  BOOST_TEST(f.current == 40u);
  f.run(2, 150); // 15 s more: the stable window forgot the burst
  BOOST_TEST(f.current == 2u);
}

BOOST_AUTO_TEST_CASE(it_goes_to_zero_only_after_the_idle_grace_and_never_below_min) {
  feed zero{opts(0, 8), 4};
  zero.run(3, 100);
  zero.run(0, 200); // 20 s idle: one stays warm
  BOOST_TEST(zero.current == 1u);
  auto d = zero.run(0, 110); // past 30 s without demand
  BOOST_TEST(zero.current == 0u);
  BOOST_TEST(std::string{d.why} == "idle");
  feed provisioned{opts(2, 8), 4};
  provisioned.run(0, 600);
  BOOST_TEST(provisioned.current == 2u); // provisioned concurrency stays warm
}

BOOST_AUTO_TEST_CASE(it_never_goes_above_max) {
  feed f{opts(1, 8), 1};
  f.run(1000, 50);
  BOOST_TEST(f.current == 8u);
}

BOOST_AUTO_TEST_CASE(steady_load_does_not_flap) {
  feed f{opts(1, 64), 1};
  f.run(6, 200); // settle
  BOOST_TEST(f.current == 6u);
  int changes = 0;
  for (int i = 0; i < 600; ++i) { // a minute of load jittering between 5 and 7
    auto before = f.current;
    f.run(static_cast<std::uint32_t>(5 + i % 3), 1);
    if (f.current != before) ++changes;
    BOOST_TEST(f.current >= 6u);
    BOOST_TEST(f.current <= 7u);
  }
  BOOST_TEST(changes <= 1); // at most one step up, never back and forth
}

BOOST_AUTO_TEST_CASE(load_that_falls_clearly_scales_down) {
  feed f{opts(1, 64), 1};
  f.run(10, 200);
  BOOST_TEST(f.current == 10u);
  f.run(4, 200);
  BOOST_TEST(f.current == 4u);
}

BOOST_AUTO_TEST_CASE(target_sets_the_demand_each_instance_takes) {
  auto o = opts(1, 64);
  o.target = 4.0;
  feed f{o, 1};
  f.run(20, 200);
  BOOST_TEST(f.current == 5u); // ceil(20 / 4)
}

BOOST_AUTO_TEST_SUITE_END()
