// SPDX-License-Identifier: Apache-2.0
// A node's services checked, its actor system started and tuned, and the
// CAF supervision tree spawned: root, services, function pools.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <future>
#include <stdexcept>
#include <string>
#include <vector>

#include <caf/actor_system_config.hpp>
#include <caf/send.hpp>
#include <caf/thread_hook.hpp>

#include "function_pool.hpp"
#include "node_impl.hpp"
#include "supervision.hpp"

namespace plexus {

namespace {

// The dispatcher a function's handlers run on: its own, else its
// service's (unless it is blocking or a raw actor, which keep theirs);
// threads 0: the shared scheduler. Unnamed, it is the function's (or the
// service's) alone.
thread_pool dispatcher_of(const service& s, const function_builder& f) {
  auto d = f.options().dispatcher;
  if (d.threads > 0) {
    if (d.name.empty()) d.name = s.name() + "." + f.name();
    return d;
  }
  d = s.options().dispatcher;
  if (d.threads == 0 || f.options().blocking || f.actor()) return {};
  if (d.name.empty()) d.name = s.name();
  return d;
}

} // namespace

void node::impl::validate() const {
  std::vector<thread_pool> pools_seen; // dispatchers by name: one thread count each
  for (auto& s : services) {
    detail::check_name("service", s->name());
    for (auto& f : s->functions()) {
      detail::check_name("function", f->name());
      auto where = "function " + s->name() + "." + f->name();
      if (f->options().pattern.empty()) throw std::invalid_argument(where + " has no topic: call on()");
      if (validate_pattern(f->options().pattern) != topic_errc::ok)
        throw std::invalid_argument(where + ": bad topic pattern '" + f->options().pattern + "': " +
                                    to_string(validate_pattern(f->options().pattern)));
      if (!f->handler() && !f->actor())
        throw std::invalid_argument(where + " has no handler: call handle() or plexus::actor_function()");
      if (f->handler() && f->actor())
        throw std::invalid_argument(where + " has both a handler and an actor: choose one");
      const auto& sc = f->options().scale;
      if (sc.max == 0) throw std::invalid_argument(where + ": at most 0 instances: max must be >= 1");
      if (sc.min > sc.max)
        throw std::invalid_argument(where + ": scale min " + std::to_string(sc.min) + " > max " +
                                    std::to_string(sc.max));
      if (!(sc.target > 0) || sc.tick.count() <= 0 || sc.panic_window < sc.tick ||
          sc.stable_window < sc.panic_window || sc.idle_grace.count() < 0)
        throw std::invalid_argument(where + ": scale needs target > 0, tick > 0, tick <= panic "
                                            "window <= stable window, idle grace >= 0");
      const auto& o = f->options();
      if (!(o.rate.per_second >= 0) || (o.rate.per_second > 0 && o.rate.burst == 0))
        throw std::invalid_argument(where + ": rate_limit needs per_second >= 0 and burst >= 1");
      if (!(o.retry.multiplier >= 1) || o.retry.initial.count() < 0 || o.retry.max_delay.count() < 0)
        throw std::invalid_argument(where + ": retry needs multiplier >= 1, initial >= 0, max_delay >= 0");
      if (o.dispatcher.threads > 0 && (o.blocking || f->actor()))
        throw std::invalid_argument(where + ": a dispatcher runs handlers; a blocking function has a "
                                            "thread per instance, a raw actor runs as an actor: choose one");
      auto d = dispatcher_of(*s, *f);
      if (d.threads == 0) continue;
      auto same = std::find_if(pools_seen.begin(), pools_seen.end(),
                               [&d](const thread_pool& p) { return p.name == d.name; });
      if (same == pools_seen.end()) pools_seen.push_back(d);
      else if (same->threads != d.threads)
        throw std::invalid_argument(where + ": dispatcher \"" + d.name + "\" with " +
                                    std::to_string(d.threads) + " threads, elsewhere " +
                                    std::to_string(same->threads));
    }
  }
}

namespace {

// No thread of the actor system waits for a paused queue group: the
// RESUME may need the very consumers that thread would run (a function
// publishing to a group whose members are this node's). A publish there
// is held in the client until the RESUME (in an invocation, it fails the
// invocation instead: instance.cpp). docs/backpressure.md.
class never_wait_when_paused : public caf::thread_hook {
public:
  explicit never_wait_when_paused(const client* conn) : conn_(conn) {}
  void init(caf::actor_system&) override {}
  void thread_started() override { thread_when_paused(paused_override{paused_publish::hold, conn_}); }
  void thread_terminates() override { thread_when_paused(std::nullopt); }

private:
  const client* conn_;
};

} // namespace

void node::impl::start_actor_system() {
  cfg = std::make_unique<caf::actor_system_config>();
  cfg->add_thread_hook<never_wait_when_paused>(static_cast<const plexus::client*>(conn.get()));
  // CAF's work-stealing workers, when idle, spin (aggressive), then sleep
  // 50 us at a time up to 500 times (moderate), then wait on a condition
  // variable (relaxed). A pool idles between the connector's batches, so
  // the moderate phase ran all the time: a nanosleep and a context switch
  // every 50 us per worker, more CPU than the messages themselves, taken
  // from the broker and I/O threads (measured: 2.1 of 6.6 us per message
  // on 2 cores). Skip it; a relaxed worker looks for work to steal every
  // 1 ms (not CAF's 10), so CPU-heavy handlers still spread quickly.
  cfg->set("work-stealing.aggressive-poll-attempts", std::size_t{10});
  cfg->set("work-stealing.moderate-poll-attempts", std::size_t{0});
  cfg->set("work-stealing.relaxed-sleep-duration", caf::timespan{std::chrono::milliseconds{1}});
  sys = std::make_unique<caf::actor_system>(*cfg);
}

void node::impl::spawn_tree() {
  // The tree top down; children are told who they are before the first
  // subscription, so no crash report can overtake them.
  detail::root_spec rs;
  rs.opts = opts;
  rs.conn = conn.get();
  for (auto& s : services) rs.services.push_back(s->name());
  rs.stop_node = [sh = shared] {
    std::lock_guard lock{sh->m};
    sh->failed = true;
    sh->cv.notify_all();
  };
  root = detail::spawn_root(*sys, std::move(rs));
  std::vector<caf::actor> service_actors;
  std::vector<std::pair<detail::pool_spec, caf::actor>> to_subscribe;
  for (std::size_t si = 0; si < services.size(); ++si) {
    auto& s = *services[si];
    detail::service_spec ss;
    ss.name = s.name();
    ss.index = si;
    ss.opts = s.options();
    ss.conn = conn.get();
    ss.root = root;
    for (auto& f : s.functions()) {
      ss.functions.push_back(f->name());
      ss.restarts.push_back(f->options().restart);
      ss.counters.push_back(std::make_shared<detail::pool_counters>());
      ss.counters.back()->instances = f->options().scale.min;
    }
    ss.sup = std::make_shared<detail::shared_supervisor>(s.options(), ss.restarts,
                                                         detail::fresh_seed());
    auto counters = ss.counters;
    auto sup = ss.sup;
    auto svc = detail::spawn_service(*sys, std::move(ss));
    std::vector<caf::actor> pool_actors;
    for (std::size_t fi = 0; fi < s.functions().size(); ++fi) {
      detail::pool_spec ps;
      ps.service = s.name();
      ps.index = fi;
      ps.fn = s.functions()[fi].get();
      ps.conn = conn.get();
      ps.spans = spans.get();
      ps.counters = counters[fi];
      ps.sup = sup;
      ps.service_actor = svc;
      ps.confirm_grace = std::min(opts.drain_timeout, std::chrono::milliseconds{1000});
      if (auto d = dispatcher_of(s, *s.functions()[fi]); d.threads > 0) {
        auto it = std::find_if(dispatchers.begin(), dispatchers.end(),
                               [&d](const auto& p) { return p->name() == d.name; });
        if (it == dispatchers.end())
          it = dispatchers.insert(dispatchers.end(),
                                  std::make_unique<detail::dispatcher>(d.name, d.threads, conn.get()));
        ps.disp = it->get();
      }
      ps.on_exit = [sh = shared] {
        std::lock_guard lock{sh->m};
        --sh->live_pools;
        sh->cv.notify_all();
      };
      {
        std::lock_guard lock{shared->m};
        ++shared->live_pools;
      }
      auto p = detail::spawn_pool(*sys, ps);
      pool_actors.push_back(p);
      to_subscribe.emplace_back(std::move(ps), p);
      pools.push_back({s.name(), s.functions()[fi]->name(), counters[fi]});
    }
    caf::anon_send(svc, detail::children_atom::value, std::move(pool_actors));
    service_actors.push_back(std::move(svc));
  }
  caf::anon_send(root, detail::children_atom::value, std::move(service_actors));
  for (auto& [ps, p] : to_subscribe) detail::subscribe_pool(ps, p);
}

// The broker handles a connection's envelopes in order: once it confirms
// this one, it has every SUB before it, and what anyone publishes from
// now on reaches the node's functions. Announced on $SYS.node.<id>.up.
void node::impl::announce_ready() {
  std::vector<std::string> functions;
  for (auto& p : pools) functions.push_back(p.service + "." + p.function);
  std::promise<std::uint32_t> confirmed;
  auto done = confirmed.get_future();
  conn->publish_confirmed("$SYS.node." + conn->node_id() + ".up", encode_payload(functions),
                          [&confirmed](std::uint32_t code) { confirmed.set_value(code); });
  if (done.wait_for(std::chrono::seconds{10}) != std::future_status::ready)
    throw std::runtime_error("the broker did not confirm the node's subscriptions within 10 s");
}

} // namespace plexus
