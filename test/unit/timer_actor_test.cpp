// SPDX-License-Identifier: Apache-2.0
// The timer actor (actors/timer) on real nodes: ticks on time, one fire
// across three nodes on one broker, fire now, catch_up and skip after
// downtime (from a state file), options refused.

#define BOOST_TEST_MODULE plexus_timer_actor
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "plexus/actors/timer.hpp"
#include "plexus/node.hpp"
#include "runtime_helpers.hpp"
#include "waiter.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using namespace plexus::actors;
using plexus::test::confirmed;
using plexus::test::stats_of;
using plexus::test::tcp_broker;
using plexus::test::temp_dir;
using plexus::test::waiter;

namespace {

instant wall() { return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now()); }

struct seen_tick {
  tick t;
  std::string msg_id;
};

/// The ticks a topic's subscriber got, in arrival order.
class tick_log {
public:
  /// Subscribes `c` and proves the subscription is live (a probe's confirm
  /// says a subscriber had it), so no tick after this goes unseen.
  void listen(client& c, const std::string& topic) {
    c.subscribe(topic, [this](const message_view& m) {
      if (m.msg_id.starts_with("probe")) return;
      tick t;
      auto why = decode_payload(m.payload, t);
      w_.update([&] {
        if (why) bad_.push_back(*why);
        else ticks_.push_back({std::move(t), std::string{m.msg_id}});
      });
    });
    BOOST_TEST_REQUIRE(confirmed(c, topic, "probe", "probe." + topic) == 0u);
  }
  template <class Pred>
  bool until(Pred p, std::chrono::milliseconds deadline = 20s) {
    return w_.until([&] { return p(ticks_); }, deadline);
  }
  std::vector<seen_tick> ticks() {
    std::lock_guard lock{w_.m};
    BOOST_TEST(bad_.empty(), "payloads that are no tick: " << (bad_.empty() ? "" : bad_.front()));
    return ticks_;
  }

private:
  waiter w_;
  std::vector<seen_tick> ticks_;
  std::vector<std::string> bad_;
};

std::string read_file(const std::string& path) {
  std::ifstream in{path};
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// A node restarted after five minutes down: its state file says the last
/// fire of `* * * * *` was five minutes before the current minute, so the
/// fires of the last five minutes (the current minute's included) were
/// missed. Returns the ticks that arrived before a fire now made after
/// the start (catch-up fires are published first, at the timer's start),
/// the current minute and the state file's content at the end.
struct downtime_run {
  std::vector<seen_tick> before_fire_now;
  instant minute{};
  std::string state_after;
};

downtime_run restart_after_downtime(const std::string& name, missed_policy policy) {
  tcp_broker b;
  tick_log log;
  client_options co;
  co.endpoint = b.endpoint();
  client c{co};
  log.listen(c, "ticks.catch");
  // Away from a minute's edge: the current minute's fire is past the
  // grace (1 s), the next one is ten seconds away at least.
  waiter phase;
  BOOST_TEST_REQUIRE(phase.until([] {
    auto s = (wall() - std::chrono::floor<std::chrono::minutes>(wall())) / 1s;
    return s >= 2 && s <= 50;
  }, 15s));
  downtime_run run;
  run.minute = std::chrono::floor<std::chrono::minutes>(wall());
  auto last = run.minute - 5min;
  temp_dir tmp{"timer-" + name}; // removed at the end, even when a check fails
  auto dir = tmp.str();
  std::ofstream{timer_state_path(dir, name)} << last.time_since_epoch().count() << "\n";

  node n{node_options{.broker = b.endpoint()}};
  add_timer(n.service("cron"), {.name = name, .schedule = "* * * * *", .topic = "ticks.catch",
                                .missed = policy, .state_dir = dir});
  n.start();
  BOOST_TEST(confirmed(c, fire_now_topic(name), "", "go") == 0u);
  auto now_id = name + "@now.go";
  BOOST_TEST_REQUIRE(log.until([&](const auto& ticks) {
    return std::any_of(ticks.begin(), ticks.end(), [&](const seen_tick& s) { return s.msg_id == now_id; });
  }));
  for (auto& s : log.ticks()) {
    if (s.msg_id == now_id) break;
    run.before_fire_now.push_back(s);
  }
  if (policy.action == on_missed::catch_up) { // its last fire reaches the state file (on a thread of its own)
    auto line = std::to_string(run.minute.time_since_epoch().count()) + " ";
    waiter kept;
    BOOST_TEST(kept.until([&] { return read_file(timer_state_path(dir, name)).starts_with(line); }, 10s));
  }
  run.state_after = read_file(timer_state_path(dir, name));
  n.stop();
  return run;
}

/// What add_timer throws for `o`, and that it added nothing.
std::string refusal(timer_options o) {
  service svc{"cron", {}};
  try {
    add_timer(svc, std::move(o));
  } catch (const std::invalid_argument& e) {
    BOOST_TEST(svc.functions().empty());
    return e.what();
  }
  BOOST_FAIL("add_timer took the options");
  return {};
}

} // namespace

BOOST_AUTO_TEST_SUITE(timer_actor)

BOOST_AUTO_TEST_CASE(an_interval_timer_publishes_a_tick_at_each_multiple_of_its_period) {
  tick_log log; // outlives the node: its subscription calls into it
  node n{node_options{}};
  add_timer(n.service("cron"), {.name = "fast", .schedule = "@every 100ms", .topic = "ticks.fast"});
  n.start();
  log.listen(n.client(), "ticks.fast");
  BOOST_TEST_REQUIRE(log.until([](const auto& t) { return t.size() >= 5; }));
  auto ticks = log.ticks();
  std::int64_t prev = 0;
  for (auto& s : ticks) {
    instant at{std::chrono::milliseconds{s.t.fire_time}};
    BOOST_TEST(s.t.schedule == "fast");
    BOOST_TEST(s.t.fire_time % 100 == 0);
    BOOST_TEST(s.t.fire_time > prev);
    BOOST_TEST(s.t.fire_time_iso == iso8601_utc(at));
    BOOST_TEST(s.msg_id == fire_id("fast", at));
    prev = s.t.fire_time;
  }
  // On time: the last one fired within a second of now.
  BOOST_TEST(std::chrono::abs(wall() - instant{std::chrono::milliseconds{prev}}) < 1s);
  auto st = stats_of(n, "timer-fast"); // a supervised function like any other
  BOOST_TEST(st.live == 1u);
  BOOST_TEST(st.crashes == 0u);
  n.stop();
}

BOOST_AUTO_TEST_CASE(three_nodes_running_the_same_timer_publish_each_fire_once) {
  tcp_broker b;
  tick_log log;
  client_options co;
  co.endpoint = b.endpoint();
  client c{co};
  log.listen(c, "ticks.shared");
  node first{node_options{.broker = b.endpoint()}}, second{node_options{.broker = b.endpoint()}},
    third{node_options{.broker = b.endpoint()}};
  for (auto* n : {&first, &second, &third})
    add_timer(n->service("cron"), {.name = "shared", .schedule = "@every 100ms", .topic = "ticks.shared"});
  first.start();
  second.start();
  third.start();
  auto both = (wall() + 100ms).time_since_epoch().count(); // all three timers run from here on
  auto since_both = [both](const std::vector<seen_tick>& ticks) {
    std::map<std::int64_t, int> count;
    for (auto& s : ticks)
      if (s.t.fire_time > both) ++count[s.t.fire_time];
    return count;
  };
  // Eight fires seen: a second copy of any of the first five would be here by now.
  BOOST_TEST_REQUIRE(log.until([&](const auto& t) { return since_both(t).size() >= 8; }));
  auto count = since_both(log.ticks());
  int checked = 0;
  for (auto [fire_time, n] : count) {
    if (++checked > 5) break;
    BOOST_TEST(n == 1, "fire " << fire_time << " arrived " << n << " times");
  }
  BOOST_TEST(stats_of(first, "timer-shared").live == 1u);
  BOOST_TEST(stats_of(second, "timer-shared").live == 1u);
  BOOST_TEST(stats_of(third, "timer-shared").live == 1u);
  third.stop();
  second.stop();
  first.stop();
}

BOOST_AUTO_TEST_CASE(a_message_on_the_fire_now_topic_fires_the_schedule_at_once) {
  tick_log log;
  node n{node_options{}};
  add_timer(n.service("cron"), {.name = "yearly", .schedule = "0 0 1 1 *", .topic = "ticks.now"});
  n.start();
  log.listen(n.client(), "ticks.now");
  auto before = wall();
  // Confirmed once the function ACKed it, which it does once its tick is confirmed.
  BOOST_TEST(confirmed(n.client(), fire_now_topic("yearly"), "", "go-1") == 0u);
  BOOST_TEST_REQUIRE(log.until([](const auto& t) { return !t.empty(); }));
  auto ticks = log.ticks();
  BOOST_TEST(ticks.size() == 1u);
  BOOST_TEST(ticks[0].msg_id == "yearly@now.go-1");
  BOOST_TEST(ticks[0].t.schedule == "yearly");
  BOOST_TEST(ticks[0].t.fire_time >= before.time_since_epoch().count());
  BOOST_TEST(ticks[0].t.fire_time <= wall().time_since_epoch().count());
  // A trigger id too long to quote in a 64-byte msg id is hashed.
  std::string long_id(60, 'x');
  BOOST_TEST(confirmed(n.client(), fire_now_topic("yearly"), "", long_id) == 0u);
  BOOST_TEST_REQUIRE(log.until([](const auto& t) { return t.size() == 2; }));
  auto hashed = log.ticks()[1].msg_id;
  BOOST_TEST(hashed.starts_with("yearly@now."), hashed);
  BOOST_TEST(hashed.size() == std::string{"yearly@now."}.size() + 16, hashed);
  BOOST_TEST(stats_of(n, "timer-yearly").ok == 2u);
  n.stop();
}

BOOST_AUTO_TEST_CASE(catch_up_publishes_the_most_recent_missed_fires_oldest_first) {
  auto run = restart_after_downtime("late", {.action = on_missed::catch_up, .max_catch_up = 3});
  std::vector<std::int64_t> fired;
  for (auto& s : run.before_fire_now) {
    fired.push_back(s.t.fire_time);
    BOOST_TEST(s.msg_id == fire_id("late", instant{std::chrono::milliseconds{s.t.fire_time}}));
  }
  // Five missed (minute - 4 .. minute), the bound keeps the last three.
  std::vector<std::int64_t> expect;
  for (auto back : {2, 1, 0}) expect.push_back((run.minute - back * 1min).time_since_epoch().count());
  BOOST_TEST(fired == expect, boost::test_tools::per_element());
  BOOST_TEST(run.state_after.starts_with(std::to_string(run.minute.time_since_epoch().count()) + " "));
}

BOOST_AUTO_TEST_CASE(skip_publishes_none_of_the_missed_fires) {
  auto run = restart_after_downtime("skipper", {.action = on_missed::skip});
  BOOST_TEST(run.before_fire_now.empty());
  auto last = (run.minute - 5min).time_since_epoch().count();
  BOOST_TEST(run.state_after == std::to_string(last) + "\n"); // nothing fired: untouched
}

BOOST_AUTO_TEST_CASE(bad_options_are_refused_at_add_time_naming_each_one) {
  timer_options ok{.name = "t", .schedule = "*/5 * * * *", .topic = "ticks"};
  auto with = [&](auto change) {
    auto o = ok;
    change(o);
    return refusal(o);
  };
  auto cron = with([](auto& o) { o.schedule = "*/0 * * * *"; });
  BOOST_TEST(cron.find("timer \"t\": schedule: ") == 0u, cron);
  BOOST_TEST(cron.find("step 0") != std::string::npos, cron);
  auto zone = with([](auto& o) { o.zone = "Mars/Olympus_Mons"; });
  BOOST_TEST(zone.find("zone: ") != std::string::npos, zone);
  BOOST_TEST(zone.find("Mars/Olympus_Mons") != std::string::npos, zone);
  auto catch_up = with([](auto& o) { o.missed.action = on_missed::catch_up; });
  BOOST_TEST(catch_up.find("missed: catch_up needs state_dir") != std::string::npos, catch_up);
  auto topic = with([](auto& o) { o.topic = "ticks..daily"; });
  BOOST_TEST(topic.find("topic \"ticks..daily\": ") != std::string::npos, topic);
  auto reserved = with([](auto& o) { o.topic = "$SYS.ticks"; });
  BOOST_TEST(reserved.find("reserved") != std::string::npos, reserved);
  auto never = with([](auto& o) { o.schedule = "0 0 30 2 *"; });
  BOOST_TEST(never.find("never fires") != std::string::npos, never);
  auto name = with([](auto& o) { o.name = "a/b"; });
  BOOST_TEST(name.find("name \"a/b\"") != std::string::npos, name);
  // Every problem in one message.
  auto all = with([](auto& o) {
    o.zone = "Nowhere/Atall";
    o.topic = "";
  });
  BOOST_TEST(all.find("zone: ") != std::string::npos, all);
  BOOST_TEST(all.find("topic \"\": ") != std::string::npos, all);
  // The same options, right, are taken.
  service svc{"cron", {}};
  BOOST_TEST(add_timer(svc, ok).name() == "timer-t");
  BOOST_TEST(svc.functions().size() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
