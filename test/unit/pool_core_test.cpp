// SPDX-License-Identifier: Apache-2.0
// The function pool's core (pool_core.hpp) driven alone, with a fake clock:
// the harness plays the shell (instances that take runs and report them,
// the broker's view of the subscription's credit) and checks the pool's
// invariants after every input: no delivery settled twice, runs only to
// idle live instances and only of what waits, what the core holds adds up,
// no work waits while an instance idles, no credit is granted once
// withdrawn, and the broker never holds more credit than max + prefetch
// minus what the pool holds.
#define BOOST_TEST_MODULE plexus_pool_core
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "pool_core.hpp"
#include "print.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using namespace plexus::detail;

namespace {

using time_point = pool_core::clock::time_point;
using key = std::pair<std::uint32_t, std::uint64_t>; // a delivery: (sid, seq)

/// A message the broker delivers (msg_id "m<seq>" unless given).
struct msg {
  std::uint64_t seq = 0;
  std::uint32_t count = 1;
  std::string msg_id{};
  std::string reply_to{}; // a request's
};

std::vector<msg> seqs(std::uint64_t first, std::uint64_t n, std::uint32_t count = 1) {
  std::vector<msg> out;
  for (auto s = first; s < first + n; ++s) out.push_back({s, count});
  return out;
}

// A block as the pool's shell makes it (copy_deliveries).
delivery_batch make_batch(std::uint32_t sid, const std::vector<msg>& msgs) {
  std::vector<std::string> ids, payloads, replies;
  for (auto& m : msgs) {
    replies.push_back(m.reply_to);
    ids.push_back(m.msg_id.empty() ? "m" + std::to_string(m.seq) : m.msg_id);
    payloads.push_back("p" + std::to_string(m.seq));
  }
  std::vector<delivery> views(msgs.size());
  for (std::size_t i = 0; i < msgs.size(); ++i)
    views[i] = delivery{sid, msgs[i].seq, msgs[i].count, 0, 0, "orders", payloads[i], ids[i], replies[i], {}};
  return copy_deliveries(std::move(views)); // the strings above die here
}

template <class T>
std::vector<T> of(const std::vector<pool_command>& cmds) {
  std::vector<T> out;
  for (auto& c : cmds)
    if (auto* p = std::get_if<T>(&c)) out.push_back(*p);
  return out;
}

std::vector<std::uint64_t> seqs_of(const work_run& run) {
  std::vector<std::uint64_t> out;
  for (auto& d : run.items) out.push_back(d->seq);
  return out;
}

const char* failed_why = "bad input";
const char* rejected_why = "not mine";

// A service that never escalates by accident, with the defaults' backoff.
service_options patient() { return {.max_restarts = 100, .within = 10s}; }

function_options fixed(std::uint32_t n, std::uint32_t prefetch = 8) {
  function_options o;
  o.scale.min = o.scale.max = n;
  o.prefetch = prefetch;
  return o;
}

class pool_harness {
public:
  /// `random`: the core's jitter draws (empty: its own generator).
  explicit pool_harness(function_options o, service_options so = patient(),
                        std::function<double()> random = {})
    : opts_(o), counters_(std::make_shared<pool_counters>()),
      sup_(std::make_shared<shared_supervisor>(so, std::vector<restart_type>{o.restart, permanent}, 1)),
      core_(pool_core_spec{"svc", "fn", 0, o, counters_, sup_, std::move(random)}) {}

  /// The fake clock moves on, and nothing else happens.
  void advance(std::chrono::milliseconds by) { now_ += by; }

  pool_core& core() { return core_; }
  pool_counters& counters() { return *counters_; }
  shared_supervisor& sup() { return *sup_; }
  [[nodiscard]] time_point now() const { return now_; }
  [[nodiscard]] std::uint32_t sid() const { return sid_; }

  // ------------------------------------------------------------ inputs

  /// As the shell: start, subscribe with initial_credit(), say subscribed.
  void start(std::uint32_t sid = 7) {
    core_.start(now_);
    collect();
    subscribe(sid);
    check();
  }

  /// The broker sends `msgs` within the subscription's credit.
  void deliver(const std::vector<msg>& msgs) {
    BOOST_TEST_REQUIRE(credit_[sid_] >= static_cast<std::int64_t>(msgs.size()),
                       "the broker has credit for " << credit_[sid_] << " only");
    credit_[sid_] -= static_cast<std::int64_t>(msgs.size());
    take(sid_, msgs);
  }
  /// ... sent before the credit was withdrawn, arriving after.
  void deliver_in_flight(const std::vector<msg>& msgs) { take(sid_, msgs); }

  /// Instance `id` reports its run: `kinds` for its first items (all ok
  /// when empty and no crash), then `crash` on the next one.
  void done(instance_id id, std::vector<outcome> kinds = {}, std::optional<std::string> crash = {},
            std::vector<tracker_ptr> trackers = {}) {
    auto it = runs_.find(id);
    BOOST_TEST_REQUIRE((it != runs_.end()), "instance " << id << " holds no run");
    auto run = it->second;
    runs_.erase(it);
    if (kinds.empty() && !crash) kinds.assign(run->items.size(), outcome::ok);
    BOOST_TEST_REQUIRE(kinds.size() <= run->items.size());
    BOOST_TEST_REQUIRE((crash || kinds.size() == run->items.size()), "a run ends finished or crashed");
    record(*run, kinds, std::move(trackers));
    run->crash = std::move(crash);
    core_.run_done(id, now_);
    collect();
  }

  /// Instance `id` ends (`crash`: why; none: a normal exit), having
  /// finished `kinds` of its run if it had one.
  void down(instance_id id, std::optional<std::string> crash, std::vector<outcome> kinds = {}) {
    BOOST_TEST_REQUIRE(live_.count(id) == 1u, "instance " << id << " is not alive");
    live_.erase(id);
    retired_.erase(id);
    if (auto it = runs_.find(id); it != runs_.end()) {
      record(*it->second, kinds, {});
      runs_.erase(it);
    }
    core_.instance_down(id, crash, now_);
    collect();
  }

  void tick(std::chrono::milliseconds after = 100ms) {
    now_ += after;
    core_.tick(now_);
    collect();
  }
  void published(const tracker_ptr& t) {
    core_.published(t.get());
    collect();
  }
  void restart_due(std::uint64_t epoch) {
    core_.restart_due(epoch);
    collect();
  }
  void recycle(bool replace) {
    core_.recycle(replace);
    collect();
  }
  void escalate() {
    core_.escalate();
    collect();
  }
  /// The root revives the service: its supervisor first, then each pool.
  void revive() {
    BOOST_TEST_REQUIRE(sup_->revive(), "the service had not escalated");
    withdrawn_.clear(); // a revival gives credit again: grants are fine from here
    core_.revive();
    collect();
  }
  void stop() {
    core_.stop();
    collect();
  }
  void grace_over() {
    core_.grace_over();
    collect();
  }

  // ------------------------------------------------------------ what came out

  /// Commands since the last mark().
  [[nodiscard]] const std::vector<pool_command>& window() const { return window_; }
  template <class T>
  [[nodiscard]] std::vector<T> got() const {
    return of<T>(window_);
  }
  void mark() { window_.clear(); }

  /// Outstanding runs, by instance.
  [[nodiscard]] const std::map<instance_id, work_run_ptr>& runs() const { return runs_; }
  [[nodiscard]] std::vector<std::uint64_t> run_of(instance_id id) const {
    auto it = runs_.find(id);
    return it == runs_.end() ? std::vector<std::uint64_t>{} : seqs_of(*it->second);
  }
  [[nodiscard]] bool retired(instance_id id) const { return retired_.count(id) == 1; }

  /// How a delivery of the current subscription ended: "ack", "requeue",
  /// "delay", "dead_letter", or "" (not yet).
  [[nodiscard]] std::string settled(std::uint64_t seq) const {
    auto it = settled_.find({sid_, seq});
    return it == settled_.end() ? "" : it->second;
  }
  /// The NACK of a delivery of the current subscription (the test fails without one).
  [[nodiscard]] pool_cmd::nack nack_of(std::uint64_t seq) const {
    for (auto& n : nacks_)
      if (n.sid == sid_ && n.seq == seq) return n;
    BOOST_TEST_REQUIRE(false, "seq " << seq << " was never NACKed");
    return {};
  }
  /// The credit the broker holds for the subscription.
  [[nodiscard]] std::int64_t credit() const {
    auto it = credit_.find(sid_);
    return it == credit_.end() ? 0 : it->second;
  }
  [[nodiscard]] bool subscribed() const { return alive_.count(sid_) == 1; }
  [[nodiscard]] int quits() const { return quits_; }

private:
  // As subscribe_pool: the broker holds initial_credit() for the new sid.
  void subscribe(std::uint32_t sid) {
    sid_ = sid;
    alive_.insert(sid);
    credit_[sid] = core_.initial_credit();
    core_.subscribed(sid);
    BOOST_TEST_REQUIRE(core_.take_commands().empty(), "subscribed() answered with commands");
  }

  void take(std::uint32_t sid, const std::vector<msg>& msgs) {
    for (auto& m : msgs) {
      BOOST_TEST_REQUIRE(taken_.insert({sid, m.seq}).second, "the broker repeats seq " << m.seq);
      ++held_[sid];
    }
    core_.take(make_batch(sid, msgs), now_);
    collect();
  }

  void record(work_run& run, const std::vector<outcome>& kinds, std::vector<tracker_ptr> trackers) {
    for (auto k : kinds)
      run.outcomes.emplace_back(static_cast<std::uint8_t>(k),
                                k == outcome::failed ? failed_why : k == outcome::rejected ? rejected_why : "");
    run.finished = kinds.size();
    if (!trackers.empty()) {
      trackers.resize(run.items.size());
      run.trackers = std::move(trackers);
    }
  }

  void settle(std::uint32_t sid, std::uint64_t seq, std::string how) {
    key k{sid, seq};
    BOOST_TEST_REQUIRE(taken_.count(k) == 1u, "settled (" << sid << ", " << seq << "), never taken in");
    auto [it, fresh] = settled_.emplace(k, how);
    BOOST_TEST_REQUIRE(fresh, "(" << sid << ", " << seq << ") settled twice: " << it->second << ", " << how);
    for (auto& [id, run] : runs_)
      for (auto& d : run->items)
        BOOST_TEST_REQUIRE(!(d->sid == sid && d->seq == seq), "settled while instance " << id << " runs it");
    --held_[sid];
  }

  // Carries out the core's commands as the shell would, then checks.
  void collect() {
    auto cmds = core_.take_commands();
    BOOST_TEST_REQUIRE((quits_ == 0 || cmds.empty()), "commands after quit");
    for (auto& c : cmds) {
      if (auto* a = std::get_if<pool_cmd::ack>(&c)) {
        BOOST_TEST_REQUIRE(a->count >= 1u);
        for (std::uint32_t i = 0; i < a->count; ++i) settle(a->sid, a->seq + i, "ack");
      } else if (auto* n = std::get_if<pool_cmd::nack>(&c)) {
        const char* how[] = {"requeue", "delay", "dead_letter"};
        settle(n->sid, n->seq, how[static_cast<int>(n->action)]);
        nacks_.push_back(*n);
      } else if (auto* g = std::get_if<pool_cmd::grant_credit>(&c)) {
        BOOST_TEST_REQUIRE(g->n >= 1u, "an empty CREDIT");
        BOOST_TEST_REQUIRE(withdrawn_.count(g->sid) == 0u,
                           "granted " << g->n << " credit on sid " << g->sid << " after withdrawing it");
        if (alive_.count(g->sid)) credit_[g->sid] += g->n;
      } else if (auto* s = std::get_if<pool_cmd::set_credit>(&c)) {
        if (alive_.count(s->sid)) credit_[s->sid] = s->n;
        if (s->n == 0) withdrawn_.insert(s->sid);
        else withdrawn_.erase(s->sid);
      } else if (auto* u = std::get_if<pool_cmd::unsubscribe>(&c)) {
        BOOST_TEST_REQUIRE(alive_.erase(u->sid) == 1u, "UNSUB of sid " << u->sid << ", not subscribed");
      } else if (std::holds_alternative<pool_cmd::subscribe>(c)) {
        subscribe(sid_ + 1); // a new subscription: the shell answers at once
      } else if (auto* sp = std::get_if<pool_cmd::spawn>(&c)) {
        BOOST_TEST_REQUIRE(spawned_.insert(sp->id).second, "instance id " << sp->id << " reused");
        live_.insert(sp->id);
      } else if (auto* r = std::get_if<pool_cmd::retire>(&c)) {
        BOOST_TEST_REQUIRE(live_.count(r->id) == 1u, "retired instance " << r->id << ", not alive");
        BOOST_TEST_REQUIRE(retired_.insert(r->id).second, "instance " << r->id << " retired twice");
        BOOST_TEST_REQUIRE(runs_.count(r->id) == 0u, "retired instance " << r->id << " while it runs");
      } else if (auto* run = std::get_if<pool_cmd::run>(&c)) {
        check_run(*run);
        runs_.emplace(run->id, run->work);
      } else if (std::holds_alternative<pool_cmd::quit>(c)) {
        ++quits_;
      }
      window_.push_back(c);
    }
    check();
  }

  void check_run(const pool_cmd::run& r) {
    BOOST_TEST_REQUIRE(live_.count(r.id) == 1u, "a run for instance " << r.id << ", not alive");
    BOOST_TEST_REQUIRE(retired_.count(r.id) == 0u, "a run for retired instance " << r.id);
    BOOST_TEST_REQUIRE(runs_.count(r.id) == 0u, "a run for busy instance " << r.id);
    BOOST_TEST_REQUIRE(r.work->items.size() >= 1u);
    BOOST_TEST_REQUIRE(r.work->items.size() <= 32u);
    BOOST_TEST_REQUIRE(r.work->finished == 0u);
    for (auto& d : r.work->items) {
      key k{d->sid, d->seq};
      BOOST_TEST_REQUIRE(taken_.count(k) == 1u, "runs a delivery never taken in");
      BOOST_TEST_REQUIRE(settled_.count(k) == 0u, "runs seq " << d->seq << ", already settled");
      for (auto& [id, other] : runs_)
        for (auto& o : other->items)
          BOOST_TEST_REQUIRE(!(o->sid == d->sid && o->seq == d->seq),
                             "seq " << d->seq << " in two runs (also instance " << id << ")");
    }
  }

  void check() {
    BOOST_TEST_REQUIRE(quits_ <= 1, "quit twice");
    BOOST_TEST_REQUIRE(core_.busy() == runs_.size());
    BOOST_TEST_REQUIRE(counters_->live.load() == core_.live());
    // What the core holds is what was taken in and not settled.
    std::size_t in_runs = 0;
    for (auto& [id, run] : runs_) in_runs += run->items.size();
    std::int64_t held = 0;
    for (auto& [sid, n] : held_) held += n;
    if (core_.phase() != pool_phase::past_grace)
      BOOST_TEST_REQUIRE(static_cast<std::int64_t>(core_.waiting() + in_runs + core_.deferred()) == held,
                         "the core holds " << core_.waiting() + in_runs + core_.deferred()
                                           << " deliveries, " << held << " are unsettled");
    // The broker's credit plus what the pool holds is its capacity: never
    // more than max instances + prefetch (no credit made up).
    if (core_.phase() == pool_phase::running && alive_.count(sid_))
      BOOST_TEST_REQUIRE(credit_[sid_] + held_[sid_] <= opts_.scale.max + opts_.prefetch,
                         "the broker holds credit " << credit_[sid_] << " with " << held_[sid_]
                                                    << " messages held");
    if (quits_) BOOST_TEST_REQUIRE(core_.live() == 0u, "quit with live instances");
    // Work never waits while an instance idles.
    if (core_.waiting() > 0) {
      BOOST_TEST_REQUIRE((core_.phase() == pool_phase::running), "work waits in a pool that takes none");
      BOOST_TEST_REQUIRE(core_.live() == core_.busy(), "work waits while an instance idles");
    }
  }

  function_options opts_;
  std::shared_ptr<pool_counters> counters_;
  std::shared_ptr<shared_supervisor> sup_;
  pool_core core_;
  time_point now_ = time_point{} + 1000h;
  std::vector<pool_command> window_;
  std::set<instance_id> spawned_, live_, retired_;
  std::map<instance_id, work_run_ptr> runs_;
  std::set<key> taken_;
  std::map<key, std::string> settled_;
  std::vector<pool_cmd::nack> nacks_;
  std::map<std::uint32_t, std::int64_t> credit_, held_;
  std::set<std::uint32_t> alive_, withdrawn_; // withdrawn: set to 0 until set again
  std::uint32_t sid_ = 0;
  int quits_ = 0;
};

std::uint32_t sum(const std::vector<pool_cmd::grant_credit>& grants) {
  std::uint32_t n = 0;
  for (auto& g : grants) n += g.n;
  return n;
}

tracker_ptr tracker(std::uint32_t unconfirmed, std::uint32_t failed = 0) {
  auto t = std::make_shared<publish_tracker>();
  t->pending = 1 + unconfirmed;
  t->failed = failed;
  return t;
}

// The last confirm of `t` is in: the connector's side of published().
bool confirm(const tracker_ptr& t) { return t->pending.fetch_sub(1) == 1; }

} // namespace

BOOST_AUTO_TEST_SUITE(pool_core)

// ---------------------------------------------------------------- start

BOOST_AUTO_TEST_CASE(start_spawns_scale_min_instances_and_asks_for_min_plus_prefetch_credit) {
  pool_harness t{fixed(3, 8)};
  t.start(7);
  auto spawns = t.got<pool_cmd::spawn>();
  BOOST_TEST(spawns.size() == 3u);
  BOOST_TEST(t.window().size() == 3u); // nothing else: no credit, no run
  BOOST_TEST(t.core().initial_credit() == 11u);
  BOOST_TEST(t.core().live() == 3u);
  BOOST_TEST(t.core().target() == 3u);
  BOOST_TEST((t.core().phase() == pool_phase::running));
  BOOST_TEST(t.counters().sid.load() == 7u);
  BOOST_TEST(t.counters().credit.load() == 11);

  auto zero = fixed(0, 8);
  zero.scale.max = 4;
  pool_harness z{zero};
  z.start();
  BOOST_TEST(z.got<pool_cmd::spawn>().empty());
  BOOST_TEST(z.core().initial_credit() == 8u);
}

// ---------------------------------------------------------------- runs

BOOST_AUTO_TEST_CASE(a_batch_is_spread_over_idle_instances_as_runs_in_order) {
  pool_harness t{fixed(2, 100)};
  t.start();
  t.mark();
  t.deliver(seqs(1, 10));
  auto runs = t.got<pool_cmd::run>();
  BOOST_TEST_REQUIRE(runs.size() == 2u); // one actor message per instance, not per delivery
  BOOST_TEST(runs[0].id != runs[1].id);
  BOOST_TEST((seqs_of(*runs[0].work) == std::vector<std::uint64_t>{1, 2, 3, 4, 5}));
  BOOST_TEST((seqs_of(*runs[1].work) == std::vector<std::uint64_t>{6, 7, 8, 9, 10}));
  BOOST_TEST(t.core().waiting() == 0u);
  BOOST_TEST(t.core().busy() == 2u);

  // Both busy: the next batch waits, then goes to whoever frees up.
  t.mark();
  t.deliver(seqs(11, 90));
  BOOST_TEST(t.got<pool_cmd::run>().empty());
  BOOST_TEST(t.core().waiting() == 90u);
  t.mark();
  t.done(runs[0].id);
  auto next = t.got<pool_cmd::run>();
  BOOST_TEST_REQUIRE(next.size() == 1u);
  BOOST_TEST(next[0].id == runs[0].id);
  BOOST_TEST(next[0].work->items.size() == 32u); // a run is at most 32
  BOOST_TEST(next[0].work->items.front()->seq == 11u);
  BOOST_TEST(t.core().waiting() == 58u);
}

BOOST_AUTO_TEST_CASE(a_run_is_at_most_32_even_with_many_idle_instances_and_more_waiting) {
  pool_harness t{fixed(3, 200)};
  t.start();
  t.mark();
  t.deliver(seqs(1, 100));
  auto runs = t.got<pool_cmd::run>();
  BOOST_TEST_REQUIRE(runs.size() == 3u);
  for (auto& r : runs) BOOST_TEST(r.work->items.size() == 32u);
  BOOST_TEST(t.core().waiting() == 4u);
}

BOOST_AUTO_TEST_CASE(finished_messages_are_acked_one_ack_per_run_of_consecutive_seqs) {
  pool_harness t{fixed(1, 100)};
  t.start();
  t.deliver({{1}, {2}, {3}, {5}, {6}, {9}});
  BOOST_TEST_REQUIRE(t.runs().size() == 1u);
  auto id = t.runs().begin()->first;
  t.mark();
  t.done(id);
  auto acks = t.got<pool_cmd::ack>();
  BOOST_TEST_REQUIRE(acks.size() == 3u);
  BOOST_TEST(acks[0].sid == t.sid());
  BOOST_TEST(acks[0].seq == 1u);
  BOOST_TEST(acks[0].count == 3u);
  BOOST_TEST(acks[1].seq == 5u);
  BOOST_TEST(acks[1].count == 2u);
  BOOST_TEST(acks[2].seq == 9u);
  BOOST_TEST(acks[2].count == 1u);
  BOOST_TEST(t.got<pool_cmd::nack>().empty());
  BOOST_TEST(t.counters().ok.load() == 6u);
}

BOOST_AUTO_TEST_CASE(credit_goes_back_in_batches_of_a_quarter_of_the_prefetch_and_all_at_once_when_dry) {
  pool_harness t{fixed(2, 8)}; // batches of 2
  t.start();
  t.deliver(seqs(1, 6)); // two runs of 3
  BOOST_TEST(t.credit() == 4);
  auto first = t.runs().begin()->first;
  auto second = std::next(t.runs().begin())->first;
  t.mark();
  t.done(first);
  auto grants = t.got<pool_cmd::grant_credit>();
  BOOST_TEST_REQUIRE(grants.size() == 1u); // 2 back, the third waits for a batch
  BOOST_TEST(grants[0].n == 2u);
  BOOST_TEST(grants[0].sid == t.sid());
  BOOST_TEST(t.credit() == 6);
  t.mark();
  t.done(second);
  // 4 finished since: two batches of 2; nothing left owed.
  BOOST_TEST(sum(t.got<pool_cmd::grant_credit>()) == 4u);
  BOOST_TEST(t.credit() == 10); // all of it back

  // A pool that runs dry gives back what it owes at once.
  t.deliver({{7}});
  t.mark();
  t.done(t.runs().begin()->first);
  grants = t.got<pool_cmd::grant_credit>();
  BOOST_TEST_REQUIRE(grants.size() == 1u);
  BOOST_TEST(grants[0].n == 1u);
  BOOST_TEST(t.credit() == 10);
}

BOOST_AUTO_TEST_CASE(a_failed_outcome_is_nacked_with_a_backoff_and_a_rejected_one_dead_lettered) {
  pool_harness t{fixed(1)};
  t.start();
  t.deliver(seqs(1, 3));
  t.done(t.runs().begin()->first, {outcome::ok, outcome::failed, outcome::rejected});
  BOOST_TEST(t.settled(1) == "ack");
  // The default policy: 100 ms for the first retry, equal jitter: [50, 100].
  auto requeued = t.nack_of(2);
  BOOST_TEST(requeued.action == wire::nack_action::delay);
  BOOST_TEST(requeued.delay_ms >= 50u);
  BOOST_TEST(requeued.delay_ms <= 100u);
  BOOST_TEST(requeued.reason == failed_why);
  BOOST_TEST(t.counters().retries.load() == 1u);
  auto dead = t.nack_of(3);
  BOOST_TEST(dead.action == wire::nack_action::dead_letter);
  BOOST_TEST(dead.reason == rejected_why);
  BOOST_TEST(t.counters().ok.load() == 1u);
  BOOST_TEST(t.counters().errors.load() == 1u);
  BOOST_TEST(t.counters().rejected.load() == 1u);
  BOOST_TEST(t.credit() == 9); // every finished one is credited back, whatever its outcome
}

// ---------------------------------------------------------------- crashes

BOOST_AUTO_TEST_CASE(a_crash_nacks_its_victim_and_the_items_after_it_run_next) {
  pool_harness t{fixed(1)};
  t.start();
  t.deliver(seqs(1, 4));
  auto id = t.runs().begin()->first;
  t.mark();
  t.done(id, {outcome::ok}, "boom"); // threw on seq 2
  BOOST_TEST(t.settled(1) == "ack");
  auto victim = t.nack_of(2);
  BOOST_TEST(victim.action == wire::nack_action::requeue);
  BOOST_TEST(victim.reason == "crash: boom");
  // The instance caught it and lives on: it is its own replacement and
  // gets the rest, which the broker never sees fail.
  BOOST_TEST(t.got<pool_cmd::spawn>().empty());
  BOOST_TEST((t.run_of(id) == std::vector<std::uint64_t>{3, 4}));
  BOOST_TEST(t.settled(3).empty());
  auto events = t.got<pool_cmd::event>();
  BOOST_TEST_REQUIRE(events.size() == 1u);
  BOOST_TEST(events[0].e.kind == "restart");
  BOOST_TEST(events[0].e.reason == "boom");
  BOOST_TEST(events[0].e.service == "svc");
  BOOST_TEST(events[0].e.function == "fn");
  BOOST_TEST(t.counters().crashes.load() == 1u);
  BOOST_TEST(t.counters().restarts.load() == 1u);
  t.done(id);
  BOOST_TEST(t.settled(3) == "ack");
  BOOST_TEST(t.settled(4) == "ack");
}

BOOST_AUTO_TEST_CASE(a_message_that_crashed_poison_after_deliveries_is_quarantined) {
  pool_harness t{fixed(1)}; // poison_after 3
  t.start();
  t.deliver({{1, 2}});
  t.done(t.runs().begin()->first, {}, "boom");
  BOOST_TEST(t.nack_of(1).action == wire::nack_action::requeue); // 2 deliveries: once more
  BOOST_TEST(t.counters().quarantined.load() == 0u);

  t.mark();
  t.deliver({{2, 3}});
  t.done(t.runs().begin()->first, {}, "boom");
  auto n = t.nack_of(2);
  BOOST_TEST(n.action == wire::nack_action::dead_letter);
  BOOST_TEST(n.reason == "crashed on 3 deliveries: boom");
  auto events = t.got<pool_cmd::event>();
  auto q = std::find_if(events.begin(), events.end(), [](auto& e) { return e.e.kind == "quarantine"; });
  BOOST_TEST_REQUIRE((q != events.end()));
  BOOST_TEST(q->e.reason == "msg m2 crashed on 3 deliveries: boom");
  BOOST_TEST(t.counters().quarantined.load() == 1u);
}

BOOST_AUTO_TEST_CASE(an_instance_that_dies_is_replaced_and_its_unstarted_items_go_to_the_new_one) {
  pool_harness t{fixed(1)};
  t.start();
  t.deliver(seqs(1, 3));
  t.mark();
  t.down(1, "segfault", {outcome::ok}); // died on seq 2
  auto spawns = t.got<pool_cmd::spawn>();
  BOOST_TEST_REQUIRE(spawns.size() == 1u);
  BOOST_TEST(spawns[0].id == 2u);
  BOOST_TEST((t.run_of(2) == std::vector<std::uint64_t>{3}));
  BOOST_TEST(t.settled(1) == "ack");
  BOOST_TEST(t.nack_of(2).reason == "crash: segfault");
  BOOST_TEST(t.core().live() == 1u);
  BOOST_TEST(t.counters().restarts.load() == 1u);
}

BOOST_AUTO_TEST_CASE(crashes_in_a_row_restart_after_a_backoff_and_a_lapsed_restart_is_ignored) {
  pool_harness t{fixed(2)};
  t.start();
  t.mark();
  t.down(1, "oom");
  BOOST_TEST(t.got<pool_cmd::spawn>().size() == 1u); // the first restart is immediate
  BOOST_TEST(t.core().live() == 2u);
  t.mark();
  t.down(2, "oom again"); // no success in between: a backoff
  BOOST_TEST(t.got<pool_cmd::spawn>().empty());
  auto later = t.got<pool_cmd::restart_later>();
  BOOST_TEST_REQUIRE(later.size() == 1u);
  BOOST_TEST(later[0].delay >= 5ms); // backoff_initial 10 ms, jittered within [5, 10]
  BOOST_TEST(later[0].delay <= 10ms);
  auto events = t.got<pool_cmd::event>();
  BOOST_TEST_REQUIRE(events.size() == 1u);
  BOOST_TEST(events[0].e.delay_ms == static_cast<std::uint64_t>(later[0].delay.count()));
  BOOST_TEST(events[0].e.intensity == 2u);
  BOOST_TEST(t.core().live() == 1u);
  t.mark();
  t.restart_due(later[0].epoch + 1); // not this one's
  BOOST_TEST(t.window().empty());
  t.restart_due(later[0].epoch);
  BOOST_TEST(t.got<pool_cmd::spawn>().size() == 1u);
  BOOST_TEST(t.core().live() == 2u);
}

BOOST_AUTO_TEST_CASE(past_its_intensity_the_function_escalates_stays_in_its_group_and_hands_back_what_waits) {
  // (Credit in batches of 1: nothing owed when it winds down; see
  // no_credit_is_granted_after_an_escalation_withdrew_it.)
  pool_harness t{fixed(2, 4), {.max_restarts = 1, .within = 10s}};
  t.start();
  t.deliver(seqs(1, 6)); // 1-3 to instance 2, 4-6 to instance 1
  BOOST_TEST_REQUIRE((t.run_of(2) == std::vector<std::uint64_t>{1, 2, 3}));
  t.down(2, "boom"); // died on 1: replaced (intensity 1)
  BOOST_TEST_REQUIRE((t.run_of(3) == std::vector<std::uint64_t>{2, 3}));
  t.mark();
  t.down(3, "bang"); // died on 2: a second fresh message, past max_restarts 1
  BOOST_TEST(t.got<pool_cmd::spawn>().empty());
  auto esc = t.got<pool_cmd::escalate>();
  BOOST_TEST_REQUIRE(esc.size() == 1u);
  BOOST_TEST(esc[0].why == "bang");
  BOOST_TEST(esc[0].intensity == 2u);
  auto withdrawn = t.got<pool_cmd::set_credit>();
  BOOST_TEST_REQUIRE(withdrawn.size() == 1u);
  BOOST_TEST(withdrawn[0].sid == t.sid());
  BOOST_TEST(withdrawn[0].n == 0u);
  BOOST_TEST(t.got<pool_cmd::unsubscribe>().empty()); // stays in its queue group
  BOOST_TEST(t.subscribed());
  BOOST_TEST(t.nack_of(1).reason == "crash: boom");
  BOOST_TEST(t.nack_of(2).reason == "crash: bang");
  auto back = t.nack_of(3); // waited for an instance: handed back
  BOOST_TEST(back.action == wire::nack_action::requeue);
  BOOST_TEST(back.reason == "service stopped: past its restart intensity");
  BOOST_TEST(t.counters().handed_back.load() == 1u);
  BOOST_TEST((t.core().phase() == pool_phase::wound_down));
  BOOST_TEST(t.counters().stopped.load());
  BOOST_TEST(t.credit() == 0);

  // What runs finishes and is ACKed, without credit; its instance retires.
  t.mark();
  t.done(1);
  BOOST_TEST(t.settled(4) == "ack");
  BOOST_TEST(t.settled(6) == "ack");
  BOOST_TEST(t.got<pool_cmd::grant_credit>().empty());
  BOOST_TEST(t.retired(1));
  BOOST_TEST(t.core().live() == 0u);
  // A delivery sent before the credit was withdrawn goes straight back.
  t.deliver_in_flight({{7}});
  BOOST_TEST(t.nack_of(7).action == wire::nack_action::requeue);
  BOOST_TEST(t.core().waiting() == 0u);
  BOOST_TEST(t.counters().handed_back.load() == 2u);
  t.down(1, std::nullopt); // the retired instance's end: the core's own doing
  BOOST_TEST(t.core().live() == 0u);
}

BOOST_AUTO_TEST_CASE(revive_restores_the_credit_and_spawns_scale_min_instances) {
  pool_harness t{fixed(2, 16), {.max_restarts = 0, .within = 10s}};
  t.start();
  t.deliver({{1}});
  t.down(2, "boom"); // its first fresh crash is past max_restarts 0
  BOOST_TEST_REQUIRE((t.core().phase() == pool_phase::wound_down));
  BOOST_TEST(t.core().live() == 0u);
  t.mark();
  t.revive();
  auto credit = t.got<pool_cmd::set_credit>();
  BOOST_TEST_REQUIRE(credit.size() == 1u);
  BOOST_TEST(credit[0].sid == t.sid()); // the same subscription: it never left
  BOOST_TEST(credit[0].n == t.core().initial_credit());
  BOOST_TEST(t.got<pool_cmd::spawn>().size() == 2u);
  BOOST_TEST(t.got<pool_cmd::subscribe>().empty());
  BOOST_TEST((t.core().phase() == pool_phase::running));
  BOOST_TEST(!t.counters().stopped.load());
  BOOST_TEST(t.core().live() == 2u);
  // It works again; its first success tells the service it recovered.
  t.mark();
  t.deliver({{2}});
  t.done(t.runs().begin()->first);
  BOOST_TEST(t.settled(2) == "ack");
  BOOST_TEST(t.got<pool_cmd::recovered>().size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_sibling_escalation_winds_the_function_down_without_an_escalate_of_its_own) {
  pool_harness t{fixed(1, 16)};
  t.start();
  t.deliver(seqs(1, 3));
  t.deliver(seqs(4, 2)); // waits: the one instance is busy
  t.mark();
  t.escalate();
  BOOST_TEST(t.got<pool_cmd::escalate>().empty());
  BOOST_TEST(t.got<pool_cmd::set_credit>().size() == 1u);
  BOOST_TEST(t.nack_of(4).action == wire::nack_action::requeue);
  BOOST_TEST(t.nack_of(5).action == wire::nack_action::requeue);
  BOOST_TEST(t.settled(1).empty()); // still running
  BOOST_TEST((t.core().phase() == pool_phase::wound_down));
  t.done(1);
  BOOST_TEST(t.settled(3) == "ack");
  BOOST_TEST(t.retired(1));
}

// Credit owed when the pool winds down (finished messages not yet credited
// back, less than a batch) must not go to the broker after the credit was
// withdrawn: it would send an escalated or stopping pool messages only to
// have them NACKed back (one more delivery each, towards max_deliver).
BOOST_AUTO_TEST_CASE(no_credit_is_granted_after_an_escalation_withdrew_it) {
  pool_harness t{fixed(2, 8)}; // batches of 2
  t.start();
  t.deliver(seqs(1, 6)); // two runs of 3
  t.done(2);             // 2 credited back, 1 owed
  t.escalate();
  BOOST_TEST_REQUIRE(t.credit() == 0);
  t.mark();
  t.done(1); // the harness fails on a CREDIT after the set_credit 0
  BOOST_TEST(t.got<pool_cmd::grant_credit>().empty());
  BOOST_TEST(t.credit() == 0);
}

BOOST_AUTO_TEST_CASE(no_credit_is_granted_after_stop_withdrew_it) {
  pool_harness t{fixed(2, 8)};
  t.start();
  t.deliver(seqs(1, 6));
  t.done(2);
  t.stop();
  BOOST_TEST_REQUIRE(t.credit() == 0);
  t.mark();
  t.done(1);
  BOOST_TEST(t.got<pool_cmd::grant_credit>().empty());
  BOOST_TEST(t.credit() == 0);
  BOOST_TEST(t.got<pool_cmd::quit>().size() == 1u);
}

// Messages still running when the service escalated finish after its
// revival: their credit comes back on top of the fresh initial_credit(),
// and the broker then holds more than the pool was ever meant to (one
// revival at a time, for good).
BOOST_AUTO_TEST_CASE(revive_never_leaves_the_broker_more_credit_than_the_pool_holds_room_for) {
  pool_harness t{fixed(1, 4), {.max_restarts = 0, .within = 10s}};
  t.start();
  t.deliver(seqs(1, 5)); // one run of 5, all the credit
  auto plan = t.sup().crashed({1, 1, "a sibling's message"}, t.now()); // a sibling escalates
  BOOST_TEST_REQUIRE(plan.escalate);
  t.escalate();
  BOOST_TEST_REQUIRE(t.credit() == 0);
  t.revive(); // the harness fails here: credit 5 with 5 still held
  t.done(1);
  BOOST_TEST(t.credit() == 5); // min + prefetch, not 10
}

BOOST_AUTO_TEST_CASE(a_transient_function_leaves_its_group_when_its_last_instance_ends_normally) {
  auto o = fixed(2);
  o.restart = transient;
  pool_harness t{o};
  t.start();
  t.mark();
  t.down(1, std::nullopt);
  BOOST_TEST(t.window().empty()); // one left: no restart, no end yet
  BOOST_TEST(t.core().live() == 1u);
  t.down(2, std::nullopt);
  auto unsub = t.got<pool_cmd::unsubscribe>();
  BOOST_TEST_REQUIRE(unsub.size() == 1u);
  BOOST_TEST(unsub[0].sid == t.sid());
  BOOST_TEST(t.got<pool_cmd::set_credit>().size() == 1u);
  BOOST_TEST(t.got<pool_cmd::spawn>().empty());
  BOOST_TEST((t.core().phase() == pool_phase::wound_down));
  BOOST_TEST(t.counters().sid.load() == 0u);
  BOOST_TEST(t.counters().stopped.load());
}

BOOST_AUTO_TEST_CASE(a_function_that_left_its_group_subscribes_again_when_revived) {
  auto o = fixed(1);
  o.restart = transient;
  pool_harness t{o, {.max_restarts = 0, .within = 10s}};
  t.start(7);
  t.down(1, std::nullopt); // ended: left its group
  BOOST_TEST_REQUIRE(!t.subscribed());
  BOOST_TEST_REQUIRE(t.sup().crashed({1, 1, "a sibling's message"}, t.now()).escalate);
  t.escalate(); // already wound down: nothing more
  t.mark();
  t.revive();
  BOOST_TEST(t.got<pool_cmd::subscribe>().size() == 1u);
  BOOST_TEST(t.got<pool_cmd::set_credit>().empty()); // the new subscription brings its own
  BOOST_TEST(t.got<pool_cmd::spawn>().size() == 1u);
  BOOST_TEST(t.sid() == 8u); // the harness answered with a new sid
  BOOST_TEST(t.counters().sid.load() == 8u);
  t.deliver({{1}});
  t.done(t.runs().begin()->first);
  BOOST_TEST(t.settled(1) == "ack");
}

BOOST_AUTO_TEST_CASE(a_transient_function_whose_instance_crashes_is_restarted) {
  auto o = fixed(1);
  o.restart = transient;
  pool_harness t{o};
  t.start();
  t.mark();
  t.down(1, "boom");
  BOOST_TEST(t.got<pool_cmd::spawn>().size() == 1u);
  BOOST_TEST(t.got<pool_cmd::unsubscribe>().empty());
  BOOST_TEST((t.core().phase() == pool_phase::running));
}

BOOST_AUTO_TEST_CASE(a_permanent_function_whose_instance_ends_normally_gets_a_new_one) {
  pool_harness t{fixed(1)};
  t.start();
  t.mark();
  t.down(1, std::nullopt);
  auto spawns = t.got<pool_cmd::spawn>();
  BOOST_TEST_REQUIRE(spawns.size() == 1u);
  BOOST_TEST(spawns[0].id == 2u);
  BOOST_TEST(t.got<pool_cmd::unsubscribe>().empty());
  BOOST_TEST(t.got<pool_cmd::event>().empty()); // no crash, nothing to report
  BOOST_TEST(t.core().live() == 1u);
  BOOST_TEST(t.counters().restarts.load() == 1u);
  BOOST_TEST(t.counters().crashes.load() == 0u);
}

BOOST_AUTO_TEST_CASE(a_recycle_replaces_idle_instances_now_and_busy_ones_when_they_finish) {
  pool_harness t{fixed(2)};
  t.start();
  t.deliver({{1}}); // to instance 2
  t.mark();
  t.recycle(true);
  BOOST_TEST(t.retired(1));
  BOOST_TEST(!t.retired(2));
  BOOST_TEST(t.got<pool_cmd::spawn>().size() == 1u);
  t.mark();
  t.done(2);
  BOOST_TEST(t.settled(1) == "ack");
  BOOST_TEST(t.retired(2));
  BOOST_TEST(t.got<pool_cmd::spawn>().size() == 1u);
  BOOST_TEST(t.core().live() == 2u);
  BOOST_TEST(t.counters().recycled.load() == 2u);
}

BOOST_AUTO_TEST_CASE(a_temporary_function_recycled_ends_when_its_last_busy_instance_finishes) {
  auto o = fixed(2, 4); // credit in batches of 1: nothing owed at its end (see no_credit_is_granted_...)
  o.restart = temporary;
  pool_harness t{o};
  t.start();
  t.deliver({{1}});
  t.mark();
  t.recycle(false);
  BOOST_TEST(t.got<pool_cmd::spawn>().empty());
  BOOST_TEST(t.got<pool_cmd::unsubscribe>().empty()); // one still runs
  t.done(2);
  BOOST_TEST(t.settled(1) == "ack");
  BOOST_TEST(t.got<pool_cmd::unsubscribe>().size() == 1u);
  BOOST_TEST((t.core().phase() == pool_phase::wound_down));
  BOOST_TEST(t.core().live() == 0u);
}

// ---------------------------------------------------------------- stop

BOOST_AUTO_TEST_CASE(stop_withdraws_credit_hands_back_what_waits_and_quits_once_work_is_done) {
  pool_harness t{fixed(1, 40)};
  t.start();
  t.deliver(seqs(1, 40)); // 32 run, 8 wait
  BOOST_TEST_REQUIRE(t.core().waiting() == 8u);
  t.mark();
  t.stop();
  auto credit = t.got<pool_cmd::set_credit>();
  BOOST_TEST_REQUIRE(credit.size() == 1u);
  BOOST_TEST(credit[0].n == 0u);
  for (std::uint64_t s = 33; s <= 40; ++s) {
    BOOST_TEST(t.nack_of(s).action == wire::nack_action::requeue);
    BOOST_TEST(t.nack_of(s).reason == "node stopping");
  }
  BOOST_TEST(t.counters().handed_back.load() == 8u);
  BOOST_TEST(t.got<pool_cmd::quit>().empty()); // 32 still run
  BOOST_TEST((t.core().phase() == pool_phase::stopping));
  t.mark();
  t.done(1);
  BOOST_TEST(t.settled(1) == "ack");
  BOOST_TEST(t.settled(32) == "ack");
  BOOST_TEST(t.got<pool_cmd::grant_credit>().empty());
  BOOST_TEST(t.retired(1));
  BOOST_TEST(t.got<pool_cmd::quit>().size() == 1u);
  BOOST_TEST(t.core().quit());
  t.grace_over(); // nothing waits: no second quit (the harness checks)
  t.stop();
  BOOST_TEST(t.quits() == 1);
}

BOOST_AUTO_TEST_CASE(an_idle_pool_quits_at_once_on_stop_and_retires_its_instances) {
  pool_harness t{fixed(2)};
  t.start();
  t.mark();
  t.stop();
  BOOST_TEST(t.retired(1));
  BOOST_TEST(t.retired(2));
  BOOST_TEST(t.got<pool_cmd::quit>().size() == 1u);
}

BOOST_AUTO_TEST_CASE(while_stopping_what_a_crash_left_unstarted_goes_back_to_the_broker) {
  pool_harness t{fixed(1, 16)};
  t.start();
  t.deliver(seqs(1, 4));
  t.stop();
  t.mark();
  t.done(1, {outcome::ok}, "boom");
  BOOST_TEST(t.settled(1) == "ack");
  BOOST_TEST(t.nack_of(2).reason == "crash: boom");
  BOOST_TEST(t.nack_of(3).reason == "function stopping");
  BOOST_TEST(t.nack_of(4).reason == "function stopping");
  BOOST_TEST(t.counters().handed_back.load() == 2u);
  BOOST_TEST(t.got<pool_cmd::spawn>().empty()); // no restart when stopping
  BOOST_TEST(t.got<pool_cmd::quit>().size() == 1u);
}

// ---------------------------------------------------------------- reliable

BOOST_AUTO_TEST_CASE(a_reliable_invocation_is_acked_once_its_publishes_are_confirmed) {
  auto o = fixed(1, 8);
  o.reliable = true;
  pool_harness t{o};
  t.start();
  t.deliver(seqs(1, 2));
  auto waits = tracker(1); // one publish not yet confirmed
  auto confirmed = tracker(0);
  t.mark();
  t.done(1, {outcome::ok, outcome::ok}, std::nullopt, {waits, confirmed});
  BOOST_TEST(t.settled(1).empty());
  BOOST_TEST(t.settled(2) == "ack"); // its confirms were all in
  BOOST_TEST(t.core().deferred() == 1u);
  BOOST_TEST(sum(t.got<pool_cmd::grant_credit>()) == 1u); // the deferred one holds its credit
  BOOST_TEST_REQUIRE(confirm(waits));
  t.mark();
  t.published(waits);
  auto acks = t.got<pool_cmd::ack>();
  BOOST_TEST_REQUIRE(acks.size() == 1u);
  BOOST_TEST(acks[0].seq == 1u);
  BOOST_TEST(acks[0].count == 1u);
  BOOST_TEST(sum(t.got<pool_cmd::grant_credit>()) == 1u);
  BOOST_TEST(t.core().deferred() == 0u);
  BOOST_TEST(t.credit() == 9);
  t.published(waits); // once settled, a repeat does nothing
  BOOST_TEST(t.counters().ok.load() == 2u);
}

BOOST_AUTO_TEST_CASE(a_reliable_invocation_whose_publish_failed_runs_again_after_a_second) {
  auto o = fixed(1, 8);
  o.reliable = true;
  pool_harness t{o};
  t.start();
  t.deliver(seqs(1, 2));
  auto late = tracker(1);
  auto failed_now = tracker(0, static_cast<std::uint32_t>(status::overloaded));
  t.done(1, {outcome::ok, outcome::ok}, std::nullopt, {late, failed_now});
  auto n2 = t.nack_of(2);
  BOOST_TEST(n2.action == wire::nack_action::delay);
  BOOST_TEST(n2.delay_ms == 1000u);
  BOOST_TEST(n2.reason == std::string{"a publish was not confirmed: "}
                             + status_text(static_cast<std::uint32_t>(status::overloaded)));
  late->failed = static_cast<std::uint32_t>(status::dead_lettered);
  BOOST_TEST_REQUIRE(confirm(late));
  t.published(late);
  BOOST_TEST(t.nack_of(1).action == wire::nack_action::delay);
  BOOST_TEST(t.nack_of(1).delay_ms == 1000u);
  BOOST_TEST(t.counters().errors.load() == 2u);
  BOOST_TEST(t.counters().ok.load() == 0u);
}

BOOST_AUTO_TEST_CASE(grace_over_leaves_deferred_invocations_unacked_and_quits) {
  auto o = fixed(1, 8);
  o.reliable = true;
  pool_harness t{o};
  t.start();
  t.deliver(seqs(1, 2));
  auto waits = tracker(1);
  t.done(1, {outcome::ok, outcome::ok}, std::nullopt, {waits});
  BOOST_TEST(t.settled(2) == "ack");
  t.mark();
  t.stop();
  BOOST_TEST(t.got<pool_cmd::quit>().empty()); // waits for the confirm
  BOOST_TEST((t.core().phase() == pool_phase::stopping));
  t.mark();
  t.grace_over();
  BOOST_TEST(t.got<pool_cmd::quit>().size() == 1u);
  BOOST_TEST(t.settled(1).empty()); // never ACKed nor NACKed: the UNSUB gives it back
  BOOST_TEST(t.counters().handed_back.load() == 1u);
  BOOST_TEST(t.core().deferred() == 0u);
  BOOST_TEST_REQUIRE(confirm(waits));
  t.published(waits); // too late: ignored (the harness fails on a command after quit)
  BOOST_TEST(t.settled(1).empty());
}

BOOST_AUTO_TEST_CASE(past_the_grace_a_finishing_reliable_invocation_stays_unacked) {
  auto o = fixed(1, 8);
  o.reliable = true;
  pool_harness t{o};
  t.start();
  t.deliver(seqs(1, 2));
  t.stop();
  t.grace_over();
  BOOST_TEST(t.got<pool_cmd::quit>().empty()); // the run is not done
  t.mark();
  t.done(1, {outcome::ok, outcome::ok}, std::nullopt, {tracker(1)});
  BOOST_TEST(t.settled(1).empty());
  BOOST_TEST(t.settled(2) == "ack");
  BOOST_TEST(t.counters().handed_back.load() == 1u);
  BOOST_TEST(t.got<pool_cmd::quit>().size() == 1u);
}

// ---------------------------------------------------------------- scaling

namespace {

function_options scaled_fn(std::uint32_t min, std::uint32_t max, std::uint32_t prefetch = 64) {
  function_options o;
  o.prefetch = prefetch;
  o.scale.min = min;
  o.scale.max = max;
  o.scale.tick = 100ms;
  o.scale.panic_window = 1000ms;
  o.scale.stable_window = 2000ms;
  o.scale.idle_grace = 3000ms;
  return o;
}

} // namespace

BOOST_AUTO_TEST_CASE(with_demand_it_scales_up_grants_the_new_capacity_and_announces_it) {
  pool_harness t{scaled_fn(1, 4)};
  t.start();
  t.deliver(seqs(1, 40)); // 32 run, 8 wait: a demand of 9
  BOOST_TEST_REQUIRE(t.core().waiting() == 8u);
  t.mark();
  t.tick();
  BOOST_TEST(t.core().target() == 4u);
  BOOST_TEST(t.got<pool_cmd::spawn>().size() == 3u);
  auto grants = t.got<pool_cmd::grant_credit>();
  BOOST_TEST_REQUIRE(grants.size() == 1u);
  BOOST_TEST(grants[0].n == 3u); // the three new instances' credit
  BOOST_TEST(t.got<pool_cmd::run>().size() == 3u); // what waited, spread over them
  BOOST_TEST(t.core().waiting() == 0u);
  auto scaled = t.got<pool_cmd::scaled>();
  BOOST_TEST_REQUIRE(scaled.size() == 1u);
  BOOST_TEST(scaled[0].e.from == 1u);
  BOOST_TEST(scaled[0].e.to == 4u);
  BOOST_TEST(scaled[0].e.why == "burst");
  BOOST_TEST(scaled[0].e.function == "fn");
  // Announced after the work went out: off the hot path.
  BOOST_TEST(std::holds_alternative<pool_cmd::scaled>(t.window().back()));
  BOOST_TEST(t.counters().instances.load() == 4u);
}

BOOST_AUTO_TEST_CASE(idle_it_scales_down_and_holds_back_the_credit_of_the_capacity_it_retired) {
  pool_harness t{scaled_fn(1, 4)};
  t.start();
  t.deliver(seqs(1, 40));
  t.tick();
  BOOST_TEST_REQUIRE(t.core().target() == 4u);
  while (!t.runs().empty()) t.done(t.runs().begin()->first);
  BOOST_TEST(t.credit() == 68); // 65 + the 3 granted for the new instances
  t.mark();
  for (int i = 0; i < 50 && t.core().target() > 1; ++i) t.tick();
  BOOST_TEST(t.core().target() == 1u);
  BOOST_TEST(t.core().live() == 1u);
  BOOST_TEST(t.got<pool_cmd::retire>().size() == 3u);
  auto scaled = t.got<pool_cmd::scaled>();
  BOOST_TEST_REQUIRE(!scaled.empty());
  BOOST_TEST(scaled.front().e.from == 4u);
  BOOST_TEST(scaled.back().e.to == 1u);
  BOOST_TEST(t.got<pool_cmd::set_credit>().empty()); // nothing taken back from the broker...
  // ... but the next 3 finished messages are not credited back.
  t.mark();
  t.deliver(seqs(41, 4));
  t.done(t.runs().begin()->first);
  BOOST_TEST(sum(t.got<pool_cmd::grant_credit>()) == 1u);
  BOOST_TEST(t.credit() == 65); // min + prefetch again
}

BOOST_AUTO_TEST_CASE(a_busy_instance_past_the_target_retires_when_its_run_is_done) {
  auto o = scaled_fn(1, 2);
  o.scale.target = 4; // two busy instances want one
  pool_harness t{o};
  t.start();
  t.deliver(seqs(1, 40));
  t.tick();
  BOOST_TEST_REQUIRE(t.core().target() == 2u);
  // Both busy and the load gone: scaled down, nobody dropped mid-run.
  for (int i = 0; i < 50 && t.core().target() > 1; ++i) t.tick();
  BOOST_TEST_REQUIRE(t.core().target() == 1u);
  BOOST_TEST(t.core().live() == 2u);
  BOOST_TEST(t.runs().size() == 2u);
  auto first = t.runs().begin()->first;
  t.done(first);
  BOOST_TEST(t.retired(first));
  BOOST_TEST(t.core().live() == 1u);
  auto second = t.runs().begin()->first;
  t.done(second);
  BOOST_TEST(!t.retired(second));
  BOOST_TEST(t.core().live() == 1u);
}

BOOST_AUTO_TEST_CASE(a_function_at_zero_cold_starts_an_instance_when_a_batch_arrives) {
  pool_harness t{scaled_fn(0, 2, 8)};
  t.start();
  BOOST_TEST(t.core().live() == 0u);
  t.mark();
  t.deliver({{1}});
  auto spawns = t.got<pool_cmd::spawn>();
  BOOST_TEST_REQUIRE(spawns.size() == 1u);
  auto runs = t.got<pool_cmd::run>();
  BOOST_TEST_REQUIRE(runs.size() == 1u);
  BOOST_TEST(runs[0].id == spawns[0].id);
  BOOST_TEST(runs[0].work->cold); // timed as a cold start
  auto grants = t.got<pool_cmd::grant_credit>();
  BOOST_TEST_REQUIRE(grants.size() == 1u);
  BOOST_TEST(grants[0].n == 1u); // the new instance's credit
  BOOST_TEST(t.got<pool_cmd::scaled>().empty()); // announced at the next tick, not on the hot path
  BOOST_TEST(t.counters().cold_starts.load() == 1u);
  BOOST_TEST(t.core().target() == 1u);
  t.mark();
  t.tick();
  auto scaled = t.got<pool_cmd::scaled>();
  BOOST_TEST_REQUIRE(!scaled.empty());
  BOOST_TEST(scaled[0].e.from == 0u);
  BOOST_TEST(scaled[0].e.to == 1u);
  BOOST_TEST(scaled[0].e.why == "cold start");
  t.done(runs[0].id);
  BOOST_TEST(t.settled(1) == "ack");
}

BOOST_AUTO_TEST_CASE(an_idle_function_goes_back_to_zero_after_the_idle_grace_and_starts_again) {
  pool_harness t{scaled_fn(0, 2, 8)};
  t.start();
  t.deliver({{1}});
  t.done(1);
  t.mark();
  int ticks = 0;
  while (t.core().target() > 0 && ticks < 100) {
    t.tick();
    ++ticks;
  }
  BOOST_TEST(t.core().target() == 0u);
  BOOST_TEST(ticks >= 30); // not before idle_grace (3 s of 100 ms ticks)
  BOOST_TEST(t.retired(1));
  auto scaled = t.got<pool_cmd::scaled>();
  BOOST_TEST_REQUIRE(!scaled.empty());
  BOOST_TEST(scaled.back().e.to == 0u);
  BOOST_TEST(scaled.back().e.why == "idle");
  t.mark();
  t.deliver({{2}});
  BOOST_TEST(t.got<pool_cmd::spawn>().size() == 1u);
  BOOST_TEST(t.got<pool_cmd::run>().size() == 1u);
  BOOST_TEST(t.counters().cold_starts.load() == 2u);
  t.done(t.runs().begin()->first);
  BOOST_TEST(t.settled(2) == "ack");
}

// Revived with scale.min 0, the pool's target is 0 while an instance from
// before still runs; when that one ends mid-run (a temporary function is
// not restarted), what it never started waits with no instance to come
// (until the next delivery cold-starts one, if any comes).
BOOST_AUTO_TEST_CASE(work_left_by_an_instance_from_before_a_revival_never_waits_without_an_instance) {
  auto o = scaled_fn(0, 2, 8);
  o.restart = temporary;
  pool_harness t{o, {.max_restarts = 1, .within = 10s}};
  t.start();
  t.deliver(seqs(1, 2)); // a cold start: instance 1 runs both
  BOOST_TEST_REQUIRE((t.run_of(1) == std::vector<std::uint64_t>{1, 2}));
  BOOST_TEST_REQUIRE(!t.sup().crashed({1, 1, "a sibling's message"}, t.now()).escalate);
  BOOST_TEST_REQUIRE(t.sup().crashed({1, 1, "another"}, t.now()).escalate);
  t.escalate();
  t.revive();
  BOOST_TEST_REQUIRE(t.core().target() == 0u);
  t.done(1, {}, "boom"); // crashed on 1 (intensity 1 of 1): 2 never started
  BOOST_TEST(t.nack_of(1).reason == "crash: boom");
  BOOST_TEST_REQUIRE((t.core().phase() == pool_phase::running));
  BOOST_TEST(!(t.core().waiting() > 0 && t.core().live() == 0), "seq 2 waits with no instance to run it");
}

// ---------------------------------------------------------------- retries

namespace {

function_options retrying(retry_policy p, std::uint32_t instances = 1) {
  auto o = fixed(instances, 16);
  o.retry = p;
  o.max_deliver = p.max + 1; // as function_builder::retry does
  return o;
}

// Delivery `count` of seq `seq` fails in a run of its own; its NACK.
pool_cmd::nack fail_once(pool_harness& t, std::uint64_t seq, std::uint32_t count,
                         std::chrono::milliseconds asked = std::chrono::milliseconds{-1}) {
  t.deliver({msg{seq, count}});
  auto id = t.runs().begin()->first;
  auto run = t.runs().begin()->second;
  if (asked.count() >= 0) run->retry_after.assign(1, asked); // as the instance records it
  t.done(id, {outcome::failed});
  return t.nack_of(seq);
}

} // namespace

BOOST_AUTO_TEST_CASE(without_jitter_the_backoff_doubles_from_initial_up_to_max_delay) {
  retry_policy p{.max = 8, .initial = 100ms, .max_delay = 1s, .multiplier = 2, .jitter = no_jitter};
  pool_harness t{retrying(p)};
  t.start();
  const std::uint32_t want[] = {100, 200, 400, 800, 1000, 1000, 1000, 1000};
  for (std::uint32_t count = 1; count <= 8; ++count) {
    auto n = fail_once(t, count, count);
    BOOST_TEST((n.action == wire::nack_action::delay), "delivery " << count);
    BOOST_TEST(n.delay_ms == want[count - 1], "delivery " << count);
  }
  BOOST_TEST(t.counters().retries.load() == 8u);
  BOOST_TEST(t.counters().errors.load() == 8u);
  // The schedule alone: a multiplier of 3, and a max_delay below initial.
  BOOST_TEST(backoff_delay({.initial = 10ms, .max_delay = 1s, .multiplier = 3, .jitter = no_jitter}, 4, 0.5).count() == 270);
  BOOST_TEST(backoff_delay({.initial = 5s, .max_delay = 2s, .jitter = no_jitter}, 1, 0.5).count() == 2000);
  // Far past the cap it stays there (no overflow to 0 or negative).
  BOOST_TEST(backoff_delay({.initial = 1s, .max_delay = 30s, .jitter = no_jitter}, 4000, 0.5).count() == 30000);
}

BOOST_AUTO_TEST_CASE(jitter_stays_within_its_bounds_at_the_ends_of_the_draw_and_between) {
  // Full: [0, d]; equal: [d/2, d]. The injected draws hit both ends.
  for (auto mode : {full_jitter, equal_jitter}) {
    retry_policy p{.max = 4, .initial = 400ms, .max_delay = 10s, .multiplier = 2, .jitter = mode};
    std::vector<double> draws{0.0, 0.999999};
    std::size_t next = 0;
    pool_harness t{retrying(p), patient(), [&draws, &next] { return draws[next++ % draws.size()]; }};
    t.start();
    auto low = fail_once(t, 1, 1).delay_ms;
    auto high = fail_once(t, 2, 1).delay_ms;
    BOOST_TEST(low == (mode == full_jitter ? 0u : 200u));
    BOOST_TEST(high >= 399u);
    BOOST_TEST(high <= 400u);
    // A jitter of 0 is an immediate requeue, not a delayed NACK of 0 ms.
    if (mode == full_jitter) BOOST_TEST((t.nack_of(1).action == wire::nack_action::requeue));
  }
  // Any draw, any delivery: within the bounds, and the draws do spread.
  retry_policy full{.max = 10, .initial = 100ms, .max_delay = 3s, .jitter = full_jitter};
  retry_policy equal{.max = 10, .initial = 100ms, .max_delay = 3s, .jitter = equal_jitter};
  retry_policy none{.max = 10, .initial = 100ms, .max_delay = 3s, .jitter = no_jitter};
  std::set<long> seen;
  for (std::uint32_t count = 1; count <= 8; ++count)
    for (int k = 0; k < 200; ++k) {
      double u = jitter_unit(k * 0.013, static_cast<std::size_t>(k % 32));
      BOOST_TEST_REQUIRE((u >= 0.0 && u < 1.0));
      auto d = backoff_delay(none, count, u);
      auto f = backoff_delay(full, count, u);
      auto e = backoff_delay(equal, count, u);
      BOOST_TEST_REQUIRE((f >= 0ms && f <= d));
      BOOST_TEST_REQUIRE((e >= d / 2 && e <= d));
      if (count == 8) seen.insert(static_cast<long>(f.count()));
    }
  BOOST_TEST(seen.size() > 100u); // spread, not a handful of values
  // One run's items get different draws (they failed together, they come back apart).
  BOOST_TEST(jitter_unit(0.5, 0) != jitter_unit(0.5, 1));
}

BOOST_AUTO_TEST_CASE(a_handlers_retry_after_wins_over_the_backoff_but_not_over_the_limit) {
  retry_policy p{.max = 2, .initial = 100ms, .max_delay = 1s, .jitter = no_jitter};
  pool_harness t{retrying(p)};
  t.start();
  auto asked = fail_once(t, 1, 1, 2500ms);
  BOOST_TEST((asked.action == wire::nack_action::delay));
  BOOST_TEST(asked.delay_ms == 2500u); // past max_delay even: the handler knows best
  BOOST_TEST((fail_once(t, 2, 2).action == wire::nack_action::delay)); // its own backoff: 200 ms
  BOOST_TEST(t.nack_of(2).delay_ms == 200u);
  // The third delivery of max 2 retries: no wait; the broker, at the
  // SUB's max_deliver (delivery_limit), dead-letters it with the text.
  auto last = fail_once(t, 3, 3, 2500ms);
  BOOST_TEST((last.action == wire::nack_action::requeue));
  BOOST_TEST(last.delay_ms == 0u);
  BOOST_TEST(last.reason == failed_why);
  BOOST_TEST(delivery_limit(retrying(p)) == 3u);
}

BOOST_AUTO_TEST_CASE(past_its_retries_an_error_is_left_to_the_dead_letter_and_max_deliver_bounds_the_retries) {
  retry_policy p{.max = 3, .initial = 10ms, .max_delay = 1s, .jitter = no_jitter};
  pool_harness t{retrying(p)};
  t.start();
  for (std::uint32_t count = 1; count <= 3; ++count)
    BOOST_TEST((fail_once(t, count, count).action == wire::nack_action::delay));
  BOOST_TEST((fail_once(t, 4, 4).action == wire::nack_action::requeue)); // the last: the broker dead-letters
  BOOST_TEST(!decide_retry(retrying(p), 4, 0.5, -1ms).retry);
  BOOST_TEST(t.counters().retries.load() == 3u);
  BOOST_TEST(t.counters().errors.load() == 4u);
  // Options set by hand with max_deliver below retry.max + 1: the smaller
  // wins (it is the SUB's max_deliver), and no wait is asked past it.
  auto o = retrying(p);
  o.max_deliver = 2;
  BOOST_TEST(delivery_limit(o) == 2u);
  pool_harness u{o};
  u.start();
  BOOST_TEST((fail_once(u, 1, 1).action == wire::nack_action::delay));
  BOOST_TEST((fail_once(u, 2, 2).action == wire::nack_action::requeue));
  // A rate-limited function's wait for its turn uses a delivery: one more.
  o.rate = {10, 1};
  BOOST_TEST(delivery_limit(o) == 3u);
  // The builder keeps the two in step, whichever comes last.
  function_builder b{"f"};
  b.retry({.max = 7});
  BOOST_TEST(b.options().max_deliver == 8u);
  b.max_deliver(3);
  BOOST_TEST(b.options().retry.max == 2u);
}

BOOST_AUTO_TEST_CASE(the_delay_a_context_shows_is_the_one_the_nack_carries) {
  retry_policy p{.max = 5, .initial = 100ms, .max_delay = 30s, .jitter = full_jitter};
  auto o = retrying(p);
  o.scale.min = o.scale.max = 1;
  pool_harness t{o}; // the core's own draws
  t.start();
  t.deliver({msg{1, 3}, msg{2, 1}, msg{3, 6}});
  auto id = t.runs().begin()->first;
  auto run = t.runs().begin()->second;
  BOOST_TEST_REQUIRE(run->items.size() == 3u);
  // What context::next_retry_delay() computes for item i (instance.cpp
  // sets the invocation's jitter to jitter_unit(run.jitter, i)).
  std::vector<retry_decision> shown;
  for (std::size_t i = 0; i < 3; ++i)
    shown.push_back(decide_retry(o, run->items[i]->count, jitter_unit(run->jitter, i), -1ms));
  t.done(id, {outcome::failed, outcome::failed, outcome::failed});
  for (std::uint64_t seq = 1; seq <= 2; ++seq) {
    BOOST_TEST_REQUIRE(shown[seq - 1].retry);
    auto n = t.nack_of(seq);
    BOOST_TEST(n.delay_ms == static_cast<std::uint32_t>(shown[seq - 1].delay.count()));
  }
  BOOST_TEST(!shown[2].retry); // its sixth delivery: none left
  BOOST_TEST((t.nack_of(3).action == wire::nack_action::requeue));
  BOOST_TEST(t.nack_of(3).delay_ms == 0u);
}

// ---------------------------------------------------------------- rate limit

namespace {
function_options limited(double per_second, std::uint32_t burst, std::uint32_t instances = 3,
                         std::uint32_t prefetch = 16) {
  auto o = fixed(instances, prefetch);
  o.rate = {per_second, burst};
  return o;
}
} // namespace

BOOST_AUTO_TEST_CASE(a_burst_passes_and_the_rest_waits_in_the_broker_for_reserved_slots_at_the_rate) {
  pool_harness t{limited(10, 3)};
  t.start();
  t.deliver(seqs(1, 10));
  BOOST_TEST(t.runs().size() == 3u); // the burst, one each
  for (std::uint64_t seq = 4; seq <= 10; ++seq) {
    auto n = t.nack_of(seq);
    BOOST_TEST((n.action == wire::nack_action::delay));
    BOOST_TEST(n.delay_ms == (seq - 3) * 100, "seq " << seq); // one slot each, 100 ms apart
    BOOST_TEST(n.reason == "rate limited");
  }
  BOOST_TEST(t.counters().throttled.load() == 7u);
  BOOST_TEST(t.counters().errors.load() == 0u); // a wait, not a failure
  // A deferred message back at its slot runs, though the bucket is empty
  // for anyone else: a fresh one now goes behind every reserved slot.
  t.advance(100ms);
  t.deliver({msg{11, 2, "m4"}, msg{12, 1}});
  BOOST_TEST(t.settled(11) == ""); // taken: it waits for a free instance
  BOOST_TEST(t.core().waiting() == 1u);
  BOOST_TEST(t.nack_of(12).delay_ms == 700u); // after the slots of m5..m10
  BOOST_TEST(t.counters().throttled.load() == 8u);
}

BOOST_AUTO_TEST_CASE(admissions_never_pass_burst_plus_rate_times_the_time_and_each_waits_once) {
  const double rate = 50;
  const std::uint32_t burst = 5;
  pool_harness t{limited(rate, burst, 4, 512)};
  t.start();
  struct due {
    time_point at;
    std::string id;
    std::uint32_t count;
  };
  std::vector<due> broker; // what the broker holds for later (delayed NACKs)
  std::uint64_t seq = 1, fresh = 0, taken = 0;
  std::set<std::uint64_t> nacked;
  std::map<std::string, int> deferrals;
  auto t0 = t.now();
  for (int step = 0; step < 400; ++step) { // 400 x 7 ms: 2.8 s of arrivals
    t.advance(7ms);
    std::vector<msg> batch;
    for (auto it = broker.begin(); it != broker.end();) {
      if (it->at <= t.now()) {
        batch.push_back({seq++, it->count, it->id});
        it = broker.erase(it);
      } else {
        ++it;
      }
    }
    for (int k = 0; k < step % 4; ++k) batch.push_back({seq++, 1, "f" + std::to_string(fresh++)});
    if (!batch.empty()) {
      std::map<std::uint64_t, std::string> ids;
      for (auto& m : batch) ids[m.seq] = m.msg_id;
      t.deliver(batch);
      taken += batch.size();
      for (auto& [s, id] : ids) {
        if (t.settled(s) != "delay") continue;
        auto n = t.nack_of(s);
        broker.push_back({t.now() + std::chrono::milliseconds{n.delay_ms}, id, 2});
        ++deferrals[id];
      }
    }
    while (!t.runs().empty()) t.done(t.runs().begin()->first);
    // Structural: what started by now fits the bucket.
    auto admitted = taken - t.counters().throttled.load();
    auto elapsed = std::chrono::duration<double>(t.now() - t0).count();
    BOOST_TEST_REQUIRE(static_cast<double>(admitted) <= burst + rate * elapsed + 1,
                       admitted << " admitted after " << elapsed << " s");
  }
  BOOST_TEST(t.counters().throttled.load() > 0u); // the arrivals were above the rate
  for (auto& [id, n] : deferrals) BOOST_TEST_REQUIRE(n == 1, id << " deferred " << n << " times");
}

// ---------------------------------------------------------------- bulkhead queue

BOOST_AUTO_TEST_CASE(requests_past_max_queued_are_refused_at_once_and_other_messages_wait) {
  auto o = fixed(2, 16);
  o.max_queued = 3;
  pool_harness t{o};
  t.start();
  std::vector<msg> requests;
  for (std::uint64_t s = 1; s <= 8; ++s) requests.push_back({s, 1, "", "_INBOX.n.r" + std::to_string(s)});
  t.deliver(requests);
  // 2 start (one per idle instance), 3 wait, 3 are refused: answered and ACKed.
  auto refused = t.got<pool_cmd::refuse>();
  BOOST_TEST_REQUIRE(refused.size() == 3u);
  BOOST_TEST(refused[0].reply_to == "_INBOX.n.r6");
  BOOST_TEST(refused[2].reply_to == "_INBOX.n.r8");
  BOOST_TEST(refused[0].why.find("max_queued 3") != std::string::npos);
  for (std::uint64_t s = 6; s <= 8; ++s) BOOST_TEST(t.settled(s) == "ack");
  for (std::uint64_t s = 1; s <= 5; ++s) BOOST_TEST(t.settled(s) == "");
  BOOST_TEST(t.counters().shed.load() == 3u);
  // Plain messages are never shed: they wait, whatever the queue.
  t.mark();
  t.deliver(seqs(9, 4));
  BOOST_TEST(t.got<pool_cmd::refuse>().empty());
  for (std::uint64_t s = 9; s <= 12; ++s) BOOST_TEST(t.settled(s) == "");
  // Once the queue drains, requests are taken again.
  while (!t.runs().empty()) t.done(t.runs().begin()->first);
  t.mark();
  t.deliver({msg{13, 1, "", "_INBOX.n.r13"}});
  BOOST_TEST(t.got<pool_cmd::refuse>().empty());
  BOOST_TEST(t.runs().size() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
