// SPDX-License-Identifier: Apache-2.0
#include "function_pool.hpp"
#include "span_sink.hpp"
#include "instance.hpp"
#include "autoscaler.hpp"
#include "supervisor.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <exception>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/system_messages.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

namespace plexus::detail {

namespace {

using batch_atom = caf::atom_constant<caf::atom("batch")>;
using steady = std::chrono::steady_clock;

std::string crash_text(const caf::error& reason) {
  const auto& ctx = reason.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0)) return ctx.get_as<std::string>(0);
  return caf::to_string(reason);
}

// ---------------------------------------------------------------- pool

using spawn_atom = caf::atom_constant<caf::atom("spawn")>;
using published_atom = caf::atom_constant<caf::atom("published")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
// self -> self, a stop's confirm grace is over
using grace_atom = caf::atom_constant<caf::atom("grace")>;

struct pool_state {
  pool_spec spec;
  std::vector<caf::actor> idle;
  // Instances at work, held strongly: one waiting on a request has an
  // empty mailbox, and CAF ends an actor nobody holds as unreachable.
  struct at_work {
    caf::actor instance;
    work_run_ptr run;
  };
  std::unordered_map<caf::actor_addr, at_work> busy;
  // Live instances by the generation they were spawned in: a recycle or a
  // stop starts a new one, and older instances retire once idle.
  std::unordered_map<caf::actor_addr, std::uint64_t> born;
  std::unordered_set<caf::actor_addr> retired; // told to exit by the pool
  std::deque<delivery_ptr> waiting;
  std::size_t handed = 0; // messages in the runs of busy instances (for the gauges)
  // Reliable functions: messages whose handler succeeded, waiting for the
  // confirms of what it published before they are ACKed (their credit is
  // held meanwhile, so at most `prefetch` wait).
  std::unordered_map<const publish_tracker*, delivery_ptr> deferred;
  std::uint64_t generation = 0;
  std::uint64_t epoch = 0; // bumped when the function stops: pending restarts lapse
  bool replace_retired = true; // false: a temporary function winding down
  std::uint32_t sid = 0;
  std::uint32_t owed_credit = 0; // finished messages not yet credited back
  std::uint32_t owed_sid = 0;    // the subscription they came through
  bool crashed_since_ok = false; // the service hears of the next success
  bool stopping = false; // draining for a node stop
  bool grace_over = false; // ... and what waits for confirms is no longer waited for
  bool stopped = false;  // escalated, or temporary with no instance left
  // Autoscaling (min < max): the instance count to run, and credit to hold
  // back after a scale-down (finished messages not credited back).
  std::optional<autoscaler> scaler;
  std::uint32_t target = 0;
  std::uint32_t credit_debt = 0;
  bool cold_pending = false; // the next run is the first after a cold start
  std::uint64_t taken_since_tick = 0; // messages taken in since the last demand sample
  std::vector<scale_event> unannounced; // published at the next tick, off the hot path
  std::string fn_name; // "service.function"
  const std::string* span_name = nullptr; // fn_name, interned by the node's span sink
  static inline const char* name = "plexus.pool";
};

using pool_actor = caf::stateful_actor<pool_state>;

void post_batch(const caf::actor_addr& pool, std::span<const message_view> batch);
enum class group_stay : bool { leave, stay };
void wind_down(pool_actor* self, const char* why, group_stay group);
void unconfirmed_publish(pool_actor* self, const delivery& d, std::uint32_t code);
void succeeded(pool_actor* self);

} // namespace

std::uint32_t subscribe_pool(const pool_spec& spec, const caf::actor& pool_handle) {
  auto pool = pool_handle.address(); // weak: the connector must not keep the pool alive
  const auto& o = spec.fn->options();
  subscribe_options so;
  so.queue = o.queue.empty() ? spec.service + "." + spec.fn->name() : o.queue;
  so.acked = true;
  so.credit = o.scale.min + o.prefetch; // one more granted per finished message
  so.ack_wait_ms = o.ack_wait_ms;
  so.max_deliver = o.max_deliver;
  auto sid = spec.conn->subscribe_batch(
    o.pattern, [pool](std::span<const message_view> b) { post_batch(pool, b); }, so);
  spec.counters->sid = sid;
  spec.counters->credit = so.credit;
  return sid;
}

namespace {

void spawn_instance(pool_actor* self) {
  auto& s = self->state;
  auto inst = spawn_instance_of(self, *s.spec.fn, s.spec.conn, &s.fn_name, s.spec.spans, s.span_name,
                                &s.spec.counters->duration);
  self->monitor(inst);
  s.born.emplace(inst.address(), s.generation);
  s.spec.counters->live = static_cast<std::uint32_t>(s.born.size());
  s.idle.push_back(inst);
}

void retire(pool_actor* self, const caf::actor& inst) {
  auto& s = self->state;
  s.born.erase(inst.address());
  s.spec.counters->live = static_cast<std::uint32_t>(s.born.size());
  s.retired.insert(inst.address());
  self->send_exit(inst, caf::exit_reason::user_shutdown);
}

// The node's gauges, after the pool changed what runs and what waits: a
// busy instance runs one message of its run, the rest of its run waits.
void note_gauges(pool_actor* self) {
  auto& s = self->state;
  auto running = s.busy.size();
  s.spec.counters->in_flight.store(static_cast<std::uint32_t>(running), std::memory_order_relaxed);
  s.spec.counters->queue_depth.store(static_cast<std::uint32_t>(s.waiting.size() + s.handed - running),
                                     std::memory_order_relaxed);
}

// Hands waiting messages to idle instances, a run each: one actor message
// for many deliveries, spread evenly, at most 32 per run.
void dispatch(pool_actor* self) {
  auto& s = self->state;
  while (!s.waiting.empty() && !s.idle.empty()) {
    auto inst = s.idle.back();
    s.idle.pop_back();
    auto n = std::clamp<std::size_t>(s.waiting.size() / (s.idle.size() + 1), 1, 32);
    auto run = std::make_shared<work_run>();
    run->items.reserve(n);
    run->outcomes.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      run->items.push_back(std::move(s.waiting.front()));
      s.waiting.pop_front();
    }
    run->cold = std::exchange(s.cold_pending, false);
    s.handed += n;
    s.busy.emplace(inst.address(), pool_state::at_work{inst, run});
    self->send(inst, run_atom::value, run);
  }
  note_gauges(self);
}

// An instance is free again: back to work, or retired if it belongs to an
// older generation (replaced, when the function still runs).
void freed(pool_actor* self, const caf::actor& inst) {
  auto& s = self->state;
  auto it = s.born.find(inst.address());
  bool excess = s.born.size() > s.target; // scaled down: drained, never dropped
  if (it != s.born.end() && it->second == s.generation && !s.stopping && !s.stopped && !excess) {
    s.idle.push_back(inst);
    return;
  }
  if (excess && it != s.born.end() && !s.stopping && !s.stopped) {
    retire(self, inst);
    return;
  }
  retire(self, inst);
  if (s.stopping || s.stopped) return;
  if (s.replace_retired) {
    ++s.spec.counters->recycled;
    spawn_instance(self);
  } else if (s.born.empty()) {
    wind_down(self, "function ended", group_stay::leave); // temporary: its last instance is gone
  }
}

void maybe_quit(pool_actor* self) {
  auto& s = self->state;
  if (s.stopping && s.busy.empty() && s.deferred.empty()) {
    for (auto& a : s.idle) retire(self, a);
    s.idle.clear();
    self->quit();
  }
}

void give_credit(pool_actor* self) {
  auto& s = self->state;
  s.spec.conn->grant_credit(s.owed_sid, s.owed_credit);
  if (s.owed_sid == s.spec.counters->sid.load(std::memory_order_relaxed))
    s.spec.counters->credit.fetch_add(s.owed_credit, std::memory_order_relaxed);
  s.owed_credit = 0;
}

// One message is finished: the broker may send one more. Credit goes back
// in batches of a quarter of the prefetch (one CREDIT per message cost more
// than the message), and at once when the pool has run dry (credit_if_dry).
void finished(pool_actor* self, const delivery& d) {
  auto& s = self->state;
  if (s.stopping || s.stopped) return;
  if (s.credit_debt > 0) { // capacity went down: this credit is not given back
    --s.credit_debt;
    return;
  }
  if (s.owed_credit > 0 && d.sid != s.owed_sid) give_credit(self); // an earlier subscription's
  s.owed_sid = d.sid;
  ++s.owed_credit;
  if (s.owed_credit >= std::max<std::uint32_t>(1, s.spec.fn->options().prefetch / 4))
    give_credit(self);
}

// After messages finished: a pool that has run dry gives back all it owes,
// in one CREDIT. (Asked per finished message, a dry pool sent one CREDIT
// per message of each run, and got its next messages one by one.)
void credit_if_dry(pool_actor* self) {
  auto& s = self->state;
  if (s.owed_credit > 0 && s.waiting.empty() && s.busy.empty()) give_credit(self);
}

// A message taken in goes back to the broker unfinished (a stop, an
// escalation): NACKed for another member, and counted.
void hand_back(pool_actor* self, const delivery& d, const char* why) {
  self->state.spec.conn->nack(d.sid, d.seq, wire::nack_action::requeue, 0, why);
  self->state.spec.counters->handed_back.fetch_add(1, std::memory_order_relaxed);
}

// The function stops taking work: what waits here was never started and
// goes back to the broker at once; running work finishes. An escalated
// function stays in its queue group with no credit (`stay`): what it hands
// back goes to other members, or waits in the group for its revival
// (leaving, on a single node, dropped it: the group lost its last member).
// One that ended for good (temporary, or transient whose last instance
// quit) leaves: requests to it find no responders instead of waiting.
void wind_down(pool_actor* self, const char* why, group_stay group) {
  auto& s = self->state;
  if (s.stopped) return;
  s.stopped = true;
  s.spec.counters->stopped = true;
  ++s.generation; // whatever runs now retires when done
  ++s.epoch;
  // No more deliveries, what waits goes back, then UNSUB when leaving
  // (which hands back the rest: after it, a NACK would name no subscription).
  auto sid = s.sid ? s.sid : s.spec.counters->sid.load();
  if (sid) s.spec.conn->withdraw_credit(sid);
  s.spec.counters->credit = 0;
  for (auto& d : s.waiting) hand_back(self, *d, why);
  s.waiting.clear();
  if (group == group_stay::leave) {
    if (sid) s.spec.conn->unsubscribe(sid);
    s.spec.counters->sid = 0;
    s.sid = 0;
  } else {
    s.sid = sid;
  }
  note_gauges(self);
  for (auto& a : s.idle) retire(self, a);
  s.idle.clear();
}

supervisor_event event(const pool_state& s, std::string kind, std::string reason) {
  supervisor_event e;
  e.kind = std::move(kind);
  e.node = s.spec.conn->node_id();
  e.service = s.spec.service;
  e.function = s.spec.fn->name();
  e.reason = std::move(reason);
  return e;
}

// Which message crashed, across redeliveries: its msg id, else its content.
std::string message_key(const delivery& d) {
  if (!d.msg_id.empty()) return std::string{d.msg_id};
  return std::string{d.topic} + '\0' + std::to_string(std::hash<std::string_view>{}(d.payload));
}

// Items of a run its instance never started wait here again, in order,
// for the next instance (the broker never sees them fail).
void requeue_unstarted(pool_actor* self, const work_run& run, bool died_on_one) {
  auto& s = self->state;
  auto unstarted = run.finished + (died_on_one ? 1 : 0);
  for (std::size_t i = run.items.size(); i-- > unstarted;) {
    const auto& d = run.items[i];
    if (s.stopping || s.stopped) {
      hand_back(self, *d, "function stopping");
      finished(self, *d);
    } else {
      s.waiting.push_front(d);
    }
  }
}

// ACKs or NACKs what a run finished.
void settle_finished(pool_actor* self, const work_run& run) {
  auto& s = self->state;
  auto& c = *s.spec.counters;
  if (run.init_ns != 0) {
    ++c.inits;
    if (run.init_ns > c.init_ns_max) c.init_ns_max = run.init_ns;
  }
  if (run.cold && run.started_ns != 0 && !run.items.empty()) {
    auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, run.started_ns - run.items[0]->arrived_ns));
    c.cold_start_ns_total += ns;
    if (ns > c.cold_start_ns_max) c.cold_start_ns_max = ns;
  }
  // Successes are ACKed a run of consecutive seqs at a time: one envelope
  // for what the broker delivered back to back (usually the whole run).
  std::uint32_t ack_sid = 0, ack_count = 0;
  std::uint64_t ack_first = 0;
  auto flush_acks = [&] {
    if (ack_count) s.spec.conn->ack(ack_sid, ack_first, ack_count);
    ack_count = 0;
  };
  for (std::size_t i = 0; i < run.finished; ++i) {
    const auto& d = run.items[i];
    const auto& [kind, why] = run.outcomes[i];
    auto* t = i < run.trackers.size() ? run.trackers[i].get() : nullptr;
    if (kind == outcome::ok && t && t->pending.fetch_sub(1, std::memory_order_acq_rel) != 1) {
      // The last confirm settles it (published_atom); past a stop's grace
      // it stays unacked (see grace_atom).
      if (!s.grace_over) s.deferred.emplace(t, d);
      else s.spec.counters->handed_back.fetch_add(1, std::memory_order_relaxed); // left unacked
      continue;
    }
    if (kind == outcome::ok && t && t->failed.load(std::memory_order_relaxed) != 0) {
      unconfirmed_publish(self, *d, t->failed.load(std::memory_order_relaxed));
      continue;
    }
    switch (kind) {
      case outcome::ok:
        succeeded(self);
        if (ack_count && (d->sid != ack_sid || d->seq != ack_first + ack_count)) flush_acks();
        if (!ack_count) {
          ack_sid = d->sid;
          ack_first = d->seq;
        }
        ++ack_count;
        break;
      case outcome::rejected:
        ++c.rejected;
        s.spec.conn->nack(d->sid, d->seq, wire::nack_action::dead_letter, 0, why);
        break;
      default:
        ++c.errors;
        s.spec.conn->nack(d->sid, d->seq, wire::nack_action::requeue, 0, why);
        break;
    }
    finished(self, *d);
  }
  flush_acks();
}

// One more message handled: the service's intensity and backoff start over.
void succeeded(pool_actor* self) {
  auto& s = self->state;
  ++s.spec.counters->ok;
  if (s.crashed_since_ok) {
    s.crashed_since_ok = false;
    if (s.spec.sup->succeeded()) self->send(s.spec.service_actor, recovered_atom::value);
  }
}

// A reliable invocation's publish was not confirmed ok (nobody subscribes
// yet, a broker lost it, ...): its message runs again after a second, and
// the publishes it repeats keep their ids (the broker drops those it has).
void unconfirmed_publish(pool_actor* self, const delivery& d, std::uint32_t code) {
  auto& s = self->state;
  ++s.spec.counters->errors;
  s.spec.conn->nack(d.sid, d.seq, wire::nack_action::delay, 1000,
                    std::string{"a publish was not confirmed: "} + status_text(code));
  finished(self, d);
}

// The message an instance died on: NACKed for a retry, or quarantined on
// $DLQ once it has crashed `poison_after` deliveries (poison is the
// message's fault; the service's intensity never counts redeliveries).
void settle_crashed(pool_actor* self, const delivery& d, const std::string& why) {
  auto& s = self->state;
  if (d.count >= s.spec.fn->options().poison_after) {
    ++s.spec.counters->quarantined;
    auto text = "crashed on " + std::to_string(d.count) + " deliveries: " + why;
    s.spec.conn->nack(d.sid, d.seq, wire::nack_action::dead_letter, 0, text);
    auto e = event(s, "quarantine", d.msg_id.empty() ? text : "msg " + std::string{d.msg_id} + " " + text);
    publish_event(s.spec.conn, e);
  } else {
    s.spec.conn->nack(d.sid, d.seq, wire::nack_action::requeue, 0, "crash: " + why);
  }
  finished(self, d);
}

// Replaces every instance (or, for a temporary function, ends them): idle
// ones now, busy ones when they finish what they hold.
void recycle(pool_actor* self, bool replace) {
  auto& s = self->state;
  if (s.stopping || s.stopped) return;
  ++s.generation;
  s.replace_retired = replace;
  auto idle = std::move(s.idle);
  s.idle.clear();
  for (auto& a : idle) freed(self, a);
}

bool is_crash(const caf::error& reason) {
  return reason && reason != caf::make_error(caf::exit_reason::normal);
}

// A run ended in a crash (`why`), or its instance ended (down). The
// supervisor core decides at once and the replacement gets the waiting
// work before anything else: the broker side (ACKs, the NACK, events) is
// settled while it runs. `survivor` is an instance that caught its
// handler's exception: stateless, it is its own replacement.
void run_ended(pool_actor* self, const work_run_ptr& run, const std::optional<std::string>& why,
               const caf::actor& survivor, const caf::actor_addr& source) {
  auto& s = self->state;
  const delivery* victim = why && run && run->finished < run->items.size()
                             ? run->items[run->finished].get() : nullptr;
  if (run) requeue_unstarted(self, *run, victim != nullptr);

  supervisor_plan plan;
  if (why) {
    ++s.spec.counters->crashes;
    s.crashed_since_ok = true;
    auto report = victim ? crash_report{s.spec.index, victim->count, message_key(*victim)}
                         : crash_report{s.spec.index, 1, "idle:" + caf::to_string(source)};
    plan = s.spec.sup->crashed(report, steady::now());
  } else {
    plan = s.spec.sup->exited(s.spec.index);
  }
  bool live = !s.stopping && !s.stopped;
  // This function's own part of a one_for_all / rest_for_one restart is
  // done first; the service does the siblings'.
  bool recycled_here = live && std::erase(plan.recycle, s.spec.index) > 0;
  if (recycled_here) recycle(self, s.spec.fn->options().restart != temporary);
  bool now = live && plan.restart && plan.delay.count() == 0;
  if (now) ++s.spec.counters->restarts;
  if (now && survivor && !recycled_here) {
    freed(self, survivor); // back to work (or replaced, if recycled while busy)
  } else {
    if (survivor) retire(self, survivor);
    if (now) spawn_instance(self);
  }
  dispatch(self);

  if (run) settle_finished(self, *run);
  if (victim) settle_crashed(self, *victim, *why);
  credit_if_dry(self);
  if (live && plan.escalate) {
    wind_down(self, "service stopped: past its restart intensity", group_stay::stay);
    self->send(s.spec.service_actor, escalate_atom::value, s.spec.index, *why, plan.intensity);
  } else if (live) {
    if (plan.restart && plan.delay.count() > 0)
      self->delayed_send(self, plan.delay, spawn_atom::value, s.epoch);
    if (why && plan.restart) {
      auto e = event(s, "restart", *why);
      e.delay_ms = static_cast<std::uint64_t>(plan.delay.count());
      e.intensity = plan.intensity;
      publish_event(s.spec.conn, e);
    }
    if (why && recycled_here)
      publish_event(s.spec.conn, event(s, "recycle", s.spec.fn->name() + " crashed: " + *why));
    if (why && !plan.recycle.empty())
      self->send(s.spec.service_actor, recycle_atom::value, plan.recycle, s.spec.index, *why);
  }
  // A function that gets no new instance has ended with its last one: a
  // temporary function is never restarted, a transient one not after a
  // normal exit. (Scaled to zero is no end: the target is 0 then.)
  if (s.spec.fn->options().restart != permanent && s.born.empty() && !s.stopping && live
      && !plan.restart && s.target > 0)
    wind_down(self, "function ended", group_stay::leave);
  maybe_quit(self);
}

// An instance actor ended (killed, or failed outside a handler).
void instance_down(pool_actor* self, const caf::down_msg& dm) {
  auto& s = self->state;
  std::erase_if(s.idle, [&](const caf::actor& a) { return a.address() == dm.source; });
  if (s.retired.erase(dm.source) > 0) { // the pool's own doing
    maybe_quit(self);
    return;
  }
  s.born.erase(dm.source);
  s.spec.counters->live = static_cast<std::uint32_t>(s.born.size());
  work_run_ptr run;
  if (auto it = s.busy.find(dm.source); it != s.busy.end()) {
    run = it->second.run;
    s.handed -= run->items.size();
    s.busy.erase(it);
  }
  std::optional<std::string> why;
  if (is_crash(dm.reason)) why = crash_text(dm.reason);
  run_ended(self, run, why, caf::actor{}, dm.source);
}

// ---------------------------------------------------------------- scaling

// A scaling decision is announced at the next tick, not now: publishing
// sat on a cold start's critical path (measured ~20 us p50, 40-50 us p99).
void note_scale(pool_actor* self, std::uint32_t from, std::uint32_t to, const char* why) {
  auto& s = self->state;
  scale_event e;
  e.service = s.spec.service;
  e.function = s.spec.fn->name();
  e.from = from;
  e.to = to;
  e.why = why;
  s.unannounced.push_back(std::move(e));
}

void announce_scaling(pool_actor* self) {
  auto& s = self->state;
  for (auto& e : s.unannounced) {
    e.node = s.spec.conn->node_id();
    // Best effort, as supervision events: a full outbox never blocks the pool.
    static_cast<void>(s.spec.conn->try_publish(
      "$SYS.scale." + s.spec.service + "." + s.spec.fn->name(), encode_payload(e)));
  }
  s.unannounced.clear();
}

// Runs `to` instances: new ones are spawned and the broker granted their
// credit; excess ones retire once idle (in freed), and their credit is
// held back.
void scale_to(pool_actor* self, std::uint32_t to, const char* why) {
  auto& s = self->state;
  auto from = s.target;
  if (to == from || s.stopping || s.stopped) return;
  s.target = to;
  s.spec.counters->instances = to;
  if (to > from) {
    for (auto live = static_cast<std::uint32_t>(s.born.size()); live < to; ++live) spawn_instance(self);
    auto more = to - from;
    auto repaid = std::min(more, s.credit_debt);
    s.credit_debt -= repaid;
    if (more > repaid && s.sid) {
      s.spec.conn->grant_credit(s.sid, more - repaid);
      s.spec.counters->credit.fetch_add(more - repaid, std::memory_order_relaxed);
    }
  } else {
    s.credit_debt += from - to;
    std::vector<caf::actor> keep;
    for (auto& a : s.idle) {
      if (s.born.size() > to) retire(self, a);
      else keep.push_back(a);
    }
    s.idle = std::move(keep);
  }
  note_scale(self, from, to, why);
  dispatch(self);
}

// A message for a function scaled to zero: one instance, now. Its first
// run is timed from the message's arrival at the node (a cold start).
void cold_start(pool_actor* self) {
  auto& s = self->state;
  if (s.target > 0 || s.stopping || s.stopped || s.waiting.empty()) return;
  ++s.spec.counters->cold_starts;
  s.cold_pending = true;
  scale_to(self, 1, "cold start");
}

caf::behavior pool(pool_actor* self, pool_spec spec) {
  self->state.spec = std::move(spec);
  self->state.fn_name = self->state.spec.service + "." + self->state.spec.fn->name();
  if (self->state.spec.spans) self->state.span_name = self->state.spec.spans->intern(self->state.fn_name);
  if (auto on_exit = self->state.spec.on_exit)
    self->attach_functor([on_exit] { on_exit(); });
  const auto& scale = self->state.spec.fn->options().scale;
  self->state.target = scale.min;
  for (std::uint32_t i = 0; i < scale.min; ++i) spawn_instance(self);
  if (scale.min < scale.max) {
    self->state.scaler.emplace(scale);
    self->delayed_send(self, scale.tick, tick_atom::value);
  }
  self->set_down_handler([self](caf::down_msg& dm) { instance_down(self, dm); });
  return {
    [self](batch_atom, const delivery_batch& b) {
      auto& s = self->state;
      // Each delivery used one credit of its subscription's.
      auto sid = s.spec.counters->sid.load(std::memory_order_relaxed);
      auto of_sid = std::count_if(b->items.begin(), b->items.end(),
                                  [sid](const delivery& d) { return d.sid == sid; });
      s.spec.counters->credit.fetch_sub(of_sid, std::memory_order_relaxed);
      for (auto& d : b->items) {
        if (s.stopped || s.stopping) {
          hand_back(self, d, "function stopping");
          continue;
        }
        s.sid = d.sid;
        if (d.count > 1) s.spec.counters->redeliveries.fetch_add(1, std::memory_order_relaxed);
        s.waiting.emplace_back(b, &d); // shares the block
        ++s.taken_since_tick;
      }
      if (s.target == 0) cold_start(self);
      dispatch(self);
    },
    // One demand sample for the autoscaler.
    [self](tick_atom) {
      auto& s = self->state;
      if (s.stopping) return;
      if (!s.stopped) {
        // Demand: messages at work or waiting now; at least 1 if any came
        // in since the last tick (work that starts and ends between ticks
        // is demand too: idle_grace counts from the last message).
        auto demand = static_cast<std::uint32_t>(s.busy.size() + s.waiting.size());
        if (demand == 0 && s.taken_since_tick > 0) demand = 1;
        s.taken_since_tick = 0;
        auto d = s.scaler->sample(s.target, demand, steady::now());
        scale_to(self, d.instances, d.why);
      }
      announce_scaling(self);
      self->delayed_send(self, s.spec.fn->options().scale.tick, tick_atom::value);
    },
    [self](done_atom) {
      auto& s = self->state;
      auto sender = caf::actor_cast<caf::actor>(self->current_sender());
      auto it = s.busy.find(sender.address());
      if (it == s.busy.end()) return;
      auto run = it->second.run;
      s.handed -= run->items.size();
      s.busy.erase(it);
      if (run->crash) return run_ended(self, run, run->crash, sender, sender.address());
      settle_finished(self, *run);
      freed(self, sender);
      dispatch(self);
      credit_if_dry(self);
      maybe_quit(self);
    },
    // The last confirm of a deferred reliable invocation is in.
    [self](published_atom, const tracker_ptr& t) {
      auto& s = self->state;
      auto it = s.deferred.find(t.get());
      if (it == s.deferred.end()) return;
      auto d = std::move(it->second);
      s.deferred.erase(it);
      if (auto code = t->failed.load(std::memory_order_relaxed); code != 0) {
        unconfirmed_publish(self, *d, code);
      } else {
        succeeded(self);
        s.spec.conn->ack(d->sid, d->seq);
        finished(self, *d);
      }
      credit_if_dry(self);
      maybe_quit(self);
    },
    // A restart after a backoff (the service's supervisor core decided).
    [self](spawn_atom, std::uint64_t epoch) {
      auto& s = self->state;
      if (s.stopping || s.stopped || epoch != s.epoch) return; // stopped meanwhile
      ++s.spec.counters->restarts;
      spawn_instance(self);
      dispatch(self);
    },
    [self](recycle_atom, bool replace) {
      recycle(self, replace);
      dispatch(self);
    },
    [self](escalate_atom) {
      wind_down(self, "service stopped: past its restart intensity", group_stay::stay);
    },
    [self](revive_atom) {
      auto& s = self->state;
      if (s.stopping || !s.stopped) return;
      s.stopped = false;
      s.spec.counters->stopped = false;
      s.replace_retired = true;
      s.owed_credit = 0;
      s.credit_debt = 0;
      s.target = s.spec.fn->options().scale.min;
      for (std::uint32_t i = 0; i < s.target; ++i) spawn_instance(self);
      if (s.sid) { // still in its group (escalated): its credit again
        const auto& o = s.spec.fn->options();
        s.spec.conn->set_credit(s.sid, o.scale.min + o.prefetch);
        s.spec.counters->sid = s.sid;
        s.spec.counters->credit = o.scale.min + o.prefetch;
      } else {
        s.sid = subscribe_pool(s.spec, caf::actor{self});
      }
    },
    [self](stop_atom) {
      auto& s = self->state;
      s.stopping = true;
      // The broker sends nothing more; what never started here goes back
      // for another member (with credit left, a lone member would get it
      // back and NACK it again until it was dead-lettered).
      if (auto sid = s.spec.counters->sid.load()) {
        s.spec.conn->withdraw_credit(sid);
        s.spec.counters->credit = 0;
      }
      for (auto& d : s.waiting) hand_back(self, *d, "node stopping");
      s.waiting.clear();
      note_gauges(self);
      self->delayed_send(self, s.spec.confirm_grace, grace_atom::value);
      maybe_quit(self);
    },
    // A stop's grace is over: what waits for confirms (its consumer may be
    // a function of this node, stopped too, or failing), now or later,
    // stays unacked, and the UNSUB after the pool ends gives it back to
    // the broker. Run again elsewhere, it publishes under the same msg
    // ids, which the broker's dedup window answers without passing them on.
    [self](grace_atom) {
      auto& s = self->state;
      if (!s.stopping) return;
      s.grace_over = true;
      s.spec.counters->handed_back.fetch_add(s.deferred.size(), std::memory_order_relaxed);
      s.deferred.clear();
      maybe_quit(self);
    },
  };
}

void post_batch(const caf::actor_addr& pool, std::span<const message_view> batch) {
  auto p = caf::actor_cast<caf::actor>(pool);
  if (!p) return; // ended: unacked, the broker redelivers elsewhere
  // One copy of the batch: the deliveries in one vector, their strings in
  // one buffer (three allocations per batch, none per message).
  std::size_t total = 0;
  for (auto& v : batch)
    total += v.topic.size() + v.payload.size() + v.msg_id.size() + v.reply_to.size()
             + v.traceparent.size();
  auto out = std::make_shared<delivery_block>();
  out->bytes = std::make_unique_for_overwrite<char[]>(total);
  out->items.resize(batch.size());
  char* at = out->bytes.get();
  auto now = steady_ns();
  auto copy = [&at](std::string_view from) {
    if (!from.empty()) std::memcpy(at, from.data(), from.size());
    std::string_view to{at, from.size()};
    at += from.size();
    return to;
  };
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const auto& v = batch[i];
    auto& d = out->items[i];
    d.sid = v.sid;
    d.seq = v.seq;
    d.count = v.delivery;
    d.deadline_ns = v.deadline_ns;
    d.arrived_ns = now;
    d.topic = copy(v.topic);
    d.payload = copy(v.payload);
    d.msg_id = copy(v.msg_id);
    d.reply_to = copy(v.reply_to);
    d.traceparent = copy(v.traceparent);
  }
  caf::anon_send(p, batch_atom::value, delivery_batch{std::move(out)});
}

} // namespace

caf::actor spawn_pool(caf::actor_system& sys, pool_spec spec) {
  return sys.spawn(pool, std::move(spec));
}

void post_published(const caf::actor& pool, tracker_ptr t) {
  caf::anon_send(pool, published_atom::value, std::move(t));
}

} // namespace plexus::detail
