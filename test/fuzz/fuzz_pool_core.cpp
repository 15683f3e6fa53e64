// SPDX-License-Identifier: Apache-2.0
// Fuzz target: one function pool's core (pool_core.hpp) driven by a model
// of its shell and of the broker, from random input sequences: batches the
// broker sends within the credit it holds (delivered at once, or later:
// after the credit was withdrawn), runs done with random outcomes, crashes
// and confirms to wait for, instances that die or end, ticks, a sibling
// function's crashes through the shared supervisor (recycles, escalation),
// revivals, a stop and its grace. The model holds the shell's rules: runs
// only come through pool_cmd::run, an instance reports a run at most once,
// a retired instance's end comes later (and is the core's own doing).
//
// Invariants, after every step: no delivery ACKed or NACKed twice (or
// both), nor settled while an instance runs it; runs go to idle live
// instances only, 1 to 32 deliveries taken in and not settled, none in two
// runs; what the core holds (waiting, in runs, deferred) is what was taken
// in and is neither settled nor counted as left unacked; no CREDIT on a
// subscription after its credit was set to 0 (until set again); while it
// runs, the broker's credit plus what is in flight or held never exceeds
// max + prefetch; credit granted back never exceeds what was taken in, nor
// scaling grants the instances added; work never waits while an instance
// idles or with no instance to come; quit at most once, nothing after it.
// At the end (stop, grace over, every run completed): quit, nothing held,
// every delivery ACKed, NACKed or counted as left unacked.
//
// PLEXUS_FUZZ_POOL_TRACE=1 prints each input and the commands it caused
// (to read a crash input: fuzz_pool_core CRASH_FILE).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "check.hpp"
#include "pool_core.hpp"

using namespace plexus;
using namespace plexus::detail;
using namespace std::chrono_literals;

namespace {

using plexus::fuzz::input;

using key = std::pair<std::uint32_t, std::uint64_t>; // a delivery: (sid, seq)

const bool trace = std::getenv("PLEXUS_FUZZ_POOL_TRACE") != nullptr;

#define SAY(...)                                                                               \
  do {                                                                                         \
    if (trace) std::fprintf(stderr, __VA_ARGS__);                                             \
  } while (false)

void say_command(const pool_command& c) {
  if (!trace) return;
  if (auto* a = std::get_if<pool_cmd::ack>(&c))
    SAY("    ack sid %u seq %llu count %u\n", a->sid, static_cast<unsigned long long>(a->seq), a->count);
  else if (auto* n = std::get_if<pool_cmd::nack>(&c))
    SAY("    nack sid %u seq %llu action %d delay %u: %s\n", n->sid, static_cast<unsigned long long>(n->seq),
        static_cast<int>(n->action), n->delay_ms, n->reason.c_str());
  else if (auto* g = std::get_if<pool_cmd::grant_credit>(&c)) SAY("    grant_credit sid %u n %u\n", g->sid, g->n);
  else if (auto* s = std::get_if<pool_cmd::set_credit>(&c)) SAY("    set_credit sid %u n %u\n", s->sid, s->n);
  else if (auto* u = std::get_if<pool_cmd::unsubscribe>(&c)) SAY("    unsubscribe sid %u\n", u->sid);
  else if (std::holds_alternative<pool_cmd::subscribe>(c)) SAY("    subscribe\n");
  else if (auto* sp = std::get_if<pool_cmd::spawn>(&c))
    SAY("    spawn %llu\n", static_cast<unsigned long long>(sp->id));
  else if (auto* r = std::get_if<pool_cmd::retire>(&c))
    SAY("    retire %llu\n", static_cast<unsigned long long>(r->id));
  else if (auto* run = std::get_if<pool_cmd::run>(&c)) {
    SAY("    run %llu:", static_cast<unsigned long long>(run->id));
    for (auto& d : run->work->items)
      SAY(" %u/%llu(x%u)", d->sid, static_cast<unsigned long long>(d->seq), d->count);
    SAY("\n");
  } else if (auto* e = std::get_if<pool_cmd::event>(&c))
    SAY("    event %s: %s\n", e->e.kind.c_str(), e->e.reason.c_str());
  else if (auto* sc = std::get_if<pool_cmd::scaled>(&c))
    SAY("    scaled %u -> %u (%s)\n", sc->e.from, sc->e.to, sc->e.why.c_str());
  else if (std::holds_alternative<pool_cmd::recovered>(c)) SAY("    recovered\n");
  else if (auto* esc = std::get_if<pool_cmd::escalate>(&c)) SAY("    escalate: %s\n", esc->why.c_str());
  else if (std::holds_alternative<pool_cmd::recycle_siblings>(c)) SAY("    recycle_siblings\n");
  else if (auto* l = std::get_if<pool_cmd::restart_later>(&c))
    SAY("    restart_later %lld ms epoch %llu\n", static_cast<long long>(l->delay.count()),
        static_cast<unsigned long long>(l->epoch));
  else if (std::holds_alternative<pool_cmd::quit>(c)) SAY("    quit\n");
}

// The fuzzer's own texts carry this mark: a NACK without it is a hand-back.
constexpr std::string_view mark = "fz:";

struct msg {
  std::uint64_t seq;
  std::uint32_t count;
  std::string msg_id, payload;
};

// A block as the pool's shell makes it (copy_deliveries).
delivery_batch make_batch(std::uint32_t sid, const std::vector<msg>& msgs) {
  std::vector<delivery> views(msgs.size());
  for (std::size_t i = 0; i < msgs.size(); ++i)
    views[i] = delivery{sid, msgs[i].seq, msgs[i].count, 0, 0, "t", msgs[i].payload, msgs[i].msg_id, {}, {}};
  return copy_deliveries(std::move(views));
}

struct tracked {
  tracker_ptr t;
  std::uint32_t unconfirmed = 0; // publishes whose confirm is still to come
};

class driver {
public:
  driver(function_options o, service_options so, restart_type sibling)
    : opts_(std::move(o)), counters_(std::make_shared<pool_counters>()),
      sup_(std::make_shared<shared_supervisor>(so, std::vector<restart_type>{opts_.restart, sibling}, 7)),
      core_(pool_core_spec{"svc", "fn", 0, opts_, counters_, sup_}) {}

  [[nodiscard]] bool quit() const { return quits_ > 0; }

  void start() {
    SAY("config: min %u max %u prefetch %u poison_after %u restart %d reliable %d\n", opts_.scale.min,
        opts_.scale.max, opts_.prefetch, opts_.poison_after, static_cast<int>(opts_.restart),
        static_cast<int>(opts_.reliable));
    SAY("start\n");
    core_.start(now_);
    last_target_ = core_.target(); // its instances come with the subscription's credit
    collect(step::other);
    subscribe();
    check();
  }

  // The broker sends up to `n` of its credit; delivered now or left in flight.
  void send(input& in, std::size_t n, bool now) {
    if (!alive_.count(sid_)) return;
    n = std::min<std::size_t>(n, static_cast<std::size_t>(std::max<std::int64_t>(0, credit_[sid_])));
    if (n == 0) return;
    std::vector<msg> msgs;
    for (std::size_t i = 0; i < n; ++i) {
      auto b = in.byte();
      auto& seq = next_seq_[sid_];
      seq += 1 + ((b & 1) ? (b >> 1) % 3 : 0); // sometimes a gap: ACK runs break there
      msg m{seq, 1u + ((b >> 3) & 3), {}, "p" + std::to_string(b % 5)};
      switch ((b >> 5) & 7) {
        case 0: break; // no msg id: keyed by content
        case 1:
        case 2: m.msg_id = "shared" + std::to_string(b & 1); break;
        default: m.msg_id = "u" + std::to_string(sid_) + "-" + std::to_string(seq);
      }
      msgs.push_back(std::move(m));
    }
    SAY("broker sends %zu on sid %u%s\n", n, sid_, now ? "" : " (in flight)");
    credit_[sid_] -= static_cast<std::int64_t>(n);
    inflight_[sid_] += static_cast<std::int64_t>(n);
    in_flight_.push_back(make_batch(sid_, msgs));
    if (now) arrive();
  }

  // The oldest batch in flight reaches the pool.
  void arrive() {
    if (in_flight_.empty()) return;
    auto b = std::move(in_flight_.front());
    in_flight_.pop_front();
    for (auto& d : b->items) {
      PLEXUS_FUZZ_CHECK(taken_.insert({d.sid, d.seq}).second && "the model repeated a delivery");
      ++held_[d.sid];
      reports_[{d.sid, d.seq}].count = d.count;
      --inflight_[d.sid];
      ++taken_total_;
    }
    SAY("take:");
    for (auto& d : b->items) SAY(" %u/%llu(x%u)", d.sid, static_cast<unsigned long long>(d.seq), d.count);
    SAY("\n");
    auto before = core_.target();
    core_.take(b);
    collect(step::scaling, before);
  }

  void flush_in_flight() {
    while (!in_flight_.empty()) arrive();
  }

  void run_done(input& in) {
    if (runs_.empty()) return;
    auto it = std::next(runs_.begin(), static_cast<std::ptrdiff_t>(in.byte() % runs_.size()));
    auto id = it->first;
    auto run = it->second;
    runs_.erase(it);
    auto n = run->items.size();
    auto b = in.byte();
    // Mostly the whole run; else it crashed on one (the instance lives on).
    std::size_t k = (b & 1) ? n : (b >> 1) % (n + 1);
    record(in, *run, k, k < n);
    if (k < n) run->crash = std::string{mark} + "crash";
    SAY("run_done %llu: %zu of %zu finished%s\n", static_cast<unsigned long long>(id), k, n,
        k < n ? ", crashed" : "");
    core_.run_done(id, now_);
    collect(step::other);
  }

  void instance_down(input& in) {
    if (live_.empty()) return;
    auto id = *std::next(live_.begin(), static_cast<std::ptrdiff_t>(in.byte() % live_.size()));
    auto b = in.byte();
    std::optional<std::string> why;
    if (retired_.count(id)) {
      if (b & 1) why = "user_shutdown"; // the shell's exit: a crash as CAF says it
    } else if (b & 1) {
      why = std::string{mark} + "down";
    }
    if (auto it = runs_.find(id); it != runs_.end()) {
      auto n = it->second->items.size();
      auto k = (b >> 1) % (n + 1); // as far as it got
      record(in, *it->second, k, why && k < n);
      runs_.erase(it);
    }
    SAY("instance_down %llu%s %s\n", static_cast<unsigned long long>(id), retired_.count(id) ? " (retired)" : "",
        why ? why->c_str() : "normal");
    live_.erase(id);
    retired_.erase(id);
    core_.instance_down(id, why, now_);
    collect(step::other);
  }

  void tick(input& in) {
    now_ += std::chrono::milliseconds{in.byte() * 4};
    SAY("tick\n");
    auto before = core_.target();
    core_.tick(now_);
    collect(step::scaling, before);
  }

  // A confirm of one of an invocation's publishes; the last one (once the
  // pool settled its part) tells the pool.
  void confirm(input& in) {
    std::vector<tracked*> open;
    for (auto& t : trackers_)
      if (t.unconfirmed > 0) open.push_back(&t);
    if (open.empty()) return;
    auto b = in.byte();
    auto& t = *open[b % open.size()];
    --t.unconfirmed;
    if (b & 0x80) t.t->failed = static_cast<std::uint32_t>(status::dead_lettered);
    if (t.t->pending.fetch_sub(1) == 1) {
      SAY("published (failed %u)\n", t.t->failed.load());
      core_.published(t.t.get());
      collect(step::other);
    }
  }

  void restart_due(input& in) {
    if (epochs_.empty()) return;
    auto it = std::next(epochs_.begin(), static_cast<std::ptrdiff_t>(in.byte() % epochs_.size()));
    auto epoch = *it;
    epochs_.erase(it);
    SAY("restart_due %llu\n", static_cast<unsigned long long>(epoch));
    core_.restart_due(epoch);
    collect(step::other);
  }

  // The other function of the service: its crashes and successes go through
  // the shared supervisor, which may recycle this one or escalate.
  void sibling(input& in) {
    auto b = in.byte();
    if (b & 1) {
      sup_->succeeded();
      return;
    }
    auto plan = sup_->crashed({1, 1u + ((b >> 1) & 1), "sib" + std::to_string(b >> 2)}, now_);
    SAY("sibling crashed%s\n", plan.escalate ? ": the service escalates" : "");
    if (plan.escalate) {
      core_.escalate();
      collect(step::other);
    } else if (std::find(plan.recycle.begin(), plan.recycle.end(), 0) != plan.recycle.end()) {
      recycle();
    }
  }

  void recycle() {
    SAY("recycle\n");
    core_.recycle(opts_.restart != temporary);
    collect(step::other);
  }

  // The root revives the service (long after anything in flight arrived).
  void revive() {
    flush_in_flight();
    if (!sup_->revive()) return;
    SAY("revive\n");
    withdrawn_.clear(); // a revival gives credit again: grants are fine from here
    core_.revive();
    collect(step::other);
  }

  void stop() {
    stopped_ = true;
    SAY("stop\n");
    core_.stop();
    collect(step::other);
  }

  void grace_over() {
    if (!stopped_) return; // the shell's grace timer starts at the stop
    SAY("grace_over\n");
    core_.grace_over();
    collect(step::other);
  }

  // Stop, grace, every run completed: everything must be accounted for.
  void finish() {
    if (!quit()) {
      flush_in_flight();
      stop();
      grace_over();
      while (!runs_.empty() && !quit()) {
        auto [id, run] = *runs_.begin();
        runs_.erase(runs_.begin());
        SAY("run_done %llu: all finished\n", static_cast<unsigned long long>(id));
        for (auto& d : run->items) {
          run->outcomes.emplace_back(static_cast<std::uint8_t>(outcome::ok), "");
          reports_[{d->sid, d->seq}] = {'o', d->count, nullptr};
        }
        run->finished = run->items.size();
        core_.run_done(id, now_);
        collect(step::other);
      }
    }
    PLEXUS_FUZZ_CHECK(quits_ == 1 && "the pool never quit after stop, grace and every run done");
    PLEXUS_FUZZ_CHECK(runs_.empty() && "quit with runs out");
    PLEXUS_FUZZ_CHECK(core_.waiting() == 0 && core_.busy() == 0 && core_.deferred() == 0);
    PLEXUS_FUZZ_CHECK(core_.live() == 0 && "quit with live instances");
    // (A batch still in flight finds the pool gone: never taken in, the
    // broker redelivers it elsewhere.)
    // Every delivery: ACKed, NACKed, or counted as left unacked.
    PLEXUS_FUZZ_CHECK(taken_.size() - settled_.size() == left_unacked()
                      && "a delivery taken in was neither settled nor counted as handed back");
  }

private:
  enum class step { scaling, other }; // scaling: tick or take, where scale grants happen

  void subscribe() {
    sid_ = next_sid_++;
    alive_.insert(sid_);
    credit_[sid_] = core_.initial_credit();
    core_.subscribed(sid_);
    PLEXUS_FUZZ_CHECK(core_.take_commands().empty() && "subscribed() answered with commands");
  }

  // What an instance recorded for its first `k` items (k <= size), and
  // what the model expects of each: its outcome, a crash on items[k] when
  // `crashed`, the rest unstarted (to run again or go back).
  void record(input& in, work_run& run, std::size_t k, bool crashed) {
    for (std::size_t i = 0; i < run.items.size(); ++i) {
      auto& r = reports_[{run.items[i]->sid, run.items[i]->seq}];
      r.cls = i == k && crashed ? 'c' : 0;
      r.t = nullptr;
    }
    for (std::size_t i = 0; i < k; ++i) {
      auto b = in.byte();
      auto kind = (b & 3) == 2 ? outcome::failed : (b & 3) == 3 ? outcome::rejected : outcome::ok;
      auto& r = reports_[{run.items[i]->sid, run.items[i]->seq}];
      r.cls = kind == outcome::ok ? 'o' : kind == outcome::failed ? 'f' : 'r';
      std::string why = kind == outcome::ok ? "" : std::string{mark} + (kind == outcome::failed ? "failed" : "rejected");
      run.outcomes.emplace_back(static_cast<std::uint8_t>(kind), std::move(why));
      if (opts_.reliable && (b & 4)) { // the invocation published: its confirms to come
        auto t = std::make_shared<publish_tracker>();
        std::uint32_t unconfirmed = (b >> 3) & 3;
        t->pending = 1 + unconfirmed;
        if (b & 0x20) t->failed = static_cast<std::uint32_t>(status::overloaded);
        run.trackers.resize(run.items.size());
        run.trackers[i] = t;
        r.t = t.get();
        trackers_.push_back({t, unconfirmed}); // kept alive: no address reuse
      }
    }
    run.finished = k;
  }

  [[nodiscard]] std::uint64_t left_unacked() const {
    auto handed_back = counters_->handed_back.load();
    PLEXUS_FUZZ_CHECK(handed_back >= handback_nacks_ && "a hand-back NACK was not counted");
    return handed_back - handback_nacks_;
  }

  void settle(std::uint32_t sid, std::uint64_t seq) {
    key k{sid, seq};
    PLEXUS_FUZZ_CHECK(taken_.count(k) && "ACK or NACK of a delivery never taken in");
    PLEXUS_FUZZ_CHECK(settled_.insert(k).second && "a delivery ACKed or NACKed twice");
    for (auto& [id, run] : runs_)
      for (auto& d : run->items)
        PLEXUS_FUZZ_CHECK(!(d->sid == sid && d->seq == seq) && "settled while an instance runs it");
    --held_[sid];
  }

  // A NACK says what the instance reported: failed, rejected, the crash
  // (quarantined at poison_after deliveries), an unconfirmed publish, or
  // (no text of the fuzzer's) a hand-back of what never ran.
  void check_nack(const pool_cmd::nack& n) {
    const auto& r = reports_[{n.sid, n.seq}];
    using wire::nack_action;
    auto has = [&n](std::string_view text) { return n.reason.find(text) != std::string::npos; };
    if (n.reason.starts_with("crash: ")) {
      PLEXUS_FUZZ_CHECK(r.cls == 'c' && n.action == nack_action::requeue && r.count < opts_.poison_after
                        && "a crash NACK for what did not crash, or past poison_after");
    } else if (n.reason.starts_with("crashed on ")) {
      PLEXUS_FUZZ_CHECK(r.cls == 'c' && n.action == nack_action::dead_letter && r.count >= opts_.poison_after
                        && "a quarantine of what did not crash poison_after times");
    } else if (has("fz:failed")) {
      // An error waits its backoff (function_options::retry), then comes again.
      PLEXUS_FUZZ_CHECK(r.cls == 'f' && (n.action == nack_action::requeue || n.action == nack_action::delay)
                        && "a failure NACK for what did not fail");
    } else if (has("fz:rejected")) {
      PLEXUS_FUZZ_CHECK(r.cls == 'r' && n.action == nack_action::dead_letter && "a rejection for what was not rejected");
    } else if (n.action == nack_action::delay) {
      PLEXUS_FUZZ_CHECK(r.cls == 'o' && r.t && r.t->pending == 0 && r.t->failed != 0 && n.delay_ms == 1000
                        && "a delayed NACK without a failed publish, or before every confirm");
    } else {
      PLEXUS_FUZZ_CHECK(r.cls == 0 && n.action == nack_action::requeue && "a hand-back of what ran");
    }
  }

  void check_run(const pool_cmd::run& r) {
    PLEXUS_FUZZ_CHECK(live_.count(r.id) && "a run for an instance not alive");
    PLEXUS_FUZZ_CHECK(!retired_.count(r.id) && "a run for a retired instance");
    PLEXUS_FUZZ_CHECK(!runs_.count(r.id) && "a run for a busy instance");
    PLEXUS_FUZZ_CHECK(r.work && !r.work->items.empty() && r.work->items.size() <= 32);
    PLEXUS_FUZZ_CHECK(r.work->finished == 0 && r.work->outcomes.empty() && !r.work->crash);
    for (auto& d : r.work->items) {
      key k{d->sid, d->seq};
      PLEXUS_FUZZ_CHECK(taken_.count(k) && "a run of a delivery never taken in");
      PLEXUS_FUZZ_CHECK(!settled_.count(k) && "a run of a delivery already settled");
      for (auto& [id, other] : runs_)
        for (auto& o : other->items)
          PLEXUS_FUZZ_CHECK(!(o->sid == d->sid && o->seq == d->seq) && "a delivery in two runs");
    }
  }

  // Carries the core's commands out as the shell would, then checks.
  void collect(step kind, std::uint32_t target_before = 0) {
    auto cmds = core_.take_commands();
    PLEXUS_FUZZ_CHECK((quits_ == 0 || cmds.empty()) && "commands after quit");
    // Scaling credit is what the target rose by in this step (a tick, or a
    // cold start when a batch or a run's end leaves work and no instance);
    // the rest of the step's grants are finished messages' credit.
    static_cast<void>(kind);
    static_cast<void>(target_before);
    std::uint64_t rise = core_.target() > last_target_ ? core_.target() - last_target_ : 0;
    last_target_ = core_.target();
    target_rise_ += rise;
    for (auto& c : cmds) {
      say_command(c);
      if (auto* a = std::get_if<pool_cmd::ack>(&c)) {
        PLEXUS_FUZZ_CHECK(a->count >= 1 && a->count <= 32);
        for (std::uint32_t i = 0; i < a->count; ++i) {
          settle(a->sid, a->seq + i);
          auto& r = reports_[{a->sid, a->seq + i}];
          PLEXUS_FUZZ_CHECK(r.cls == 'o' && "ACK of a delivery that did not succeed");
          PLEXUS_FUZZ_CHECK((!r.t || (r.t->pending == 0 && r.t->failed == 0))
                            && "ACK before every publish was confirmed ok");
        }
      } else if (auto* n = std::get_if<pool_cmd::nack>(&c)) {
        settle(n->sid, n->seq);
        check_nack(*n);
        if (n->action == wire::nack_action::requeue && n->reason.find(mark) == std::string::npos)
          ++handback_nacks_;
      } else if (auto* g = std::get_if<pool_cmd::grant_credit>(&c)) {
        PLEXUS_FUZZ_CHECK(g->n >= 1 && "an empty CREDIT");
        PLEXUS_FUZZ_CHECK((!withdrawn_.count(g->sid))
                          && "CREDIT on a subscription after its credit was set to 0");
        auto scaling = std::min<std::uint64_t>(g->n, rise);
        rise -= scaling;
        scale_grants_ += scaling;
        finish_grants_ += g->n - scaling;
        if (alive_.count(g->sid)) credit_[g->sid] += g->n;
      } else if (auto* s = std::get_if<pool_cmd::set_credit>(&c)) {
        PLEXUS_FUZZ_CHECK(alive_.count(s->sid) && "set_credit on a subscription not held");
        credit_[s->sid] = s->n;
        if (s->n == 0) withdrawn_.insert(s->sid);
        else withdrawn_.erase(s->sid);
      } else if (auto* u = std::get_if<pool_cmd::unsubscribe>(&c)) {
        PLEXUS_FUZZ_CHECK(alive_.erase(u->sid) == 1 && "UNSUB of a subscription not held");
      } else if (std::holds_alternative<pool_cmd::subscribe>(c)) {
        PLEXUS_FUZZ_CHECK(!alive_.count(sid_) && "subscribes again while subscribed");
        subscribe();
      } else if (auto* sp = std::get_if<pool_cmd::spawn>(&c)) {
        PLEXUS_FUZZ_CHECK(spawned_.insert(sp->id).second && "an instance id reused");
        live_.insert(sp->id);
      } else if (auto* r = std::get_if<pool_cmd::retire>(&c)) {
        PLEXUS_FUZZ_CHECK(live_.count(r->id) && "retired an instance not alive");
        PLEXUS_FUZZ_CHECK(retired_.insert(r->id).second && "retired an instance twice");
        PLEXUS_FUZZ_CHECK(!runs_.count(r->id) && "retired an instance while it runs");
      } else if (auto* run = std::get_if<pool_cmd::run>(&c)) {
        check_run(*run);
        runs_.emplace(run->id, run->work);
      } else if (auto* later = std::get_if<pool_cmd::restart_later>(&c)) {
        PLEXUS_FUZZ_CHECK(later->delay.count() > 0);
        epochs_.push_back(later->epoch);
      } else if (std::holds_alternative<pool_cmd::escalate>(c)) {
        // The service tells every pool, this one too: already wound down.
        escalated_ = true;
      } else if (std::holds_alternative<pool_cmd::quit>(c)) {
        ++quits_;
      }
    }
    check();
    // The service's answer to this pool's own escalation.
    if (escalated_ && quits_ == 0) {
      escalated_ = false;
      core_.escalate();
      PLEXUS_FUZZ_CHECK(core_.take_commands().empty() && "escalate() twice did something");
    }
  }

  void check() {
    PLEXUS_FUZZ_CHECK(quits_ <= 1 && "quit twice");
    PLEXUS_FUZZ_CHECK(core_.busy() == runs_.size());
    PLEXUS_FUZZ_CHECK(counters_->live.load() == core_.live());
    PLEXUS_FUZZ_CHECK(core_.live() + retired_.size() == live_.size() && "instances the core forgot");
    std::size_t in_runs = 0;
    for (auto& [id, run] : runs_) in_runs += run->items.size();
    PLEXUS_FUZZ_CHECK(taken_.size() - settled_.size() - left_unacked()
                        == core_.waiting() + in_runs + core_.deferred()
                      && "what the core holds is not what was taken in and not settled");
    PLEXUS_FUZZ_CHECK(finish_grants_ <= taken_total_ && "more credit back than deliveries taken in");
    PLEXUS_FUZZ_CHECK(scale_grants_ <= target_rise_ && "more scaling credit than instances added");
    if (core_.phase() == pool_phase::running && alive_.count(sid_))
      PLEXUS_FUZZ_CHECK(credit_[sid_] + inflight_[sid_] + held_[sid_]
                          <= static_cast<std::int64_t>(opts_.scale.max) + opts_.prefetch
                        && "the broker holds more credit than the pool has room for");
    if (quits_) PLEXUS_FUZZ_CHECK(core_.live() == 0 && "quit with live instances");
    // Work never waits while an instance idles, nor with no instance to
    // come (none live, no restart pending): it would wait for good.
    if (core_.waiting() > 0) {
      PLEXUS_FUZZ_CHECK(core_.phase() == pool_phase::running && "work waits in a pool that takes none");
      PLEXUS_FUZZ_CHECK(core_.live() == core_.busy() && "work waits while an instance idles");
      PLEXUS_FUZZ_CHECK((core_.live() > 0 || !epochs_.empty())
                        && "work waits with no instance to come");
    }
  }

  function_options opts_;
  std::shared_ptr<pool_counters> counters_;
  std::shared_ptr<shared_supervisor> sup_;
  pool_core core_;
  pool_core::clock::time_point now_ = pool_core::clock::time_point{} + 1000h;
  // the shell
  std::set<instance_id> spawned_, live_, retired_; // live_: not yet down (retired ones too)
  std::map<instance_id, work_run_ptr> runs_;
  std::vector<std::uint64_t> epochs_; // restart_later, not yet due
  std::vector<tracked> trackers_;
  int quits_ = 0;
  bool stopped_ = false, escalated_ = false;
  // the broker
  std::uint32_t sid_ = 0, next_sid_ = 1;
  std::map<std::uint32_t, std::int64_t> credit_, inflight_, held_;
  std::map<std::uint32_t, std::uint64_t> next_seq_;
  std::set<std::uint32_t> alive_, withdrawn_;
  std::deque<delivery_batch> in_flight_;
  // deliveries
  std::set<key> taken_, settled_;
  struct report {
    char cls = 0; // o(k), f(ailed), r(ejected), c(rashed on), 0: not run (yet)
    std::uint32_t count = 1;
    const publish_tracker* t = nullptr;
  };
  std::map<key, report> reports_;
  std::uint64_t handback_nacks_ = 0, taken_total_ = 0;
  std::uint64_t finish_grants_ = 0, scale_grants_ = 0, target_rise_ = 0;
  std::uint32_t last_target_ = 0; // the core's target after the last step
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  input in{data, size};
  function_options o;
  auto b0 = in.byte(), b1 = in.byte(), b2 = in.byte(), b3 = in.byte();
  o.scale.min = b0 & 3;
  o.scale.max = std::max<std::uint32_t>(1, o.scale.min + ((b0 >> 2) & 3));
  o.scale.tick = 100ms;
  o.scale.panic_window = 300ms;
  o.scale.stable_window = 1000ms;
  o.scale.idle_grace = 500ms;
  o.restart = static_cast<restart_type>((b0 >> 4) % 3);
  o.reliable = (b0 & 0x40) != 0;
  o.prefetch = b1 & 15;
  o.poison_after = 1 + ((b1 >> 4) & 3);
  service_options so;
  so.strategy = static_cast<restart_strategy>(b2 % 3);
  so.max_restarts = (b2 >> 2) & 3;
  so.within = (b2 & 0x40) ? 100ms : 1000ms;
  so.backoff_initial = std::chrono::milliseconds{b3 & 15};
  so.backoff_max = 100ms;
  auto sibling = static_cast<restart_type>((b2 >> 4) % 3);

  driver d{o, so, sibling};
  d.start();
  while (!in.done() && !d.quit()) {
    auto op = in.byte();
    switch (op & 15) {
      case 0:
      case 1:
      case 2: d.send(in, 1 + (op >> 4), true); break;
      case 3: d.send(in, 1 + (op >> 4), false); break; // in flight: arrives later
      case 4: d.arrive(); break;
      case 5:
      case 6: d.run_done(in); break;
      case 7: d.instance_down(in); break;
      case 8: d.tick(in); break;
      case 9: d.confirm(in); break;
      case 10: d.restart_due(in); break;
      case 11: d.sibling(in); break;
      case 12:
        if (op & 0x10) d.recycle();
        else d.revive();
        break;
      case 13:
        if ((op >> 4) == 0) d.stop(); // rare: little happens after it
        break;
      case 14: d.grace_over(); break;
      default: d.run_done(in); break;
    }
  }
  d.finish();
  return 0;
}
