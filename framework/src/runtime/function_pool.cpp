// SPDX-License-Identifier: Apache-2.0
// The function pool's actor: a thin shell around its sans-IO core
// (pool_core.hpp). It feeds the core what arrives (batches from the
// connector, instances' results and ends, ticks, confirms, the service's
// orders) and carries out the core's commands: the broker side through the
// client, instances as CAF actors, events and orders to the service.
#include "function_pool.hpp"
#include "crash_report.hpp"
#include "instance.hpp"
#include "pool_core.hpp"
#include "span_sink.hpp"

#include <cstring>
#include <optional>
#include <unordered_map>
#include <variant>

#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>

namespace plexus::detail {

namespace {

using batch_atom = caf::atom_constant<caf::atom("batch")>;
using spawn_atom = caf::atom_constant<caf::atom("spawn")>;
using published_atom = caf::atom_constant<caf::atom("published")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
// self -> self, a stop's confirm grace is over
using grace_atom = caf::atom_constant<caf::atom("grace")>;
// self -> self, is the downstream topic the pool waits for still paused?
using probe_atom = caf::atom_constant<caf::atom("dsprobe")>;
using steady = std::chrono::steady_clock;

std::string crash_text(const caf::error& reason) {
  const auto& ctx = reason.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0)) return ctx.get_as<std::string>(0);
  return caf::to_string(reason);
}

bool is_crash(const caf::error& reason) {
  return reason && reason != caf::make_error(caf::exit_reason::normal);
}

struct pool_state {
  pool_spec spec;
  std::optional<pool_core> core;
  // Instances by the core's ids, and back: held strongly (one waiting on a
  // request has an empty mailbox, and CAF ends an actor nobody holds) until
  // their down message.
  std::unordered_map<instance_id, caf::actor> actors;
  std::unordered_map<caf::actor_addr, instance_id> ids;
  std::string fn_name; // "service.function"
  const std::string* span_name = nullptr; // fn_name, interned by the node's span sink
  static inline const char* name = "plexus.pool";
};

using pool_actor = caf::stateful_actor<pool_state>;

void post_batch(const caf::actor_addr& pool, std::span<const message_view> batch);

template <class... F>
struct overloaded : F... {
  using F::operator()...;
};
template <class... F>
overloaded(F...) -> overloaded<F...>;

// Carries out what the core asked for, in order.
void carry_out(pool_actor* self) {
  auto& s = self->state;
  auto* conn = s.spec.conn;
  for (auto& cmd : s.core->take_commands()) {
    std::visit(overloaded{
      [&](pool_cmd::ack& c) { conn->ack(c.sid, c.seq, c.count); },
      [&](pool_cmd::nack& c) { conn->nack(c.sid, c.seq, c.action, c.delay_ms, c.reason); },
      [&](pool_cmd::grant_credit& c) { conn->grant_credit(c.sid, c.n); },
      [&](pool_cmd::set_credit& c) { conn->set_credit(c.sid, c.n); },
      [&](pool_cmd::unsubscribe& c) { conn->unsubscribe(c.sid); },
      [&](pool_cmd::subscribe&) { s.core->subscribed(subscribe_pool(s.spec, caf::actor{self})); },
      [&](pool_cmd::spawn& c) {
        auto inst = spawn_instance_of(self, *s.spec.fn, conn, &s.fn_name, s.spec.spans, s.span_name,
                                      &s.spec.counters->duration, s.spec.disp);
        self->monitor(inst);
        s.ids.emplace(inst.address(), c.id);
        s.actors.emplace(c.id, std::move(inst));
      },
      [&](pool_cmd::retire& c) {
        if (auto it = s.actors.find(c.id); it != s.actors.end())
          self->send_exit(it->second, caf::exit_reason::user_shutdown);
      },
      [&](pool_cmd::run& c) {
        if (auto it = s.actors.find(c.id); it != s.actors.end())
          self->send(it->second, run_atom::value, std::move(c.work));
      },
      [&](pool_cmd::event& c) {
        c.e.node = conn->node_id();
        publish_event(conn, c.e);
      },
      [&](pool_cmd::scaled& c) {
        c.e.node = conn->node_id();
        // Best effort, as supervision events: a full outbox never blocks the pool.
        static_cast<void>(conn->try_publish("$SYS.scale." + s.spec.service + "." + s.spec.fn->name(),
                                            encode_payload(c.e)));
      },
      [&](pool_cmd::recovered&) { self->send(s.spec.service_actor, recovered_atom::value); },
      [&](pool_cmd::escalate& c) {
        self->send(s.spec.service_actor, escalate_atom::value, s.spec.index, c.why, c.intensity);
      },
      [&](pool_cmd::recycle_siblings& c) {
        self->send(s.spec.service_actor, recycle_atom::value, c.functions, s.spec.index, c.why);
      },
      [&](pool_cmd::restart_later& c) { self->delayed_send(self, c.delay, spawn_atom::value, c.epoch); },
      [&](pool_cmd::quit&) { self->quit(); },
      [&](pool_cmd::probe_downstream& c) { self->delayed_send(self, c.delay, probe_atom::value, c.episode); },
      [&](pool_cmd::refuse& c) { // as a failed handler's answer (instance.cpp's end_span)
        std::string storage;
        auto headers = wire::pack_string_map(
          {{failure_header, to_string(span_status::rejected)}, {failure_from_header, s.fn_name},
           {failure_cause_header, c.why}},
          storage);
        publish_options po;
        po.headers = headers;
        conn->publish(c.reply_to, {}, po);
      },
    }, cmd);
  }
}

// An instance that crashed as an actor (a raw actor function's threw, or
// something outside a handler failed; a handler's crash the instance
// reports itself) gets its line: the message it had in hand, and the
// trace that message carried.
void report_down(const pool_state& s, instance_id id, const std::string& why) {
  std::string_view msg_id, trace;
  if (auto* run = s.core->run_of(id); run && run->finished < run->items.size()) {
    const auto& d = *run->items[run->finished];
    msg_id = d.msg_id;
    if (d.traceparent.size() >= 35 && d.traceparent.substr(0, 3) == "00-")
      trace = d.traceparent.substr(3, 32); // W3C: 00-<trace id>-<span id>-<flags>
  }
  report_crash(s.fn_name, msg_id, trace, why);
}

// An instance actor ended (killed, or failed outside a handler).
void instance_down(pool_actor* self, const caf::down_msg& dm) {
  auto& s = self->state;
  auto it = s.ids.find(dm.source);
  if (it == s.ids.end()) return;
  auto id = it->second;
  s.ids.erase(it);
  s.actors.erase(id);
  std::optional<std::string> why;
  if (is_crash(dm.reason)) {
    why = crash_text(dm.reason);
    // Not the pool's or its supervisor's own stop of the instance.
    if (dm.reason != caf::make_error(caf::exit_reason::user_shutdown) &&
        dm.reason != caf::make_error(caf::exit_reason::kill))
      report_down(s, id, *why);
  }
  s.core->instance_down(id, why, steady::now());
  carry_out(self);
}

caf::behavior pool(pool_actor* self, pool_spec spec) {
  auto& s = self->state;
  s.spec = std::move(spec);
  s.fn_name = s.spec.service + "." + s.spec.fn->name();
  if (s.spec.spans) s.span_name = s.spec.spans->intern(s.fn_name);
  if (auto on_exit = s.spec.on_exit) self->attach_functor([on_exit] { on_exit(); });
  const auto& o = s.spec.fn->options();
  s.core.emplace(pool_core_spec{s.spec.service, s.spec.fn->name(), s.spec.index, o, s.spec.counters,
                                s.spec.sup});
  s.core->start(steady::now());
  carry_out(self);
  if (o.scale.min < o.scale.max) self->delayed_send(self, o.scale.tick, tick_atom::value);
  self->set_down_handler([self](caf::down_msg& dm) { instance_down(self, dm); });
  auto fed = [self](auto&& input) {
    input(*self->state.core);
    carry_out(self);
  };
  return {
    [fed](batch_atom, const delivery_batch& b) { fed([&](pool_core& c) { c.take(b, steady::now()); }); },
    // One demand sample for the autoscaler.
    [self, fed](tick_atom) {
      fed([](pool_core& c) { c.tick(steady::now()); });
      auto phase = self->state.core->phase();
      if (phase == pool_phase::stopping || phase == pool_phase::past_grace) return;
      self->delayed_send(self, self->state.spec.fn->options().scale.tick, tick_atom::value);
    },
    [self, fed](done_atom) {
      auto sender = caf::actor_cast<caf::actor_addr>(self->current_sender());
      auto it = self->state.ids.find(sender);
      if (it == self->state.ids.end()) return;
      const instance_id id = it->second;
      fed([id](pool_core& c) { c.run_done(id, steady::now()); });
    },
    // The last confirm of a deferred reliable invocation is in.
    [fed](published_atom, const tracker_ptr& t) { fed([&](pool_core& c) { c.published(t.get()); }); },
    // A restart after a backoff (the service's supervisor core decided).
    [fed](spawn_atom, std::uint64_t epoch) { fed([epoch](pool_core& c) { c.restart_due(epoch); }); },
    [fed](recycle_atom, bool replace) { fed([replace](pool_core& c) { c.recycle(replace); }); },
    [fed](escalate_atom) { fed([](pool_core& c) { c.escalate(); }); },
    [fed](revive_atom) { fed([](pool_core& c) { c.revive(); }); },
    [self, fed](stop_atom) {
      self->delayed_send(self, self->state.spec.confirm_grace, grace_atom::value);
      fed([](pool_core& c) { c.stop(); });
    },
    [fed](grace_atom) { fed([](pool_core& c) { c.grace_over(); }); },
    // Flow control downstream: the client knows whether the broker still
    // pauses the topic a handler found paused (it never blocks to say).
    [self, fed](probe_atom, std::uint64_t episode) {
      auto& st = self->state;
      bool still = st.core->downstream_paused() && st.spec.conn->paused(st.core->paused_topic());
      fed([&](pool_core& c) { c.downstream_probed(episode, still, steady::now()); });
    },
  };
}

void post_batch(const caf::actor_addr& pool, std::span<const message_view> batch) {
  auto p = caf::actor_cast<caf::actor>(pool);
  if (!p) return; // ended: unacked, the broker redelivers elsewhere
  // The views die with this callback: one owned copy of the batch.
  std::vector<delivery> views(batch.size());
  auto now = steady_ns();
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const auto& v = batch[i];
    views[i] = delivery{v.sid, v.seq, v.delivery, v.deadline_ns, now,
                        v.topic, v.payload, v.msg_id, v.reply_to, v.traceparent};
  }
  caf::anon_send(p, batch_atom::value, copy_deliveries(std::move(views)));
}

} // namespace

std::uint32_t subscribe_pool(const pool_spec& spec, const caf::actor& pool_handle) {
  auto pool = pool_handle.address(); // weak: the connector must not keep the pool alive
  const auto& o = spec.fn->options();
  subscribe_options so;
  so.queue = o.queue.empty() ? spec.service + "." + spec.fn->name() : o.queue;
  so.acked = true;
  so.credit = o.scale.min + o.prefetch; // one more granted per finished message
  so.ack_wait_ms = o.ack_wait_ms;
  // The retry policy's tries, within max_deliver, and one more delivery for
  // a rate-limited function's wait for its turn (delivery_limit): past it
  // the broker dead-letters.
  so.max_deliver = delivery_limit(o);
  auto sid = spec.conn->subscribe_batch(
    o.pattern, [pool](std::span<const message_view> b) { post_batch(pool, b); }, so);
  spec.counters->sid = sid;
  spec.counters->credit = so.credit;
  return sid;
}


caf::actor spawn_pool(caf::actor_system& sys, pool_spec spec) {
  return sys.spawn(pool, std::move(spec));
}

void post_published(const caf::actor& pool, tracker_ptr t) {
  caf::anon_send(pool, published_atom::value, std::move(t));
}

} // namespace plexus::detail
