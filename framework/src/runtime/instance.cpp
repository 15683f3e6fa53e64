// SPDX-License-Identifier: Apache-2.0
#include "instance.hpp"

#include <algorithm>
#include <exception>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/spawn_options.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>

#include "crash_report.hpp"
#include "dispatcher.hpp"
#include "plexus/actor.hpp"
#include "span_sink.hpp"

namespace plexus::detail {

namespace {

// ---------------------------------------------------------------- instance

using reply_atom = caf::atom_constant<caf::atom("reply")>;
// dispatcher thread -> instance: the handlers ran; (worked, run ended?)
using worked_atom = caf::atom_constant<caf::atom("worked")>;

// What the handlers of an instance work with. Apart from the actor's
// state (on the heap, shared) so that a dispatcher's thread can run them
// while the actor only waits for the end (see dispatcher.hpp).
struct instance_state {
  work_run_ptr run; // the run in hand
  invocation inv;   // what its context reaches: a pending request
  std::uint32_t poison_after = 0; // a crash on this delivery is a quarantine
  const std::function<void()>* init = nullptr; // the function's init hook
  bool initialized = false;
};

struct instance_box {
  std::shared_ptr<instance_state> st = std::make_shared<instance_state>();
  caf::actor user; // a raw-actor function's own actor
  // A function with a dispatcher of its own: its handlers run there, and
  // while they do (`away`) the actor touches nothing of `st`: a reply that
  // comes meanwhile waits in `stashed`.
  dispatcher* disp = nullptr;
  bool away = false;
  std::vector<std::pair<std::uint64_t, reply_ptr>> stashed;
  static inline const char* name = "plexus.instance";
};

using instance_actor = caf::stateful_actor<instance_box>;

std::uint64_t wall_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count());
}

// A span of this instance's function that ends at `end_ns`.
span_record record_of(instance_state& st, const delivery& d, std::uint64_t start_ns,
                      std::uint64_t end_ns, span_status status) {
  ensure_ids(st.inv);
  span_record s;
  s.trace_hi = st.inv.trace_hi;
  s.trace_lo = st.inv.trace_lo;
  s.start_ns = start_ns;
  s.duration_ns = end_ns > start_ns ? end_ns - start_ns : 0;
  s.name = st.inv.span_name;
  s.delivery = d.count;
  s.status = status;
  return s;
}

// How the item's invocation ended, and why: from its result (or the
// exception's text in `crash`), its deadline and its last failed request.
span_status classify(const instance_state& st, const delivery& d, const result<void>* r,
                     const std::string* crash, std::string& cause, std::string& callee) {
  if (st.inv.overloaded) { // downstream full: no fault of this message's
    cause = "overloaded: " + st.inv.paused_topic + " is paused (its consumers are full); the message "
            "waits in the broker and this function takes no more until it is resumed";
    return span_status::rejected;
  }
  if (crash) {
    if (d.count >= st.poison_after) {
      cause = "poison: crashed on " + std::to_string(d.count) + " deliveries: " + *crash;
      return span_status::dead_lettered;
    }
    cause = *crash;
    return span_status::crash;
  }
  if (r->rejected()) {
    cause = r->why();
    return span_status::dead_lettered;
  }
  if (!r->ok() && st.inv.request_failure != span_status::ok) {
    cause = st.inv.request_cause; // the request it made failed, and so did it
    callee = st.inv.request_callee;
    auto f = st.inv.request_failure;
    return f == span_status::no_responders || f == span_status::rejected || f == span_status::circuit_open
             ? f
             : span_status::downstream;
  }
  if (d.deadline_ns != 0 && wall_ns() > d.deadline_ns) {
    cause = "ran " + std::to_string((wall_ns() - d.deadline_ns) / 1'000'000) + " ms past its deadline";
    if (!r->ok()) cause += ": " + r->why();
    return span_status::timeout;
  }
  if (!r->ok()) {
    cause = r->why();
    return span_status::error;
  }
  return span_status::ok;
}

// The item's invocation ended: its span goes out, and a request whose
// handler failed gets the failure as its answer at once (the requester
// learns the cause instead of waiting out its timeout).
void end_span(instance_state& st, client& conn, const delivery& d, const result<void>* r,
              const std::string* crash) {
  std::string cause, callee;
  auto status = classify(st, d, r, crash, cause, callee);
  auto end_ns = wall_ns();
  if (st.inv.latency) st.inv.latency->record(end_ns - st.inv.start_ns);
  bool failed = crash || !r->ok() || st.inv.overloaded;
  if (failed && !d.reply_to.empty() && st.inv.name) {
    std::string storage;
    auto how = to_string(status);
    auto headers = wire::pack_string_map(
      {{failure_header, how}, {failure_from_header, *st.inv.name}, {failure_cause_header, cause}},
      storage);
    publish_options o;
    o.headers = headers;
    conn.publish(d.reply_to, {}, o);
  }
  // An ok span of a trace not sampled is never built.
  if (!st.inv.spans || (status == span_status::ok && !st.inv.sampled)) return;
  // An error that the message will be tried again for says when: the
  // span's delivery is this try's, its cause ends with the next one's delay.
  if (failed && !crash && !r->rejected() && !st.inv.overloaded && st.inv.opts) {
    auto next = decide_retry(*st.inv.opts, d.count, st.inv.jitter, r->retry_after());
    if (next.retry)
      cause += " (try " + std::to_string(d.count) + " of " + std::to_string(delivery_limit(*st.inv.opts)) +
               ", next in " + std::to_string(next.delay.count()) + " ms)";
  }
  auto s = record_of(st, d, st.inv.start_ns, end_ns, status);
  s.span_id = st.inv.span;
  s.parent_id = st.inv.parent;
  s.cold_start = st.inv.cold;
  st.inv.spans->record(s, d.topic, d.msg_id, cause, callee);
}

// A request the handler made has its answer: the request's span ends, and
// a failure is remembered as the cause should the handler fail on it.
void end_request_span(instance_state& st, const delivery& d, const reply& r) {
  auto status = span_status::ok;
  std::string cause, callee = st.inv.request_topic;
  auto ms = (wall_ns() - st.inv.request_start_ns) / 1'000'000;
  switch (r.code) {
    case 0:
      if (r.fallback) { // the breaker refused it: the callee never saw it
        status = span_status::circuit_open;
        cause = r.text;
      }
      break;
    case status_circuit_open:
      status = span_status::circuit_open;
      cause = r.text;
      break;
    case status_timeout:
      status = span_status::timeout;
      cause = "no reply from " + st.inv.request_topic + " within " + std::to_string(ms) + " ms";
      break;
    case code_of(plexus::status::no_responders):
      status = span_status::no_responders;
      cause = "nobody serves " + st.inv.request_topic;
      break;
    case code_of(plexus::status::overloaded):
    case status_outbox_full:
      status = span_status::rejected;
      cause = std::string{"overloaded on the way to "} + st.inv.request_topic;
      break;
    case status_failed:
      status = span_status::downstream;
      callee = r.from;
      cause = r.failure + " in " + r.from + ": " + r.text;
      break;
    default:
      status = span_status::error;
      cause = std::string{status_text(r.code)} + (r.text.empty() ? "" : ": " + r.text);
      break;
  }
  if (status != span_status::ok && !r.fallback) {
    st.inv.request_failure = status;
    st.inv.request_cause = cause;
    st.inv.request_callee = callee;
  }
  if (!st.inv.spans || (status == span_status::ok && !st.inv.sampled)) return;
  auto s = record_of(st, d, st.inv.request_start_ns, wall_ns(), status);
  s.request = true;
  s.span_id = st.inv.request_span;
  s.parent_id = st.inv.span;
  st.inv.spans->record(s, st.inv.request_topic, d.msg_id, cause, callee);
}

// Records a handler's (or continuation's) outcome for the item in hand;
// false when it waits on a request.
bool record(instance_state& st, const result<void>& r) {
  if (r.pending()) return false;
  st.inv.then = nullptr; // a request whose result was not returned is dropped
  auto kind = st.inv.overloaded ? outcome::overloaded
              : r.ok()          ? outcome::ok
              : r.rejected()    ? outcome::rejected
                                : outcome::failed;
  st.run->outcomes.emplace_back(static_cast<std::uint8_t>(kind), r.why());
  if (kind == outcome::overloaded) { // the run stops here: the rest waits for the resume
    st.run->overloaded = true;
    st.run->paused_topic = st.inv.paused_topic;
  }
  if (kind == outcome::failed && r.retry_after().count() >= 0) { // the handler's own delay
    st.run->retry_after.resize(st.run->items.size(), std::chrono::milliseconds{-1});
    st.run->retry_after[st.run->finished] = r.retry_after();
  }
  if (st.inv.tracker) { // a reliable invocation published: the pool waits for the confirms
    st.run->trackers.resize(st.run->items.size());
    st.run->trackers[st.run->finished] = std::move(st.inv.tracker);
  }
  ++st.run->finished;
  return true;
}

// Runs `f` (a handler or a continuation) for the item in hand. An
// exception is the instance's crash: recorded, and the run ends there.
template <class F>
bool attempt(instance_state& st, const client& conn, F&& f, result<void>& out) {
  // A publish to a queue group the broker paused throws here instead of
  // waiting for a RESUME that may need this very thread (client.hpp).
  paused_publish_scope never_wait{paused_publish::fail, &conn};
  try {
    out = f();
    return true;
  } catch (const publish_error& e) {
    if (e.code == code_of(plexus::status::overloaded)) { // not a crash: the downstream is full
      note_overloaded(st.inv, e.topic.empty() ? std::string_view{"?"} : std::string_view{e.topic});
      out = error{e.what()};
      return true;
    }
    st.run->crash = e.what();
  } catch (const std::exception& e) {
    st.run->crash = e.what();
  } catch (...) {
    st.run->crash = "unknown exception";
  }
  st.inv.then = nullptr;
  st.inv.tracker.reset(); // its publishes' confirms settle nothing: the message is NACKed
  return false;
}

// The crash on the item in hand gets its line on stderr (rate-limited).
void report(instance_state& st, const delivery& d, const std::string& what) {
  ensure_ids(st.inv);
  if (st.inv.trace_hex.empty()) {
    append_hex(st.inv.trace_hex, st.inv.trace_hi);
    append_hex(st.inv.trace_hex, st.inv.trace_lo);
  }
  report_crash(st.inv.name ? std::string_view{*st.inv.name} : std::string_view{}, d.msg_id,
               st.inv.trace_hex, what);
}

void end_run(instance_actor* self, const caf::actor& pool) {
  self->state.st->run.reset();
  self->send(pool, done_atom::value);
}

// Runs the run's items from where it stands, up to a pending request
// (false: the reply resumes it) or the end of the run, finished or
// crashed (true: the pool hears of it).
bool work_items(instance_state& st, const raw_handler& handler, client& conn) {
  auto& run = *st.run;
  if (!st.initialized) { // a new instance: the function's init hook first
    if (st.init && *st.init) {
      auto t0 = steady_ns();
      try {
        (*st.init)();
      } catch (const std::exception& e) {
        run.crash = std::string{"init: "} + e.what();
      } catch (...) {
        run.crash = "init: unknown exception";
      }
      if (run.crash) {
        const auto& d = *run.items[run.finished];
        begin_span(st.inv, d); // the message's trace, for the line
        report(st, d, *run.crash);
        return true;
      }
      run.init_ns = static_cast<std::uint64_t>(steady_ns() - t0);
    }
    st.initialized = true;
  }
  while (run.finished < run.items.size()) {
    const auto& d = *run.items[run.finished];
    st.inv.cold = run.cold && run.finished == 0;
    if (st.inv.cold && run.started_ns == 0) {
      run.started_ns = steady_ns();
      st.inv.cold_ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, run.started_ns - d.arrived_ns));
    }
    st.inv.jitter = jitter_unit(run.jitter, run.finished);
    begin_span(st.inv, d);
    context ctx{conn, d, &st.inv};
    result<void> r;
    if (!attempt(st, conn, [&] { return handler(d.payload, ctx); }, r)) {
      report(st, d, *run.crash);
      end_span(st, conn, d, nullptr, &*run.crash);
      return true;
    }
    if (r.pending()) return false; // waits on a request
    end_span(st, conn, d, &r, nullptr);
    record(st, r);
    if (run.overloaded) return true; // the pool holds the rest until the resume
  }
  return true;
}

// The reply to the request the item in hand made (the caller checked it
// is the one awaited): the continuation, then the rest of the run.
bool resume(instance_state& st, const reply& rep, const raw_handler& handler, client& conn) {
  auto then = std::move(st.inv.then);
  st.inv.then = nullptr;
  const auto& d = *st.run->items[st.run->finished];
  end_request_span(st, d, rep);
  context ctx{conn, d, &st.inv};
  result<void> out;
  if (!attempt(st, conn, [&] { return then(rep, ctx); }, out)) {
    report(st, d, *st.run->crash);
    end_span(st, conn, d, nullptr, &*st.run->crash);
    return true;
  }
  if (out.pending()) return false; // another request
  end_span(st, conn, d, &out, nullptr);
  record(st, out);
  if (st.run->overloaded) return true;
  return work_items(st, handler, conn);
}

bool awaited(const instance_state& st, std::uint64_t token) {
  return st.run && st.inv.then && token == st.inv.token;
}

// Runs `f` (work_items or resume) on the instance's dispatcher; its end
// comes back as a message (worked_atom), on the shared scheduler.
template <class F>
void run_away(instance_actor* self, F f) {
  auto& b = self->state;
  b.away = true;
  b.disp->post([st = b.st, me = caf::actor_cast<caf::actor>(self), f = std::move(f)]() mutable {
    bool ended = f(*st);
    caf::anon_send(me, worked_atom::value, ended);
    me = caf::actor{}; // no handle of an actor outlives its message here
  });
}

// Runs the handler for one message at a time. A handler's exception ends
// the run and the pool decides: the instance holds no state of its own
// (the handler is shared and const), so a restart reuses it, and a crash
// costs about what a message does. Anything else that fails the actor
// kills it, and the pool replaces it.
caf::behavior instance(instance_actor* self, caf::actor pool, const function_builder* fn,
                       client* conn, const std::string* name, span_sink* spans,
                       const std::string* span_name, observe::latency_histogram* latency,
                       dispatcher* disp) {
  auto& st = *self->state.st;
  self->state.disp = disp;
  st.init = &fn->init_hook();
  st.inv.latency = latency;
  st.inv.spans = spans;
  st.inv.span_name = span_name;
  st.poison_after = fn->options().poison_after;
  st.inv.instance = self->address();
  st.inv.name = name;
  st.inv.reliable = fn->options().reliable;
  st.inv.pool = pool;
  st.inv.opts = &fn->options();
  const raw_handler* handler = &fn->handler();
  return {
    [=](run_atom, const work_run_ptr& run) {
      auto& b = self->state;
      b.st->run = run;
      if (b.disp)
        return run_away(self, [handler, conn](instance_state& s) { return work_items(s, *handler, *conn); });
      if (work_items(*b.st, *handler, *conn)) end_run(self, pool);
    },
    [=](reply_atom, std::uint64_t token, const reply_ptr& r) {
      auto& b = self->state;
      if (b.away) { // the handler that made the request has not returned yet
        b.stashed.emplace_back(token, r);
        return;
      }
      if (!awaited(*b.st, token)) return; // stale
      if (b.disp)
        return run_away(self, [r, handler, conn](instance_state& s) { return resume(s, *r, *handler, *conn); });
      if (resume(*b.st, *r, *handler, *conn)) end_run(self, pool);
    },
    [=](worked_atom, bool ended) {
      auto& b = self->state;
      b.away = false;
      if (ended) {
        b.stashed.clear();
        return end_run(self, pool);
      }
      auto stashed = std::move(b.stashed);
      b.stashed.clear();
      for (auto& [token, r] : stashed) {
        if (!awaited(*b.st, token)) continue;
        reply_ptr rep = r; // a copy: no lambda captures a structured binding
        return run_away(self, [rep, handler, conn](instance_state& s) { return resume(s, *rep, *handler, *conn); });
      }
    },
  };
}

// ---------------------------------------------------------------- raw actor instance

// Hands the run's next message to the user's actor and waits for its
// result (a request: the user may answer later through a promise).
void feed(instance_actor* self, const caf::actor& pool) {
  auto& st = *self->state.st;
  if (st.run->finished == st.run->items.size()) return end_run(self, pool);
  const auto& d = *st.run->items[st.run->finished];
  envelope e{std::string{d.topic},       std::string{d.payload},     std::string{d.msg_id},
             std::string{d.reply_to},    std::string{d.traceparent}, d.count,
             d.deadline_ns};
  self->request(self->state.user, caf::infinite, handle_atom::value, std::move(e))
    .then(
      [self, pool](const result<void>& r) {
        auto& s = *self->state.st;
        if (!s.run) return;
        record(s, r.pending() ? result<void>{error{"a raw actor answered pending"}} : r);
        feed(self, pool);
      },
      // The user's actor failed on this message: so does this instance,
      // and the pool counts a crash on it (a fresh actor replaces both).
      [self](caf::error& err) { self->quit(std::move(err)); });
}

// The user's actor: its behavior, with an exception a crash like a
// handler's (the text is the reason). Arguments, not captures: CAF 0.17
// dereferences a null tuple for argument-less behavior functions (UBSan).
caf::behavior user_actor(caf::event_based_actor* user, const actor_hook* hook, client* conn) {
  user->set_exception_handler([](caf::scheduled_actor*, std::exception_ptr& p) -> caf::error {
    try {
      std::rethrow_exception(p);
    } catch (const std::exception& e) {
      return caf::make_error(caf::sec::runtime_error, std::string{e.what()});
    } catch (...) {
      return caf::make_error(caf::sec::runtime_error, std::string{"unknown exception"});
    }
  });
  return hook->make(user, *conn);
}

// An instance of a raw-actor function: the user's actor runs beside it,
// linked (if either ends, so does the other, and the pool replaces both:
// a restart starts from fresh state).
caf::behavior actor_instance(instance_actor* self, caf::actor pool, const actor_hook* hook,
                             client* conn) {
  self->state.user = self->spawn<caf::linked>(user_actor, hook, conn);
  self->set_exit_handler([self](caf::exit_msg& m) { self->quit(std::move(m.reason)); });
  return {
    [=](run_atom, const work_run_ptr& run) {
      self->state.st->run = run;
      feed(self, pool);
    },
  };
}

} // namespace

caf::actor spawn_instance_of(caf::event_based_actor* pool, const function_builder& fn,
                             client* conn, const std::string* name, span_sink* spans,
                             const std::string* span_name, observe::latency_histogram* latency,
                             dispatcher* disp) {
  caf::actor self{pool};
  if (fn.actor())
    return fn.options().blocking ? pool->spawn<caf::detached>(actor_instance, self, fn.actor().get(), conn)
                                 : pool->spawn(actor_instance, self, fn.actor().get(), conn);
  return fn.options().blocking
           ? pool->spawn<caf::detached>(instance, self, &fn, conn, name, spans, span_name, latency, nullptr)
           : pool->spawn<caf::lazy_init>(instance, self, &fn, conn, name, spans, span_name, latency, disp);
}

void post_reply(const caf::actor_addr& instance, std::uint64_t token, reply r) {
  if (auto inst = caf::actor_cast<caf::actor>(instance))
    caf::anon_send(inst, reply_atom::value, token, std::make_shared<const reply>(std::move(r)));
}

} // namespace plexus::detail
