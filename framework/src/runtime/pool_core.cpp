// SPDX-License-Identifier: Apache-2.0
#include "pool_core.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>

namespace plexus::detail {

namespace {

// Which message crashed, across redeliveries: its msg id, else its content.
std::string message_key(const delivery& d) {
  if (!d.msg_id.empty()) return std::string{d.msg_id};
  return std::string{d.topic} + '\0' + std::to_string(std::hash<std::string_view>{}(d.payload));
}

} // namespace

delivery_batch copy_deliveries(std::vector<delivery> views) {
  std::size_t total = 0;
  for (auto& v : views)
    total += v.topic.size() + v.payload.size() + v.msg_id.size() + v.reply_to.size()
             + v.traceparent.size();
  auto out = std::make_shared<delivery_block>();
  out->bytes = std::make_unique_for_overwrite<char[]>(total);
  out->items = std::move(views);
  char* at = out->bytes.get();
  auto copy = [&at](std::string_view& s) {
    if (!s.empty()) std::memcpy(at, s.data(), s.size());
    s = {at, s.size()};
    at += s.size();
  };
  for (auto& d : out->items) {
    copy(d.topic);
    copy(d.payload);
    copy(d.msg_id);
    copy(d.reply_to);
    copy(d.traceparent);
  }
  return out;
}

// ---------------------------------------------------------------- retries

double jitter_unit(double draw, std::size_t index) noexcept {
  double x = draw + static_cast<double>(index) * 0.6180339887498949; // golden ratio
  return x - std::floor(x);
}

std::chrono::milliseconds backoff_delay(const retry_policy& p, std::uint32_t count,
                                        double unit) noexcept {
  using ms = std::chrono::milliseconds;
  auto cap = static_cast<double>(std::max<ms::rep>(0, p.max_delay.count()));
  auto d = std::min(static_cast<double>(std::max<ms::rep>(0, p.initial.count())), cap);
  auto factor = std::max(1.0, p.multiplier);
  for (std::uint32_t k = 1; k < count && d < cap; ++k) d = std::min(d * factor, cap);
  unit = std::clamp(unit, 0.0, 1.0);
  switch (p.jitter) {
    case full_jitter: d *= unit; break;
    case equal_jitter: d = d / 2 + d / 2 * unit; break;
    default: break;
  }
  return ms{static_cast<ms::rep>(d)};
}

std::chrono::milliseconds overload_delay(const function_options& o, double unit) noexcept {
  return backoff_delay(o.retry, 1, unit);
}

std::uint32_t delivery_limit(const function_options& o) noexcept {
  std::uint32_t n = o.retry.max < UINT32_MAX ? o.retry.max + 1 : UINT32_MAX;
  if (o.max_deliver > 0) n = std::min(n, o.max_deliver);
  if (o.rate.per_second > 0 && n < UINT32_MAX) ++n;
  return n;
}

retry_decision decide_retry(const function_options& o, std::uint32_t count, double unit,
                            std::chrono::milliseconds asked) noexcept {
  if (count >= delivery_limit(o)) return {};
  return {true, asked.count() >= 0 ? asked : backoff_delay(o.retry, count, unit)};
}

pool_core::pool_core(pool_core_spec spec) : spec_(std::move(spec)) {
  const auto& r = spec_.opts.rate;
  if (r.per_second > 0) {
    rate_limited_ = true;
    interval_ = std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>{1.0 / r.per_second});
    if (interval_.count() <= 0) interval_ = clock::duration{1};
    tolerance_ = interval_ * (std::max<std::uint32_t>(1, r.burst) - 1);
  }
}

double pool_core::draw() {
  if (spec_.random) return spec_.random();
  if (rng_ == 0) rng_ = reinterpret_cast<std::uintptr_t>(this) ^ 0x9e3779b97f4a7c15ull;
  rng_ += 0x9e3779b97f4a7c15ull; // splitmix64
  auto z = rng_;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

std::vector<pool_command> pool_core::take_commands() {
  auto r = std::move(out_);
  out_.clear();
  return r;
}

supervisor_event pool_core::make_event(std::string kind, std::string reason) const {
  supervisor_event e;
  e.kind = std::move(kind);
  e.service = spec_.service;
  e.function = spec_.function;
  e.reason = std::move(reason);
  return e;
}

std::uint32_t pool_core::initial_credit() const noexcept {
  return spec_.opts.scale.min + spec_.opts.prefetch; // one more granted per finished message
}

void pool_core::start(clock::time_point now) {
  last_now_ = now;
  const auto& scale = spec_.opts.scale;
  target_ = scale.min;
  for (std::uint32_t i = 0; i < scale.min; ++i) spawn_instance();
  if (scale.min < scale.max) scaler_.emplace(scale);
}

void pool_core::subscribed(std::uint32_t sid) {
  sid_ = sid;
  spec_.counters->sid = sid;
  spec_.counters->credit = initial_credit();
}

// ---------------------------------------------------------------- instances

void pool_core::spawn_instance() {
  auto id = next_id_++;
  born_.emplace(id, generation_);
  spec_.counters->live = static_cast<std::uint32_t>(born_.size());
  idle_.push_back(id);
  emit(pool_cmd::spawn{id});
}

void pool_core::retire(instance_id id) {
  born_.erase(id);
  spec_.counters->live = static_cast<std::uint32_t>(born_.size());
  retired_.insert(id);
  emit(pool_cmd::retire{id});
}

// The node's gauges, after the pool changed what runs and what waits: a
// busy instance runs one message of its run, the rest of its run waits.
void pool_core::note_gauges() {
  auto running = busy_.size();
  spec_.counters->in_flight.store(static_cast<std::uint32_t>(running), std::memory_order_relaxed);
  spec_.counters->queue_depth.store(static_cast<std::uint32_t>(waiting_.size() + handed_ - running),
                                    std::memory_order_relaxed);
}

// Hands waiting messages to idle instances, a run each: one actor message
// for many deliveries, spread evenly, at most 32 per run.
void pool_core::dispatch() {
  // Downstream paused: what waits starts once it is resumed.
  while (!downstream_paused_ && !waiting_.empty() && !idle_.empty()) {
    auto id = idle_.back();
    idle_.pop_back();
    auto n = std::clamp<std::size_t>(waiting_.size() / (idle_.size() + 1), 1, 32);
    auto run = std::make_shared<work_run>();
    run->items.reserve(n);
    run->outcomes.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      run->items.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
    }
    run->cold = std::exchange(cold_pending_, false);
    if (spec_.opts.retry.jitter != no_jitter) run->jitter = draw();
    handed_ += n;
    busy_.emplace(id, run);
    emit(pool_cmd::run{id, run});
  }
  note_gauges();
}

// An instance is free again: back to work, or retired if it belongs to an
// older generation (replaced, when the function still runs).
void pool_core::freed(instance_id id) {
  auto it = born_.find(id);
  bool excess = born_.size() > target_; // scaled down: drained, never dropped
  if (it != born_.end() && it->second == generation_ && live_phase() && !excess) {
    idle_.push_back(id);
    return;
  }
  if (excess && it != born_.end() && live_phase()) {
    retire(id);
    return;
  }
  retire(id);
  if (!live_phase()) return;
  if (replace_retired_) {
    ++spec_.counters->recycled;
    spawn_instance();
  } else if (born_.empty()) {
    wind_down("function ended", group_stay::leave); // temporary: its last instance is gone
  }
}

void pool_core::maybe_quit() {
  if (quit_ || !stopping() || !busy_.empty() || !deferred_.empty()) return;
  for (auto id : idle_) retire(id);
  idle_.clear();
  quit_ = true;
  emit(pool_cmd::quit{});
}

// ---------------------------------------------------------------- credit

void pool_core::give_credit() {
  emit(pool_cmd::grant_credit{owed_sid_, owed_credit_});
  if (owed_sid_ == spec_.counters->sid.load(std::memory_order_relaxed))
    spec_.counters->credit.fetch_add(owed_credit_, std::memory_order_relaxed);
  owed_credit_ = 0;
}

// One message is finished: the broker may send one more. Credit goes back
// in batches of a quarter of the prefetch (one CREDIT per message cost more
// than the message), and at once when the pool has run dry (credit_if_dry).
void pool_core::finished(const delivery& d) {
  if (!live_phase() || downstream_paused_) return; // credit withdrawn: set anew on the resume
  if (credit_debt_ > 0) { // capacity went down: this credit is not given back
    --credit_debt_;
    return;
  }
  if (owed_credit_ > 0 && d.sid != owed_sid_) give_credit(); // an earlier subscription's
  owed_sid_ = d.sid;
  ++owed_credit_;
  if (owed_credit_ >= std::max<std::uint32_t>(1, spec_.opts.prefetch / 4)) give_credit();
}

// After messages finished: a pool that has run dry gives back all it owes,
// in one CREDIT. (Asked per finished message, a dry pool sent one CREDIT
// per message of each run, and got its next messages one by one.)
void pool_core::credit_if_dry() {
  if (owed_credit_ > 0 && waiting_.empty() && busy_.empty()) give_credit();
}

// A message taken in goes back to the broker unfinished (a stop, an
// escalation): NACKed for another member, and counted.
void pool_core::hand_back(const delivery& d, const char* why) {
  emit(pool_cmd::nack{d.sid, d.seq, wire::nack_action::requeue, 0, why});
  spec_.counters->handed_back.fetch_add(1, std::memory_order_relaxed);
}

// The function stops taking work: what waits here was never started and
// goes back to the broker at once; running work finishes. An escalated
// function stays in its queue group with no credit (`stay`): what it hands
// back goes to other members, or waits in the group for its revival
// (leaving, on a single node, dropped it: the group lost its last member).
// One that ended for good (temporary, or transient whose last instance
// quit) leaves: requests to it find no responders instead of waiting.
void pool_core::wind_down(const char* why, group_stay group) {
  if (phase_ != pool_phase::running) return;
  phase_ = pool_phase::wound_down;
  forget_pause();
  spec_.counters->stopped = true;
  ++generation_; // whatever runs now retires when done
  ++epoch_;
  // No more deliveries, what waits goes back, then UNSUB when leaving
  // (which hands back the rest: after it, a NACK would name no subscription).
  // (The shell subscribed before any delivery told the core its sid.)
  auto sid = sid_ ? sid_ : spec_.counters->sid.load();
  if (sid) emit(pool_cmd::set_credit{sid, 0});
  spec_.counters->credit = 0;
  owed_credit_ = 0; // withdrawn: nothing owed is given back (a revival sets it anew)
  for (auto& d : waiting_) hand_back(*d, why);
  waiting_.clear();
  if (group == group_stay::leave) {
    if (sid) emit(pool_cmd::unsubscribe{sid});
    spec_.counters->sid = 0;
    sid = 0;
  }
  sid_ = sid;
  note_gauges();
  for (auto id : idle_) retire(id);
  idle_.clear();
}

// ---------------------------------------------------------------- outcomes

// Items of a run its instance never started wait here again, in order,
// for the next instance (the broker never sees them fail).
void pool_core::requeue_unstarted(const work_run& run, bool died_on_one) {
  auto unstarted = run.finished + (died_on_one ? 1 : 0);
  for (std::size_t i = run.items.size(); i-- > unstarted;) {
    const auto& d = run.items[i];
    if (!live_phase()) {
      hand_back(*d, "function stopping");
      finished(*d);
    } else {
      waiting_.push_front(d);
    }
  }
}

// ACKs or NACKs what a run finished.
void pool_core::settle_finished(const work_run& run) {
  auto& c = *spec_.counters;
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
    if (ack_count) emit(pool_cmd::ack{ack_sid, ack_first, ack_count});
    ack_count = 0;
  };
  for (std::size_t i = 0; i < run.finished; ++i) {
    const auto& d = run.items[i];
    const auto& [kind, why] = run.outcomes[i];
    auto* t = i < run.trackers.size() ? run.trackers[i].get() : nullptr;
    if (kind == outcome::ok && t && t->pending.fetch_sub(1, std::memory_order_acq_rel) != 1) {
      // The last confirm settles it (published()); past a stop's grace it
      // stays unacked.
      if (phase_ != pool_phase::past_grace) deferred_.emplace(t, d);
      else c.handed_back.fetch_add(1, std::memory_order_relaxed); // left unacked
      continue;
    }
    if (kind == outcome::ok && t && t->failed.load(std::memory_order_relaxed) != 0) {
      unconfirmed_publish(*d, t->failed.load(std::memory_order_relaxed));
      continue;
    }
    switch (kind) {
      case outcome::ok:
        succeeded();
        if (ack_count && (d->sid != ack_sid || d->seq != ack_first + ack_count)) flush_acks();
        if (!ack_count) {
          ack_sid = d->sid;
          ack_first = d->seq;
        }
        ++ack_count;
        break;
      case outcome::rejected:
        ++c.rejected;
        emit(pool_cmd::nack{d->sid, d->seq, wire::nack_action::dead_letter, 0, why});
        break;
      case outcome::overloaded:
        settle_overloaded(run, i);
        continue;
      default:
        settle_failed(run, i);
        break;
    }
    finished(*d);
  }
  flush_acks();
}

// An error (not a crash, not a reject): the message waits in the broker
// for its next try, as the retry policy (or the handler) says. The delay
// is the one its context showed. On its last try it is NACKed plainly and
// the broker, at the SUB's max_deliver (delivery_limit), dead-letters it
// with this text: dead-lettering stays the broker's, in one place.
void pool_core::settle_failed(const work_run& run, std::size_t i) {
  const auto& d = *run.items[i];
  const auto& why = run.outcomes[i].second;
  auto& c = *spec_.counters;
  ++c.errors;
  auto asked = i < run.retry_after.size() ? run.retry_after[i] : std::chrono::milliseconds{-1};
  auto r = decide_retry(spec_.opts, d.count, jitter_unit(run.jitter, i), asked);
  if (!r.retry) { // its last try: the broker dead-letters it (the SUB's max_deliver is the limit)
    emit(pool_cmd::nack{d.sid, d.seq, wire::nack_action::requeue, 0, why});
    return;
  }
  c.retries.fetch_add(1, std::memory_order_relaxed);
  auto ms = std::min<std::chrono::milliseconds::rep>(r.delay.count(), UINT32_MAX);
  if (ms <= 0) emit(pool_cmd::nack{d.sid, d.seq, wire::nack_action::requeue, 0, why});
  else emit(pool_cmd::nack{d.sid, d.seq, wire::nack_action::delay, static_cast<std::uint32_t>(ms), why});
}

// The handler published to a queue group the broker had paused (flow
// control: the group's consumers are full). Not the message's fault, nor
// the function's: no error, no crash, no retry of its policy's. The pool
// takes no more work until the group is resumed (hold_credit), and the
// message waits in the broker meanwhile (a NACK with overload_delay), in
// its queue group once that is due: so the group fills in turn, and the
// broker pauses whoever publishes to it, back to the first publisher.
void pool_core::settle_overloaded(const work_run& run, std::size_t i) {
  const auto& d = run.items[i];
  ++spec_.counters->overloaded;
  if (live_phase() && !downstream_paused_) hold_credit(run.paused_topic);
  auto why = "overloaded: " + run.paused_topic + " is paused (its consumers are full)";
  if (live_phase() && d->count >= delivery_limit(spec_.opts)) {
    // Its last delivery: NACKed, the broker would dead-letter it for a
    // pause that is no fault of its own. It waits here, first in line.
    waiting_.push_front(d);
    note_gauges();
    return;
  }
  auto ms = std::min<std::chrono::milliseconds::rep>(
    overload_delay(spec_.opts, jitter_unit(run.jitter, i)).count(), UINT32_MAX);
  if (ms <= 0) emit(pool_cmd::nack{d->sid, d->seq, wire::nack_action::requeue, 0, why});
  else emit(pool_cmd::nack{d->sid, d->seq, wire::nack_action::delay, static_cast<std::uint32_t>(ms), why});
  finished(*d);
}

// Downstream paused: the broker sends this pool nothing more, and what it
// holds waits, until a probe finds the topic resumed (release_credit).
void pool_core::hold_credit(const std::string& topic) {
  downstream_paused_ = true;
  paused_topic_ = topic;
  ++pause_episode_;
  paused_since_ = last_now_;
  spec_.counters->downstream_pauses.fetch_add(1, std::memory_order_relaxed);
  auto sid = sid_ ? sid_ : spec_.counters->sid.load();
  if (sid) emit(pool_cmd::set_credit{sid, 0});
  spec_.counters->credit = 0;
  owed_credit_ = 0; // withdrawn: the resume sets the credit anew
  emit(pool_cmd::probe_downstream{downstream_probe_every, topic, pause_episode_});
}

// Resumed: the broker may send what the pool can hold again, less what it
// holds now (as after a revival).
void pool_core::release_credit() {
  downstream_paused_ = false;
  ++pause_episode_;
  auto held = static_cast<std::uint32_t>(handed_ + deferred_.size() + waiting_.size());
  auto cap = target_ + spec_.opts.prefetch;
  auto now = held >= cap ? 0 : cap - held;
  credit_debt_ = held > cap ? held - cap : 0;
  auto sid = sid_ ? sid_ : spec_.counters->sid.load();
  if (sid) emit(pool_cmd::set_credit{sid, now});
  spec_.counters->credit = now;
  if (target_ == 0) cold_start(); // scaled to zero meanwhile, with work waiting
  dispatch();
}

// The pool winds down or stops: a pause it held for no longer matters.
void pool_core::forget_pause() {
  downstream_paused_ = false;
  ++pause_episode_;
}

void pool_core::downstream_probed(std::uint64_t episode, bool still, clock::time_point now) {
  if (now > last_now_) last_now_ = now;
  if (!downstream_paused_ || episode != pause_episode_) return; // an earlier pause's
  if (!live_phase()) return forget_pause();
  if (!still) return release_credit();
  // Held here for half their ack_wait, the messages that wait go back to
  // the broker (to wait there), before it would redeliver them itself.
  auto ack_wait = std::chrono::milliseconds{spec_.opts.ack_wait_ms > 0 ? spec_.opts.ack_wait_ms : 30000};
  if (!waiting_.empty() && now - paused_since_ >= ack_wait / 2) {
    for (auto& d : waiting_) {
      auto ms = static_cast<std::uint32_t>(std::min<std::chrono::milliseconds::rep>(
        overload_delay(spec_.opts, draw()).count(), UINT32_MAX));
      emit(pool_cmd::nack{d->sid, d->seq, ms > 0 ? wire::nack_action::delay : wire::nack_action::requeue,
                          ms, "overloaded: " + paused_topic_ + " is paused (its consumers are full)"});
      spec_.counters->handed_back.fetch_add(1, std::memory_order_relaxed);
    }
    waiting_.clear();
    note_gauges();
    paused_since_ = now;
  }
  emit(pool_cmd::probe_downstream{downstream_probe_every, paused_topic_, pause_episode_});
}

// One more message handled: the service's intensity and backoff start over.
void pool_core::succeeded() {
  ++spec_.counters->ok;
  if (crashed_since_ok_) {
    crashed_since_ok_ = false;
    if (spec_.sup->succeeded()) emit(pool_cmd::recovered{});
  }
}

// A reliable invocation's publish was not confirmed ok (nobody subscribes
// yet, a broker lost it, ...): its message runs again after a second, and
// the publishes it repeats keep their ids (the broker drops those it has).
void pool_core::unconfirmed_publish(const delivery& d, std::uint32_t code) {
  ++spec_.counters->errors;
  emit(pool_cmd::nack{d.sid, d.seq, wire::nack_action::delay, 1000,
                      std::string{"a publish was not confirmed: "} + status_text(code)});
  finished(d);
}

// The message an instance died on: NACKed for a retry, or quarantined on
// $DLQ once it has crashed `poison_after` deliveries (poison is the
// message's fault; the service's intensity never counts redeliveries).
void pool_core::settle_crashed(const delivery& d, const std::string& why) {
  if (d.count >= spec_.opts.poison_after) {
    ++spec_.counters->quarantined;
    auto text = "crashed on " + std::to_string(d.count) + " deliveries: " + why;
    emit(pool_cmd::nack{d.sid, d.seq, wire::nack_action::dead_letter, 0, text});
    emit(pool_cmd::event{
      make_event("quarantine", d.msg_id.empty() ? text : "msg " + std::string{d.msg_id} + " " + text)});
  } else {
    emit(pool_cmd::nack{d.sid, d.seq, wire::nack_action::requeue, 0, "crash: " + why});
  }
  finished(d);
}

// Replaces every instance (or, for a temporary function, ends them): idle
// ones now, busy ones when they finish what they hold.
void pool_core::recycle_instances(bool replace) {
  if (!live_phase()) return;
  ++generation_;
  replace_retired_ = replace;
  auto idle = std::move(idle_);
  idle_.clear();
  for (auto id : idle) freed(id);
}

// A run ended in a crash (`why`), or its instance ended. The supervisor
// core decides at once and the replacement gets the waiting work before
// anything else: the broker side (ACKs, the NACK, events) is settled
// while it runs. `survivor` is an instance that caught its handler's
// exception: stateless, it is its own replacement.
void pool_core::run_ended(const work_run_ptr& run, const std::optional<std::string>& why,
                          std::optional<instance_id> survivor, const std::string& source,
                          clock::time_point now) {
  const delivery* victim = why && run && run->finished < run->items.size()
                             ? run->items[run->finished].get() : nullptr;
  if (run) requeue_unstarted(*run, victim != nullptr);

  supervisor_plan plan;
  if (why) {
    ++spec_.counters->crashes;
    crashed_since_ok_ = true;
    auto report = victim ? crash_report{spec_.index, victim->count, message_key(*victim)}
                         : crash_report{spec_.index, 1, "idle:" + source};
    plan = spec_.sup->crashed(report, now);
  } else {
    plan = spec_.sup->exited(spec_.index);
  }
  bool live = live_phase();
  // This function's own part of a one_for_all / rest_for_one restart is
  // done first; the service does the siblings'.
  bool recycled_here = live && std::erase(plan.recycle, spec_.index) > 0;
  if (recycled_here) recycle_instances(spec_.opts.restart != temporary);
  bool at_once = live && plan.restart && plan.delay.count() == 0;
  if (at_once) ++spec_.counters->restarts;
  if (at_once && survivor && !recycled_here) {
    freed(*survivor); // back to work (or replaced, if recycled while busy)
  } else {
    if (survivor) retire(*survivor);
    if (at_once) spawn_instance();
  }
  dispatch();

  if (run) settle_finished(*run);
  if (victim) settle_crashed(*victim, *why);
  credit_if_dry();
  if (live && plan.escalate) {
    wind_down("service stopped: past its restart intensity", group_stay::stay);
    emit(pool_cmd::escalate{*why, plan.intensity});
  } else if (live) {
    if (plan.restart && plan.delay.count() > 0) emit(pool_cmd::restart_later{plan.delay, epoch_});
    if (why && plan.restart) {
      auto e = make_event("restart", *why);
      e.delay_ms = static_cast<std::uint64_t>(plan.delay.count());
      e.intensity = plan.intensity;
      emit(pool_cmd::event{std::move(e)});
    }
    if (why && recycled_here)
      emit(pool_cmd::event{make_event("recycle", spec_.function + " crashed: " + *why)});
    if (why && !plan.recycle.empty()) emit(pool_cmd::recycle_siblings{plan.recycle, *why});
  }
  // A function that gets no new instance has ended with its last one: a
  // temporary function is never restarted, a transient one not after a
  // normal exit. (Scaled to zero is no end: the target is 0 then.)
  if (spec_.opts.restart != permanent && born_.empty() && live && !plan.restart && target_ > 0)
    wind_down("function ended", group_stay::leave);
  // Work waits and nothing is left to run it (the instance from before a
  // revival to zero ended): the next instance is a cold start, now.
  if (live_phase() && born_.empty() && !waiting_.empty()) cold_start();
  maybe_quit();
}

// ---------------------------------------------------------------- scaling

// Runs `to` instances: new ones are spawned and the broker granted their
// credit; excess ones retire once idle (in freed), and their credit is
// held back. The decision is announced at the next tick, not now:
// publishing sat on a cold start's critical path (~20 us p50).
void pool_core::scale_to(std::uint32_t to, const char* why) {
  auto from = target_;
  if (to == from || !live_phase()) return;
  target_ = to;
  spec_.counters->instances = to;
  if (to > from) {
    for (auto n = static_cast<std::uint32_t>(born_.size()); n < to; ++n) spawn_instance();
    auto more = to - from;
    auto repaid = std::min(more, credit_debt_);
    credit_debt_ -= repaid;
    if (more > repaid && sid_ && !downstream_paused_) { // paused: the resume sets it
      emit(pool_cmd::grant_credit{sid_, more - repaid});
      spec_.counters->credit.fetch_add(more - repaid, std::memory_order_relaxed);
    }
  } else {
    credit_debt_ += from - to;
    std::vector<instance_id> keep;
    for (auto id : idle_) {
      if (born_.size() > to) retire(id);
      else keep.push_back(id);
    }
    idle_ = std::move(keep);
  }
  scale_event e;
  e.service = spec_.service;
  e.function = spec_.function;
  e.from = from;
  e.to = to;
  e.why = why;
  unannounced_.push_back(std::move(e));
  dispatch();
}

// A message for a function scaled to zero: one instance, now. Its first
// run is timed from the message's arrival at the node (a cold start).
void pool_core::cold_start() {
  if (target_ > 0 || !live_phase() || waiting_.empty()) return;
  ++spec_.counters->cold_starts;
  cold_pending_ = true;
  scale_to(1, "cold start");
}

// ---------------------------------------------------------------- inputs

// Whether `d` may start now under the function's rate; if not, it is
// NACKed to come back at its reserved slot (and its credit given back).
bool pool_core::admit(const delivery& d, clock::time_point now) {
  if (!rate_limited_) return true;
  if (!reserved_.empty()) {
    if (auto it = reserved_.find(message_key(d)); it != reserved_.end()) {
      reserved_.erase(it); // its turn was kept for it
      return true;
    }
  }
  if (tat_ < now) tat_ = now;
  if (tat_ - now <= tolerance_) {
    tat_ += interval_;
    return true;
  }
  auto slot = tat_ - tolerance_;
  tat_ += interval_;
  if (reserved_.size() >= sweep_at_) { // slots long past: their messages went elsewhere
    std::erase_if(reserved_, [now](const auto& kv) { return kv.second + std::chrono::minutes{1} < now; });
    sweep_at_ = std::max<std::size_t>(1024, 2 * reserved_.size());
  }
  reserved_.insert_or_assign(message_key(d), slot);
  auto wait = std::chrono::ceil<std::chrono::milliseconds>(slot - now).count();
  auto ms = static_cast<std::uint32_t>(std::clamp<std::int64_t>(wait, 1, UINT32_MAX));
  spec_.counters->throttled.fetch_add(1, std::memory_order_relaxed);
  emit(pool_cmd::nack{d.sid, d.seq, wire::nack_action::delay, ms, "rate limited"});
  finished(d);
  return false;
}

// A request that would wait behind max_queued others (taken in, not
// started; an idle instance starts one at once) is refused now: its
// requester hears `rejected` instead of waiting, and it is ACKed (it was
// answered). Other messages are never shed.
bool pool_core::shed(const delivery& d) {
  auto limit = spec_.opts.max_queued;
  if (limit == 0 || d.reply_to.empty()) return false;
  auto queued = waiting_.size() + handed_ - busy_.size();
  if (queued < idle_.size() + limit) return false;
  spec_.counters->shed.fetch_add(1, std::memory_order_relaxed);
  emit(pool_cmd::refuse{std::string{d.reply_to},
                        "overloaded: " + std::to_string(queued) + " waiting in " + spec_.service + "." +
                          spec_.function + " (max_queued " + std::to_string(limit) + ")"});
  emit(pool_cmd::ack{d.sid, d.seq, 1});
  finished(d);
  return true;
}

void pool_core::take(const delivery_batch& b, clock::time_point now) {
  if (now > last_now_) last_now_ = now;
  auto& c = *spec_.counters;
  // Each delivery used one credit of its subscription's.
  auto sid = c.sid.load(std::memory_order_relaxed);
  auto of_sid = std::count_if(b->items.begin(), b->items.end(),
                              [sid](const delivery& d) { return d.sid == sid; });
  c.credit.fetch_sub(of_sid, std::memory_order_relaxed);
  for (auto& d : b->items) {
    if (!live_phase()) {
      hand_back(d, "function stopping");
      continue;
    }
    sid_ = d.sid;
    if (d.count > 1) c.redeliveries.fetch_add(1, std::memory_order_relaxed);
    if (shed(d) || !admit(d, now)) continue;
    waiting_.emplace_back(b, &d); // shares the block
    ++taken_since_tick_;
  }
  if (target_ == 0) cold_start();
  dispatch();
  credit_if_dry(); // what went back for its turn is credited now when nothing runs
}

void pool_core::run_done(instance_id id, clock::time_point now) {
  if (now > last_now_) last_now_ = now;
  auto it = busy_.find(id);
  if (it == busy_.end()) return;
  auto run = std::move(it->second);
  handed_ -= run->items.size();
  busy_.erase(it);
  if (run->crash) return run_ended(run, run->crash, id, std::to_string(id), now);
  if (run->overloaded) requeue_unstarted(*run, false); // what it never started waits here
  settle_finished(*run);
  freed(id);
  dispatch();
  credit_if_dry();
  maybe_quit();
}

void pool_core::instance_down(instance_id id, const std::optional<std::string>& crash,
                              clock::time_point now) {
  std::erase(idle_, id);
  if (retired_.erase(id) > 0) { // the core's own doing
    maybe_quit();
    return;
  }
  born_.erase(id);
  spec_.counters->live = static_cast<std::uint32_t>(born_.size());
  work_run_ptr run;
  if (auto it = busy_.find(id); it != busy_.end()) {
    run = it->second;
    handed_ -= run->items.size();
    busy_.erase(it);
  }
  run_ended(run, crash, std::nullopt, std::to_string(id), now);
}

void pool_core::tick(clock::time_point now) {
  if (now > last_now_) last_now_ = now;
  if (stopping() || !scaler_) return;
  if (live_phase() && !downstream_paused_) { // paused: what waits is no demand for instances
    // Demand: messages at work or waiting now; at least 1 if any came in
    // since the last tick (work that starts and ends between ticks is
    // demand too: idle_grace counts from the last message).
    auto demand = static_cast<std::uint32_t>(busy_.size() + waiting_.size());
    if (demand == 0 && taken_since_tick_ > 0) demand = 1;
    taken_since_tick_ = 0;
    auto d = scaler_->sample(target_, demand, now);
    scale_to(d.instances, d.why);
  }
  for (auto& e : unannounced_) emit(pool_cmd::scaled{std::move(e)});
  unannounced_.clear();
}

void pool_core::published(const publish_tracker* t) {
  auto it = deferred_.find(t);
  if (it == deferred_.end()) return;
  auto d = std::move(it->second);
  deferred_.erase(it);
  if (auto code = t->failed.load(std::memory_order_relaxed); code != 0) {
    unconfirmed_publish(*d, code);
  } else {
    succeeded();
    emit(pool_cmd::ack{d->sid, d->seq, 1});
    finished(*d);
  }
  credit_if_dry();
  maybe_quit();
}

void pool_core::restart_due(std::uint64_t epoch) {
  if (!live_phase() || epoch != epoch_) return; // wound down or stopped meanwhile
  ++spec_.counters->restarts;
  spawn_instance();
  dispatch();
}

void pool_core::recycle(bool replace) {
  recycle_instances(replace);
  dispatch();
}

void pool_core::escalate() { wind_down("service stopped: past its restart intensity", group_stay::stay); }

void pool_core::revive() {
  if (phase_ != pool_phase::wound_down) return;
  phase_ = pool_phase::running;
  spec_.counters->stopped = false;
  replace_retired_ = true;
  owed_credit_ = 0;
  target_ = spec_.opts.scale.min;
  for (std::uint32_t i = 0; i < target_; ++i) spawn_instance();
  // What still runs from before the escalation (or waits for its confirms)
  // takes room: the broker gets the rest now, and the held messages' credit
  // as they finish, never more than the pool's capacity in all.
  auto held = static_cast<std::uint32_t>(handed_ + deferred_.size());
  auto cap = initial_credit();
  if (sid_) { // still in its group (escalated): its credit again
    auto now = held >= cap ? 0 : cap - held;
    credit_debt_ = held > cap ? held - cap : 0;
    if (now > 0) emit(pool_cmd::set_credit{sid_, now}); // else it is 0 since the escalation
    spec_.counters->sid = sid_;
    spec_.counters->credit = now;
  } else { // a new subscription, with its own credit: the old one's is gone
    credit_debt_ = held;
    emit(pool_cmd::subscribe{});
  }
}

void pool_core::stop() {
  if (stopping()) return;
  phase_ = pool_phase::stopping;
  forget_pause();
  // The broker sends nothing more; what never started here goes back for
  // another member (with credit left, a lone member would get it back and
  // NACK it again until it was dead-lettered).
  if (auto sid = spec_.counters->sid.load()) {
    emit(pool_cmd::set_credit{sid, 0});
    spec_.counters->credit = 0;
  }
  owed_credit_ = 0; // withdrawn: nothing owed is given back
  for (auto& d : waiting_) hand_back(*d, "node stopping");
  waiting_.clear();
  note_gauges();
  maybe_quit();
}

// A stop's grace is over: what waits for confirms (its consumer may be a
// function of this node, stopped too, or failing), now or later, stays
// unacked, and the UNSUB after the pool ends gives it back to the broker.
// Run again elsewhere, it publishes under the same msg ids, which the
// broker's dedup window answers without passing them on.
void pool_core::grace_over() {
  if (phase_ != pool_phase::stopping) return;
  phase_ = pool_phase::past_grace;
  spec_.counters->handed_back.fetch_add(deferred_.size(), std::memory_order_relaxed);
  deferred_.clear();
  maybe_quit();
}

} // namespace plexus::detail
