// SPDX-License-Identifier: Apache-2.0
#include "function_pool.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <exception>
#include <optional>
#include <unordered_map>

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
using run_atom = caf::atom_constant<caf::atom("run")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;
using steady = std::chrono::steady_clock;

enum outcome : std::uint8_t { ok = 0, failed = 1, rejected = 2 };

// ---------------------------------------------------------------- instance

// Runs the handler for one message at a time. An escaping exception kills
// the instance (its text becomes the exit reason); the pool decides.
caf::behavior instance(caf::event_based_actor* self, caf::actor pool, const raw_handler* handler,
                       client* conn) {
  self->set_exception_handler([](caf::scheduled_actor*, std::exception_ptr& p) -> caf::error {
    try {
      std::rethrow_exception(p);
    } catch (const std::exception& e) {
      return caf::make_error(caf::sec::runtime_error, std::string{e.what()});
    } catch (...) {
      return caf::make_error(caf::sec::runtime_error, std::string{"unknown exception"});
    }
  });
  return {
    [=](run_atom, const work_run_ptr& run) {
      for (auto& d : run->items) {
        context ctx{*conn, *d};
        auto r = (*handler)(d->payload, ctx); // may throw: the pool sees how far we got
        auto kind = r.ok() ? outcome::ok : r.rejected() ? outcome::rejected : outcome::failed;
        run->outcomes.emplace_back(static_cast<std::uint8_t>(kind), r.why());
        ++run->finished;
      }
      self->send(pool, done_atom::value);
    },
  };
}

std::string crash_text(const caf::error& reason) {
  const auto& ctx = reason.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0)) return ctx.get_as<std::string>(0);
  return caf::to_string(reason);
}

// ---------------------------------------------------------------- pool

struct pool_state {
  pool_spec spec;
  std::vector<caf::actor> idle;
  std::unordered_map<caf::actor_addr, work_run_ptr> busy;
  std::deque<delivery_ptr> waiting;
  // Fresh messages (first delivery) that crashed since the last success,
  // within the intensity window.
  std::deque<std::pair<steady::time_point, std::string>> crashes;
  std::uint32_t sid = 0;
  std::uint32_t owed_credit = 0; // finished messages not yet credited back
  bool stopping = false; // draining for a node stop
  bool stopped = false;  // past restart intensity
  static inline const char* name = "plexus.pool";
};

using pool_actor = caf::stateful_actor<pool_state>;

void spawn_instance(pool_actor* self) {
  auto& s = self->state;
  auto inst = self->spawn(instance, caf::actor{self}, &s.spec.fn->handler(), s.spec.conn);
  self->monitor(inst);
  s.idle.push_back(inst);
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
    s.busy.emplace(inst.address(), run);
    self->send(inst, run_atom::value, run);
  }
}

void maybe_quit(pool_actor* self) {
  auto& s = self->state;
  if ((s.stopping || s.stopped) && s.busy.empty()) {
    for (auto& a : s.idle) self->send_exit(a, caf::exit_reason::user_shutdown);
    s.idle.clear();
    if (s.stopping) self->quit();
  }
}

// One message is finished: the broker may send one more. Credit goes back
// in batches of a quarter of the prefetch (one CREDIT per message cost more
// than the message), and at once when the pool has run dry.
void finished(pool_actor* self, const delivery& d) {
  auto& s = self->state;
  if (s.stopping || s.stopped) return;
  ++s.owed_credit;
  auto batch = std::max<std::uint32_t>(1, s.spec.fn->options().prefetch / 4);
  if (s.owed_credit >= batch || (s.waiting.empty() && s.busy.empty())) {
    s.spec.conn->grant_credit(d.sid, s.owed_credit);
    s.owed_credit = 0;
  }
}

void escalate(pool_actor* self) {
  auto& s = self->state;
  s.stopped = true;
  s.spec.counters->stopped = true;
  s.spec.conn->unsubscribe(s.sid); // other nodes' members take the work
  // What still waits here was never started: hand it back at once.
  for (auto& d : s.waiting) s.spec.conn->nack(d->sid, d->seq, wire::nack_action::requeue, 0, "function stopped");
  s.waiting.clear();
}

// Which message crashed, across redeliveries: its msg id, else its content.
std::string message_key(const delivery& d) {
  if (!d.msg_id.empty()) return d.msg_id;
  return d.topic + '\0' + std::to_string(std::hash<std::string>{}(d.payload));
}

void crashed(pool_actor* self, const delivery_ptr& d, const std::string& why) {
  auto& s = self->state;
  auto& c = *s.spec.counters;
  ++c.crashes;
  auto key = message_key(*d);
  auto now = steady::now();
  while (!s.crashes.empty() && now - s.crashes.front().first > s.spec.supervision.within)
    s.crashes.pop_front();
  // A message that has crashed on `poison_after` deliveries is quarantined
  // on $DLQ. Poison is a message's fault, a broken function crashes on
  // everything: intensity counts only crashes on a message's first
  // delivery (a redelivered message is a poison suspect, whatever else is
  // in flight), and a success clears the count. So poison never stops the
  // function, and more than max_restarts fresh messages crashing in a row
  // within the window does.
  if (d->count == 1 && std::none_of(s.crashes.begin(), s.crashes.end(),
                                    [&](const auto& e) { return e.second == key; }))
    s.crashes.emplace_back(now, key);
  if (d->count >= s.spec.fn->options().poison_after) {
    ++c.quarantined;
    s.spec.conn->nack(d->sid, d->seq, wire::nack_action::dead_letter, 0,
                      "crashed on " + std::to_string(d->count) + " deliveries: " + why);
  } else {
    s.spec.conn->nack(d->sid, d->seq, wire::nack_action::requeue, 0, "crash: " + why);
  }
  if (s.crashes.size() > s.spec.supervision.max_restarts) escalate(self);
  finished(self, *d);
}

// ACKs or NACKs what a run finished; with `crash` (the instance died), the
// item it was on crashed and the rest never started: they wait here again,
// in order, for the next instance (the broker never sees them fail).
void settle_run(pool_actor* self, const work_run& run, std::optional<std::string> crash) {
  auto& s = self->state;
  auto& c = *s.spec.counters;
  for (std::size_t i = run.items.size(); i-- > run.finished + 1;) {
    const auto& d = run.items[i];
    if (s.stopping || s.stopped) {
      s.spec.conn->nack(d->sid, d->seq, wire::nack_action::requeue, 0, "function stopping");
      finished(self, *d);
    } else {
      s.waiting.push_front(d);
    }
  }
  for (std::size_t i = 0; i < run.items.size() && i <= run.finished; ++i) {
    const auto& d = run.items[i];
    if (i < run.finished) {
      const auto& [kind, why] = run.outcomes[i];
      switch (kind) {
        case outcome::ok:
          ++c.ok;
          s.crashes.clear(); // a success: the function works
          s.spec.conn->ack(d->sid, d->seq);
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
    } else if (crash) { // i == run.finished: the one it died on
      crashed(self, d, *crash);
    }
  }
}

caf::behavior pool(pool_actor* self, pool_spec spec) {
  self->state.spec = std::move(spec);
  for (std::uint32_t i = 0; i < self->state.spec.fn->options().instances; ++i) spawn_instance(self);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& s = self->state;
    std::erase_if(s.idle, [&](const caf::actor& a) { return a.address() == dm.source; });
    auto it = s.busy.find(dm.source);
    if (it != s.busy.end()) {
      auto run = it->second;
      s.busy.erase(it);
      settle_run(self, *run, crash_text(dm.reason));
    }
    if (!s.stopping && !s.stopped) {
      ++s.spec.counters->restarts;
      spawn_instance(self);
      dispatch(self);
    }
    maybe_quit(self);
  });
  return {
    [self](batch_atom, const delivery_batch& b) {
      auto& s = self->state;
      for (auto& d : *b) {
        s.sid = d->sid;
        if (s.stopped || s.stopping) {
          s.spec.conn->nack(d->sid, d->seq, wire::nack_action::requeue, 0, "function stopping");
          continue;
        }
        s.waiting.push_back(d);
      }
      dispatch(self);
    },
    [self](done_atom) {
      auto& s = self->state;
      auto sender = caf::actor_cast<caf::actor>(self->current_sender());
      auto it = s.busy.find(sender.address());
      if (it == s.busy.end()) return;
      auto run = it->second;
      s.busy.erase(it);
      settle_run(self, *run, {});
      if (s.stopped || s.stopping) self->send_exit(sender, caf::exit_reason::user_shutdown);
      else s.idle.push_back(sender);
      dispatch(self);
      maybe_quit(self);
    },
    [self](stop_atom) {
      auto& s = self->state;
      s.stopping = true;
      // Never started here: back to the broker, for another member.
      for (auto& d : s.waiting)
        s.spec.conn->nack(d->sid, d->seq, wire::nack_action::requeue, 0, "node stopping");
      s.waiting.clear();
      maybe_quit(self);
    },
  };
}

} // namespace

caf::actor spawn_pool(caf::actor_system& sys, pool_spec spec) {
  return sys.spawn(pool, std::move(spec));
}

void post_batch(const caf::actor& p, std::span<const message_view> batch) {
  auto out = std::make_shared<std::vector<delivery_ptr>>();
  out->reserve(batch.size());
  for (auto& v : batch) {
    auto d = std::make_shared<delivery>();
    d->sid = v.sid;
    d->seq = v.seq;
    d->count = v.delivery;
    d->topic = v.topic;
    d->payload = v.payload;
    d->msg_id = v.msg_id;
    d->reply_to = v.reply_to;
    out->push_back(std::move(d));
  }
  caf::anon_send(p, batch_atom::value, delivery_batch{std::move(out)});
}

void post_stop(const caf::actor& p) { caf::anon_send(p, stop_atom::value); }

} // namespace plexus::detail
