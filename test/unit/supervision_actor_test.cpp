// SPDX-License-Identifier: Apache-2.0
// The supervision actors (supervision.cpp) on CAF's deterministic
// scheduler: fake pools and a fake root record what the service and root
// send them, and the root's backoff runs on the scheduler's virtual clock.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/send.hpp>

#include "supervision.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using namespace plexus::detail;

namespace {

using log_ptr = std::shared_ptr<std::vector<std::string>>;

/// A pool as the service sees it: it records each message as a word.
caf::behavior fake_pool(caf::event_based_actor* self, log_ptr got) {
  return {
    [got](recycle_atom, bool replace) { got->push_back(replace ? "recycle" : "stop instances"); },
    [got](escalate_atom) { got->push_back("escalate"); },
    [got](revive_atom) { got->push_back("revive"); },
    [self, got](stop_atom) {
      got->push_back("stop");
      self->quit();
    },
  };
}

/// A root (or a sibling service) as the service sees it.
caf::behavior fake_root(caf::event_based_actor* self, log_ptr got) {
  return {
    [got](escalate_atom, std::size_t service, const std::string& why) {
      got->push_back("escalate " + std::to_string(service) + " " + why);
    },
    [got](recovered_atom, std::size_t service) {
      got->push_back("recovered " + std::to_string(service));
    },
    [got](revive_atom, std::uint64_t, std::uint32_t) { got->push_back("revive"); },
    [self, got](stop_atom) {
      got->push_back("stop");
      self->quit();
    },
  };
}

using words = std::vector<std::string>;

/// The revive the root scheduled, read from the virtual clock.
struct scheduled_revive {
  caf::strong_actor_ptr to;
  std::chrono::milliseconds due_in; // from now
  std::uint64_t delay_ms = 0;       // as the message says
  std::uint32_t attempt = 0;
};

struct fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scheduler::test_coordinator& sched;
  std::vector<caf::actor> spawned;
  std::uint64_t key = 0; // fresh message keys for the supervisor core
  const steady::time_point t0 = steady::time_point{} + 1h;

  static caf::actor_system_config& testing(caf::actor_system_config& c) {
    c.set("scheduler.policy", caf::atom("testing"));
    c.set("logger.file-verbosity", caf::atom("quiet"));
    c.set("logger.console-verbosity", caf::atom("quiet"));
    return c;
  }

  fixture()
    : sys(testing(cfg)),
      sched(dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())) {
    sched.run();
  }

  ~fixture() {
    // The service and the root hold each other: end every actor explicitly.
    for (auto& a : spawned) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    sched.run();
  }

  caf::actor keep(caf::actor a) {
    spawned.push_back(a);
    return a;
  }

  caf::actor pool(const log_ptr& got) { return keep(sys.spawn(fake_pool, got)); }
  caf::actor probe(const log_ptr& got) { return keep(sys.spawn(fake_root, got)); }

  /// A service whose pools are fake; `logs[i]` records what pool i hears.
  struct service_tree {
    caf::actor actor;
    std::vector<log_ptr> logs;
    std::vector<std::shared_ptr<pool_counters>> counters;
    std::shared_ptr<shared_supervisor> sup;
  };

  service_tree service(std::vector<restart_type> restarts, caf::actor root, std::size_t index = 0,
                       std::uint32_t max_restarts = 1) {
    service_tree t;
    service_options opts;
    opts.max_restarts = max_restarts;
    service_spec spec;
    spec.name = "orders";
    spec.index = index;
    spec.opts = opts;
    spec.restarts = restarts;
    spec.root = std::move(root);
    spec.sup = std::make_shared<shared_supervisor>(opts, restarts, 42);
    std::vector<caf::actor> pools;
    for (std::size_t i = 0; i < restarts.size(); ++i) {
      spec.functions.push_back("fn" + std::to_string(i));
      t.counters.push_back(std::make_shared<pool_counters>());
      t.logs.push_back(std::make_shared<words>());
      pools.push_back(pool(t.logs.back()));
    }
    spec.counters = t.counters;
    t.sup = spec.sup;
    t.actor = keep(spawn_service(sys, std::move(spec)));
    caf::anon_send(t.actor, children_atom::value, pools);
    sched.run();
    return t;
  }

  caf::actor root(root_spec spec, const std::vector<caf::actor>& services) {
    auto r = keep(spawn_root(sys, std::move(spec)));
    caf::anon_send(r, children_atom::value, services);
    sched.run();
    return r;
  }

  /// Crashes fresh messages until the service's core escalates, as its
  /// pools do; returns the intensity the escalating crash reported.
  std::uint32_t escalate_core(shared_supervisor& sup) {
    for (int i = 0; i < 100; ++i) {
      auto plan = sup.crashed(crash_report{0, 1, "m" + std::to_string(++key)}, t0);
      if (plan.escalate) return plan.intensity;
    }
    BOOST_FAIL("the supervisor core never escalated");
    return 0;
  }

  /// What a pool whose core escalated sends its service.
  void pool_escalates(const service_tree& t, const std::string& why = "boom") {
    auto intensity = escalate_core(*t.sup);
    caf::anon_send(t.actor, escalate_atom::value, std::size_t{0}, why, intensity);
    sched.run();
  }

  /// The one pending delayed message, which must be a revive.
  std::optional<scheduled_revive> pending_revive() {
    using clock = caf::detail::simple_actor_clock;
    auto& schedule = sched.clock().schedule();
    if (schedule.size() != 1) return std::nullopt;
    auto& [due, ev] = *schedule.begin();
    if (ev->subtype != clock::actor_msg_type) return std::nullopt;
    auto& msg = static_cast<clock::actor_msg&>(*ev);
    auto& content = msg.content->content();
    if (!content.match_elements<revive_atom, std::uint64_t, std::uint32_t>()) return std::nullopt;
    scheduled_revive r;
    r.to = msg.receiver;
    r.due_in = std::chrono::duration_cast<std::chrono::milliseconds>(due - sched.clock().now());
    r.delay_ms = content.get_as<std::uint64_t>(1);
    r.attempt = content.get_as<std::uint32_t>(2);
    return r;
  }
};

std::size_t count(const words& w, const std::string& what) {
  return static_cast<std::size_t>(std::count(w.begin(), w.end(), what));
}

root_spec restart_policy(std::size_t services) {
  root_spec spec;
  spec.opts.on_failure = node_options::failure_policy::restart_service;
  spec.opts.restart_initial = 1000ms;
  spec.opts.restart_max = 30000ms;
  for (std::size_t i = 0; i < services; ++i) spec.services.push_back("svc" + std::to_string(i));
  return spec;
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(supervision_actors, fixture)

BOOST_AUTO_TEST_CASE(a_recycle_request_reaches_exactly_the_listed_pools) {
  auto root_log = std::make_shared<words>();
  auto t = service({permanent, temporary, transient, permanent}, probe(root_log));

  // As a pool under rest_for_one sends it when function 1 crashed; index 9
  // is no pool and is skipped, not the end of the list.
  caf::anon_send(t.actor, recycle_atom::value, std::vector<std::size_t>{1, 9, 2, 3}, std::size_t{1},
                 std::string{"boom"});
  sched.run();

  BOOST_TEST(*t.logs[0] == words{}, "a pool not listed hears nothing");
  BOOST_TEST(*t.logs[1] == words{"stop instances"}, "a temporary function is not replaced");
  BOOST_TEST(*t.logs[2] == words{"recycle"}, "a transient function is replaced");
  BOOST_TEST(*t.logs[3] == words{"recycle"}, "a permanent function is replaced");
  BOOST_TEST(*root_log == words{}, "a recycle stays inside the service");
  for (auto& c : t.counters) BOOST_TEST(c->escalations.load() == 0u);
}

BOOST_AUTO_TEST_CASE(an_escalation_stops_every_pool_and_reaches_the_root) {
  auto root_log = std::make_shared<words>();
  auto t = service({permanent, transient, temporary}, probe(root_log), /*index=*/3);

  caf::anon_send(t.actor, escalate_atom::value, std::size_t{1}, std::string{"fn1 threw"},
                 std::uint32_t{6});
  sched.run();

  for (auto& l : t.logs) BOOST_TEST(*l == words{"escalate"});
  BOOST_TEST(*root_log == words{"escalate 3 fn1 threw"});
  for (auto& c : t.counters) {
    BOOST_TEST(c->escalations.load() == 1u);
    BOOST_TEST(c->revivals.load() == 0u);
  }
}

BOOST_AUTO_TEST_CASE(a_revive_for_a_service_that_did_not_escalate_is_ignored) {
  auto root_log = std::make_shared<words>();
  auto t = service({permanent, permanent}, probe(root_log));

  caf::anon_send(t.actor, revive_atom::value, std::uint64_t{1000}, std::uint32_t{1});
  sched.run();

  for (auto& l : t.logs) BOOST_TEST(*l == words{});
  for (auto& c : t.counters) BOOST_TEST(c->revivals.load() == 0u);
}

BOOST_AUTO_TEST_CASE(the_root_revives_a_service_only_after_its_backoff_which_grows) {
  // The service is the root's second child; the first must hear nothing.
  auto sibling_log = std::make_shared<words>();
  auto sibling = probe(sibling_log);
  auto r = keep(spawn_root(sys, restart_policy(2)));
  auto t = service({permanent, temporary}, r, /*index=*/1);
  caf::anon_send(r, children_atom::value, std::vector<caf::actor>{sibling, t.actor});
  sched.run();

  // First escalation: the revive is due in restart_initial exactly.
  pool_escalates(t);
  for (auto& l : t.logs) BOOST_TEST(*l == words{"escalate"});
  auto rv = pending_revive();
  BOOST_REQUIRE(rv);
  BOOST_TEST((rv->to == caf::actor_cast<caf::strong_actor_ptr>(t.actor)));
  BOOST_TEST(rv->due_in.count() == 1000);
  BOOST_TEST(rv->delay_ms == 1000u);
  BOOST_TEST(rv->attempt == 1u);

  BOOST_TEST(sched.advance_time(999ms) == 0u, "nothing is due before the backoff");
  sched.run();
  for (auto& l : t.logs) BOOST_TEST(count(*l, "revive") == 0u);
  for (auto& c : t.counters) BOOST_TEST(c->revivals.load() == 0u);

  BOOST_TEST(sched.advance_time(1ms) == 1u);
  sched.run();
  for (auto& l : t.logs) BOOST_TEST(*l == (words{"escalate", "revive"}));
  for (auto& c : t.counters) BOOST_TEST(c->revivals.load() == 1u);
  BOOST_TEST(!sched.has_pending_timeout());

  // Second escalation, no recovery between: a draw from [1s, 2s].
  pool_escalates(t);
  rv = pending_revive();
  BOOST_REQUIRE(rv);
  BOOST_TEST(rv->due_in.count() >= 1000);
  BOOST_TEST(rv->due_in.count() <= 2000);
  BOOST_TEST(rv->delay_ms == static_cast<std::uint64_t>(rv->due_in.count()));
  BOOST_TEST(rv->attempt == 2u);

  BOOST_TEST(sched.advance_time(rv->due_in - 1ms) == 0u);
  sched.run();
  for (auto& l : t.logs) BOOST_TEST(count(*l, "revive") == 1u);
  BOOST_TEST(sched.advance_time(1ms) == 1u);
  sched.run();
  for (auto& l : t.logs) BOOST_TEST(*l == (words{"escalate", "revive", "escalate", "revive"}));
  for (auto& c : t.counters) {
    BOOST_TEST(c->escalations.load() == 2u);
    BOOST_TEST(c->revivals.load() == 2u);
  }
  BOOST_TEST(*sibling_log == words{}, "another service is not touched");
}

BOOST_AUTO_TEST_CASE(the_root_under_stop_node_stops_the_node_once_and_revives_nothing) {
  auto stops = std::make_shared<int>(0);
  auto spec = restart_policy(1);
  spec.opts.on_failure = node_options::failure_policy::stop_node;
  spec.stop_node = [stops] { ++*stops; };
  auto r = keep(spawn_root(sys, std::move(spec)));
  auto t = service({permanent, permanent}, r);
  caf::anon_send(r, children_atom::value, std::vector<caf::actor>{t.actor});
  sched.run();

  pool_escalates(t);

  BOOST_TEST(*stops == 1);
  BOOST_TEST(!sched.has_pending_timeout(), "no revive is scheduled");
  BOOST_TEST(sched.trigger_timeouts() == 0u);
  sched.run();
  for (auto& l : t.logs) BOOST_TEST(*l == words{"escalate"});
  for (auto& c : t.counters) BOOST_TEST(c->revivals.load() == 0u);
}

BOOST_AUTO_TEST_CASE(a_recovery_after_a_revive_resets_the_roots_backoff) {
  // The service is the root's second child: the recovery must name it.
  auto sibling_log = std::make_shared<words>();
  auto r = keep(spawn_root(sys, restart_policy(2)));
  auto t = service({permanent}, r, /*index=*/1);
  caf::anon_send(r, children_atom::value, std::vector<caf::actor>{probe(sibling_log), t.actor});
  sched.run();

  // Two escalations in a row: attempt 2.
  for (std::uint32_t attempt = 1; attempt <= 2; ++attempt) {
    pool_escalates(t);
    auto rv = pending_revive();
    BOOST_REQUIRE(rv);
    BOOST_TEST(rv->attempt == attempt);
    BOOST_TEST(sched.trigger_timeouts() == 1u);
    sched.run();
  }
  BOOST_TEST(t.counters[0]->revivals.load() == 2u);

  // The revived service handled a message: its pool reports it (as
  // function_pool does when shared_supervisor::succeeded() says so).
  BOOST_TEST(t.sup->succeeded(), "the core was revived");
  caf::anon_send(t.actor, recovered_atom::value);
  sched.run();

  pool_escalates(t);
  auto rv = pending_revive();
  BOOST_REQUIRE(rv);
  BOOST_TEST(rv->attempt == 1u, "the backoff started over");
  BOOST_TEST(rv->due_in.count() == 1000);
  BOOST_TEST(rv->delay_ms == 1000u);
}

BOOST_AUTO_TEST_CASE(a_stop_reaches_every_pool_and_the_service_and_root_quit) {
  auto r = keep(spawn_root(sys, restart_policy(2)));
  auto a = service({permanent, temporary}, r, 0);
  auto b = service({transient}, r, 1);
  caf::anon_send(r, children_atom::value, std::vector<caf::actor>{a.actor, b.actor});
  sched.run();

  auto quit = std::make_shared<words>();
  r->attach_functor([quit] { quit->push_back("root"); });
  a.actor->attach_functor([quit] { quit->push_back("a"); });
  b.actor->attach_functor([quit] { quit->push_back("b"); });

  caf::anon_send(r, stop_atom::value);
  sched.run();

  for (auto& l : a.logs) BOOST_TEST(*l == words{"stop"});
  for (auto& l : b.logs) BOOST_TEST(*l == words{"stop"});
  BOOST_TEST(count(*quit, "root") == 1u);
  BOOST_TEST(count(*quit, "a") == 1u);
  BOOST_TEST(count(*quit, "b") == 1u);
  BOOST_TEST(quit->size() == 3u);
}

BOOST_AUTO_TEST_SUITE_END()
