// SPDX-License-Identifier: Apache-2.0
// Scenario `restart`: the time from a function instance crashing to its
// replacement starting the next message, p50/p99/max; #4's target is
// p99 <= 100 us. One node with its embedded broker, one function with one
// instance. Beside it, in the same run and on the same pool, the plain
// handoff: the same gap when the instance returns instead of throwing.
//
// A round holds the instance on a "gate" message until the round's probe
// is queued in the pool, so the gap starts with work already waiting: the
// driver publishes the gate, waits until its handler runs, publishes the
// probe and then a fence on a topic of its own; the broker sends both down
// the node's one connection in that order, so the fence's handler (on the
// connection's I/O thread) runs after the probe was handed to the pool. The
// gate, released by the fence, stamps the time and throws (a crash round)
// or returns (a handoff round); the probe stamps its start. A crashed gate
// is NACKed and comes back as delivery 2, which succeeds, so it is never
// quarantined and the success resets the restart intensity; the round
// ends only when it has been handled, so it never queues behind the next
// round's probe. Rounds of both kinds alternate.

#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "latency.hpp"
#include "plexus/node.hpp"
#include "scenario.hpp"
#include "tagged.hpp"

namespace plexus::bench {

namespace {

using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::string_view work_topic = "bench.restart.work";
constexpr std::string_view fence_topic = "bench.restart.fence";
constexpr std::string_view case_name = "1inst";
constexpr std::string_view crash_system = "plexus";   // crash -> replacement's next message
constexpr std::string_view handoff_system = "handoff"; // return -> the same instance's next
constexpr std::size_t full_crashes = 10'000; // per run, as many handoffs
constexpr std::size_t quick_crashes = 400;   // x 5 runs: 2,000
constexpr std::size_t warmup_rounds = 100;   // per run, not recorded
constexpr auto round_deadline = 10s;         // one step of a round, else the run fails

/// The first payload byte; the rest is the round number in decimal.
enum class message_kind : char { crash_gate = 'c', handoff_gate = 'h', probe = 'p', fence = 'f' };

using parsed = tagged<message_kind>;

std::string payload_of(message_kind kind, std::uint64_t round) { return tagged_payload(kind, round); }

[[nodiscard]] std::optional<parsed> parse(std::string_view payload) {
  return parse_tagged<message_kind>(payload);
}

/// What the handler (on a CAF worker), the fence subscriber (on the
/// connection's I/O thread) and the driver share, one round at a time.
/// Rounds count from 1; each progress field holds the last round that got
/// that far.
class rounds {
public:
  /// The function's handler.
  plexus::result<void> on_work(std::string_view payload, plexus::context& ctx) {
    const auto entered = steady::now(); // first: a probe's start
    auto p = parse(payload);
    if (!p) return fail("a work message with a payload not sent: '" + std::string{payload} + "'");
    switch (p->kind) {
      case message_kind::probe: {
        std::lock_guard lock{mutex_};
        probe_entered_ = entered;
        probe_ = p->round;
        changed_.notify_all();
        return {};
      }
      case message_kind::crash_gate:
      case message_kind::handoff_gate:
        if (ctx.delivery() > 1) { // only a crash gate comes back
          std::lock_guard lock{mutex_};
          redelivered_ = p->round;
          changed_.notify_all();
          return {};
        }
        return hold_gate(*p);
      default:
        return fail("a message of kind '" + std::string(1, static_cast<char>(p->kind)) +
                    "' on the work topic");
    }
  }

  /// The fence subscriber's handler: the round's probe is in the pool.
  void on_fence(std::string_view payload) {
    auto p = parse(payload);
    std::lock_guard lock{mutex_};
    if (!p || p->kind != message_kind::fence) {
      failure_ = "a fence with a payload not sent: '" + std::string{payload} + "'";
    } else {
      fence_ = p->round;
    }
    changed_.notify_all();
  }

  /// The driver: runs round `round` and returns the gap from the gate
  /// leaving its handler to the probe entering one.
  steady::duration run_round(plexus::client& c, std::uint64_t round, bool crash) {
    const auto gate = crash ? message_kind::crash_gate : message_kind::handoff_gate;
    c.publish(work_topic, payload_of(gate, round));
    std::unique_lock lock{mutex_};
    wait(lock, [&] { return gate_ == round; }, "the gate's handler to start", round);
    lock.unlock();
    c.publish(work_topic, payload_of(message_kind::probe, round));
    c.publish(fence_topic, payload_of(message_kind::fence, round));
    lock.lock();
    wait(lock, [&] { return probe_ == round && (!crash || redelivered_ == round); },
         crash ? "the probe and the crashed gate's redelivery" : "the probe", round);
    return probe_entered_ - steady::time_point{steady::duration{gate_left_.load()}};
  }

private:
  // Holds the instance until the fence says the probe waits in the pool,
  // then stamps the time and leaves: by crashing or by returning. The wait
  // blocks a CAF worker thread, before the gap starts.
  plexus::result<void> hold_gate(const parsed& p) {
    {
      std::unique_lock lock{mutex_};
      gate_ = p.round;
      changed_.notify_all();
      if (!changed_.wait_until(lock, steady::now() + round_deadline,
                               [&] { return fence_ >= p.round || !failure_.empty(); })) {
        failure_ = "the fence of round " + std::to_string(p.round) + " never arrived";
        changed_.notify_all();
      }
      if (!failure_.empty()) return plexus::error{failure_};
    }
    // The stamp is the last thing before leaving: no lock in the gap.
    gate_left_.store(steady::now().time_since_epoch().count());
    if (p.kind == message_kind::crash_gate) throw std::runtime_error("restart bench: a crash on purpose");
    return {};
  }

  plexus::result<void> fail(std::string why) {
    std::lock_guard lock{mutex_};
    if (failure_.empty()) failure_ = why;
    changed_.notify_all();
    return plexus::reject{std::move(why)};
  }

  template <class Pred>
  void wait(std::unique_lock<std::mutex>& lock, Pred done, const char* what, std::uint64_t round) {
    const auto deadline = steady::now() + round_deadline;
    changed_.wait_until(lock, deadline, [&] { return done() || !failure_.empty(); });
    if (!failure_.empty()) throw std::runtime_error(failure_);
    if (!done())
      throw std::runtime_error("round " + std::to_string(round) + ": waited " +
                               std::to_string(round_deadline.count()) + " s for " + what);
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::uint64_t gate_ = 0, fence_ = 0, probe_ = 0, redelivered_ = 0;
  steady::time_point probe_entered_{};
  std::string failure_;
  std::atomic<steady::rep> gate_left_{0}; // written by the gate, read after its probe
};

/// Gaps of one run, in microseconds.
struct run_gaps {
  std::vector<double> crash, handoff;
};

double to_us(steady::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

run_gaps restart_once(std::size_t crashes) {
  rounds r;
  plexus::node n{node_options{}}; // its embedded broker
  // A success follows every crash, so intensity never trips and no restart
  // backs off; the limit is high only so that a miscount here could not
  // stop the pool.
  service_options supervision;
  supervision.max_restarts = 1'000;
  n.service("bench", supervision)
    .function("restart")
    .on(std::string{work_topic})
    .instances(1)
    .handle([&r](std::string_view payload, plexus::context& ctx) { return r.on_work(payload, ctx); });
  n.start();
  auto& c = n.client();
  c.subscribe(fence_topic, [&r](const message_view& m) { r.on_fence(m.payload); });

  run_gaps gaps;
  gaps.crash.reserve(crashes);
  gaps.handoff.reserve(crashes);
  std::uint64_t round = 0;
  std::size_t crashed = 0;
  for (std::size_t i = 0; i < warmup_rounds + crashes; ++i) {
    const bool measured = i >= warmup_rounds;
    auto crash_gap = r.run_round(c, ++round, true);
    auto handoff_gap = r.run_round(c, ++round, false);
    ++crashed;
    if (!measured) continue;
    gaps.crash.push_back(to_us(crash_gap));
    gaps.handoff.push_back(to_us(handoff_gap));
  }

  // The pool saw every crash, restarted after each, and never quarantined
  // or stopped: else the gaps measured something else. (The pool counts a
  // crash while it handles it, before it takes in the redelivery the round
  // waited for, so the counts are final here.)
  auto stats = n.stats();
  n.stop();
  if (stats.size() != 1) throw std::runtime_error("expected the node to run one function");
  const auto& s = stats.front();
  if (s.crashes != crashed || s.restarts != crashed || s.quarantined != 0 || s.stopped)
    throw std::runtime_error("the pool counted " + std::to_string(s.crashes) + " crashes and " +
                             std::to_string(s.restarts) + " restarts of " +
                             std::to_string(crashed) + ", quarantined " +
                             std::to_string(s.quarantined) + (s.stopped ? ", and stopped" : ""));
  return gaps;
}

void run_restart(const run_config& cfg, recorder& rec) {
  const auto crashes = cfg.quick ? quick_crashes : full_crashes;
  rec.note(std::to_string(cfg.runs) + " runs x " + std::to_string(crashes) +
           " crashes and as many handoffs, alternating; per run: p50, p99, max");
  latency_percentiles crash, handoff;
  for (int run = 0; run < cfg.runs; ++run) {
    auto gaps = restart_once(crashes);
    crash.add_run(std::move(gaps.crash));
    handoff.add_run(std::move(gaps.handoff));
  }
  crash.record(rec, case_name, crash_system);
  handoff.record(rec, case_name, handoff_system);
}

const registration restart_registration{
  {"restart", "crash -> the replacement instance starts the next message, beside a plain handoff",
   &run_restart}};

} // namespace

} // namespace plexus::bench
