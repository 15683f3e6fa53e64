// SPDX-License-Identifier: Apache-2.0
// Scenario `coldstart`: what a message pays when its function is at zero
// instances, p50/p99/max; the Scaling issue's target is p99 <= 50 us from
// the message's arrival at the node to its handler's start. One node with
// its embedded broker and two functions: `cold` scales to zero between
// messages (min 0, max 1, a 5 ms tick, a 20 ms idle grace) and `warm`
// keeps its one instance (min = max = 1).
//
// Two measures, in separate cases:
// - arrival-to-handler: ctx.since_arrival_ns() read first thing in the
//   handler (the node's I/O thread taking the message in -> its handler's
//   start; for a cold start, ctx.cold_start_ns() plus the few instructions
//   before the handler's first line), for both functions. Beside them,
//   `wakeup`: the machine's floor for that path, one thread waking another
//   that sleeps on a condition variable, as an idle CAF worker does. The
//   I/O thread -> worker hand-off is such a wake-up, so warm - wakeup is
//   what the runtime adds and plexus - warm what a cold start adds.
// - publish-to-handler: the driver's publish -> the handler's start,
//   through the broker, taken the same way for both functions.
//
// A round waits until the cold function is back at zero (woken by its
// $SYS.scale event, confirmed by node.stats(), with a deadline), then sends
// one message to each function, one at a time, each waited for until its
// handler starts; the order alternates by round, so neither pays the first
// wake-up of the idle node's threads more often than the other.
//
// The autoscaler only counts demand it sees at a tick (instances at work +
// messages waiting), and a function that never showed any keeps its one
// instance forever. These handlers return within microseconds, between
// ticks, so each run first sends one "prime" message whose handler works
// 10 ticks; from then on the function goes back to zero a tick after each
// cold start, as its idle grace has long passed since that demand.

#include <algorithm>
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
#include <thread>
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

constexpr std::string_view service_name = "bench";
constexpr std::string_view cold_function = "cold";
constexpr std::string_view warm_function = "warm";
constexpr std::string_view cold_topic = "bench.coldstart.cold";
constexpr std::string_view warm_topic = "bench.coldstart.warm";
constexpr std::string_view cold_scale_topic = "$SYS.scale.bench.cold";
constexpr std::string_view arrival_case = "arrival-to-handler";
constexpr std::string_view publish_case = "publish-to-handler";
constexpr std::string_view cold_system = "plexus"; // a cold start
constexpr std::string_view warm_system = "warm";   // the same message to a warm instance
constexpr std::string_view wakeup_system = "wakeup"; // a bare thread wake-up: the floor
constexpr std::size_t full_rounds = 1'000; // cold starts per run, as many warm messages
constexpr std::size_t quick_rounds = 100;  // x 5 runs: 500
constexpr std::size_t warmup_rounds = 10;  // per run, not recorded
constexpr auto step_deadline = 10s;        // one step of a round, else the run fails
constexpr auto stats_slice = 2ms; // node.stats() is re-read this often: scale events are best effort
constexpr auto scaler_tick = 5ms;
constexpr auto prime_work = 10 * scaler_tick;

scale_options to_zero_quickly() {
  scale_options o;
  o.min = 0;
  o.max = 1;
  o.tick = scaler_tick;
  o.panic_window = scaler_tick;
  o.stable_window = 2 * scaler_tick;
  o.idle_grace = 20ms;
  return o;
}

/// The first payload byte; the rest is the round number in decimal.
enum class message_kind : char { prime = 'p', cold = 'c', warm = 'w' };

using parsed = tagged<message_kind>;

std::string payload_of(message_kind kind, std::uint64_t round) { return tagged_payload(kind, round); }

[[nodiscard]] std::optional<parsed> parse(std::string_view payload) {
  return parse_tagged<message_kind>(payload);
}

/// What a handler saw when it started.
struct handler_start {
  parsed message;
  steady::time_point entered{};
  bool cold = false;        // ctx.cold_start()
  std::uint64_t cold_ns = 0; // ctx.cold_start_ns()
  std::uint64_t waited_ns = 0; // ctx.since_arrival_ns() at the start
};

function_stats stats_of(const plexus::node& n, std::string_view function) {
  for (auto& s : n.stats())
    if (s.service == service_name && s.function == function) return s;
  throw std::runtime_error("the node runs no function " + std::string{service_name} + "." +
                           std::string{function});
}

/// What the handlers (on CAF workers), the scale-event subscriber (on the
/// connection's I/O thread) and the driver share. One message is in flight
/// at a time, so the last handler start is all the driver needs.
class probes {
public:
  /// Both functions' handler; `function` is the one it was declared for.
  plexus::result<void> on_message(message_kind function, std::string_view payload,
                                  plexus::context& ctx) {
    const auto entered = steady::now(); // first: the handler's start
    const auto waited = ctx.since_arrival_ns();
    auto p = parse(payload);
    auto expected = p && (p->kind == function ||
                          (function == message_kind::cold && p->kind == message_kind::prime));
    if (!expected) return fail("a message the driver did not send: '" + std::string{payload} + "'");
    {
      std::lock_guard lock{mutex_};
      last_ = handler_start{*p, entered, ctx.cold_start(), ctx.cold_start_ns(), waited};
      changed_.notify_all();
    }
    // Work the autoscaler's tick can see (see the top of the file).
    if (p->kind == message_kind::prime) std::this_thread::sleep_for(prime_work);
    return {};
  }

  /// The scale-event subscriber: the cold function's instance count moved.
  void on_scale() {
    std::lock_guard lock{mutex_};
    ++scale_events_;
    changed_.notify_all();
  }

  /// Blocks until the handler of message (kind, round) has started.
  handler_start await(message_kind kind, std::uint64_t round) {
    const auto deadline = steady::now() + step_deadline;
    std::unique_lock lock{mutex_};
    auto done = [&] { return last_ && last_->message.kind == kind && last_->message.round == round; };
    changed_.wait_until(lock, deadline, [&] { return done() || !failure_.empty(); });
    if (!failure_.empty()) throw std::runtime_error(failure_);
    if (!done())
      throw std::runtime_error("round " + std::to_string(round) + ": the handler of message '" +
                               payload_of(kind, round) + "' did not start within " +
                               std::to_string(step_deadline.count()) + " s");
    return *last_;
  }

  /// Blocks until `pred(node.stats() of function)` holds; woken by scale
  /// events, and re-reads the stats every stats_slice besides.
  template <class Pred>
  void await_stats(const plexus::node& n, std::string_view function, Pred pred,
                   const std::string& what) {
    const auto deadline = steady::now() + step_deadline;
    std::unique_lock lock{mutex_};
    for (;;) {
      if (!failure_.empty()) throw std::runtime_error(failure_);
      const auto seen = scale_events_;
      lock.unlock();
      auto s = stats_of(n, function);
      lock.lock();
      if (pred(s)) return;
      const auto now = steady::now();
      if (now >= deadline)
        throw std::runtime_error("waited " + std::to_string(step_deadline.count()) + " s for " +
                                 what + " (" + std::string{function} + " runs " +
                                 std::to_string(s.instances) + " instances, handled " +
                                 std::to_string(s.ok) + ")");
      changed_.wait_until(lock, std::min(deadline, now + stats_slice),
                          [&] { return scale_events_ != seen || !failure_.empty(); });
    }
  }

  void await_cold_at_zero(const plexus::node& n) {
    await_stats(n, cold_function, [](const function_stats& s) { return s.instances == 0; },
                "the cold function to scale back to zero");
  }

private:
  plexus::result<void> fail(std::string why) {
    std::lock_guard lock{mutex_};
    if (failure_.empty()) failure_ = why;
    changed_.notify_all();
    return plexus::reject{std::move(why)};
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::optional<handler_start> last_;
  std::uint64_t scale_events_ = 0;
  std::string failure_;
};

double to_us(steady::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

/// A thread asleep on a condition variable, woken once per call: how long
/// from the notify to the sleeper running, the floor of any hand-off to an
/// idle thread on this machine.
class sleeper {
public:
  sleeper() : thread_{[this] { loop(); }} {}
  sleeper(const sleeper&) = delete;
  sleeper& operator=(const sleeper&) = delete;
  ~sleeper() {
    {
      std::lock_guard lock{mutex_};
      quit_ = true;
    }
    wake_.notify_one();
    thread_.join();
  }

  /// Wakes the sleeper and returns notify -> running, in microseconds.
  double wake_us() {
    std::unique_lock lock{mutex_};
    woken_ = false;
    sent_ = steady::now();
    wake_.notify_one(); // under the lock, as CAF's scheduler does
    if (!done_.wait_for(lock, step_deadline, [this] { return woken_; }))
      throw std::runtime_error("a sleeping thread did not wake within " +
                               std::to_string(step_deadline.count()) + " s");
    return to_us(ran_ - sent_);
  }

private:
  void loop() {
    std::unique_lock lock{mutex_};
    for (auto seen = sent_;;) {
      wake_.wait(lock, [&] { return quit_ || sent_ != seen; });
      if (quit_) return;
      ran_ = steady::now();
      seen = sent_;
      woken_ = true;
      done_.notify_one();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_, done_;
  steady::time_point sent_{}, ran_{};
  bool woken_ = false, quit_ = false;
  std::thread thread_; // last: starts once the rest is built
};

/// One run's samples, in microseconds.
struct run_samples {
  std::vector<double> arrival_cold, arrival_warm, wakeup; // arrival -> handler; the floor
  std::vector<double> cold, warm; // publish -> handler start
};

run_samples coldstart_once(std::size_t rounds) {
  probes p;
  plexus::node n{node_options{}}; // its embedded broker
  auto& svc = n.service(std::string{service_name});
  svc.function(std::string{cold_function})
    .on(std::string{cold_topic})
    .scale(to_zero_quickly())
    .handle([&p](std::string_view payload, plexus::context& ctx) {
      return p.on_message(message_kind::cold, payload, ctx);
    });
  svc.function(std::string{warm_function})
    .on(std::string{warm_topic})
    .instances(1)
    .handle([&p](std::string_view payload, plexus::context& ctx) {
      return p.on_message(message_kind::warm, payload, ctx);
    });
  n.start();
  auto& c = n.client();
  c.subscribe(cold_scale_topic, [&p](const message_view&) { p.on_scale(); });

  const auto where = [](std::uint64_t round) { return "round " + std::to_string(round) + ": "; };
  // A function at min 0 starts at zero: the prime is a cold start too.
  if (stats_of(n, cold_function).instances != 0)
    throw std::runtime_error("a function at min 0 started with instances");
  c.publish(cold_topic, payload_of(message_kind::prime, 0));
  auto prime = p.await(message_kind::prime, 0);
  if (!prime.cold) throw std::runtime_error("the first message to a function at zero was not a cold start");
  std::uint64_t cold_ns_max = prime.cold_ns;

  // Publishes one message and returns its handler's start and the gap.
  auto send = [&](message_kind kind, std::uint64_t round) {
    const auto topic = kind == message_kind::cold ? cold_topic : warm_topic;
    const auto published = steady::now();
    c.publish(topic, payload_of(kind, round));
    auto s = p.await(kind, round);
    return std::pair{s, to_us(s.entered - published)};
  };

  run_samples out;
  for (auto* v : {&out.arrival_cold, &out.arrival_warm, &out.wakeup, &out.cold, &out.warm})
    v->reserve(rounds);
  sleeper bare;
  const std::uint64_t total = warmup_rounds + rounds;
  for (std::uint64_t round = 1; round <= total; ++round) {
    p.await_cold_at_zero(n);
    const auto wakeup = bare.wake_us(); // asleep since the last round, as the node's threads
    std::pair<handler_start, double> cold, warm;
    if (round % 2 == 0) {
      cold = send(message_kind::cold, round);
      warm = send(message_kind::warm, round);
    } else {
      warm = send(message_kind::warm, round);
      cold = send(message_kind::cold, round);
    }
    if (!cold.first.cold || cold.first.cold_ns == 0)
      throw std::runtime_error(where(round) + "a message to the function at zero was not flagged as a cold start");
    if (warm.first.cold || warm.first.cold_ns != 0)
      throw std::runtime_error(where(round) + "a message to the warm function was flagged as a cold start");
    if (cold.first.waited_ns < cold.first.cold_ns || warm.first.waited_ns == 0)
      throw std::runtime_error(where(round) + "since_arrival_ns() said " +
                               std::to_string(cold.first.waited_ns) + " ns for a cold start of " +
                               std::to_string(cold.first.cold_ns) + " ns and " +
                               std::to_string(warm.first.waited_ns) + " ns for a warm message");
    cold_ns_max = std::max(cold_ns_max, cold.first.cold_ns);
    if (round <= warmup_rounds) continue;
    out.arrival_cold.push_back(static_cast<double>(cold.first.waited_ns) / 1e3);
    out.arrival_warm.push_back(static_cast<double>(warm.first.waited_ns) / 1e3);
    out.wakeup.push_back(wakeup);
    out.cold.push_back(cold.second);
    out.warm.push_back(warm.second);
  }

  // The node counted what the handlers saw: one cold start per cold
  // message (the prime's included), every message handled once, none
  // failed, and the same worst cold start. At zero, the cold function has
  // settled its last message; the warm one settles within microseconds.
  const std::uint64_t cold_messages = total + 1;
  p.await_cold_at_zero(n);
  p.await_stats(n, warm_function, [&](const function_stats& s) { return s.ok >= total; },
                "the warm function to settle its messages");
  auto cold_stats = stats_of(n, cold_function);
  auto warm_stats = stats_of(n, warm_function);
  n.stop();
  auto failed = [](const function_stats& s) { return s.errors + s.crashes + s.rejected; };
  if (cold_stats.ok != cold_messages || cold_stats.cold_starts != cold_messages ||
      failed(cold_stats) != 0)
    throw std::runtime_error("the cold function handled " + std::to_string(cold_stats.ok) +
                             " messages with " + std::to_string(cold_stats.cold_starts) +
                             " cold starts and " + std::to_string(failed(cold_stats)) +
                             " failures; the driver sent " + std::to_string(cold_messages) +
                             ", each to a function at zero");
  if (cold_stats.cold_start_ns_max != cold_ns_max)
    throw std::runtime_error("stats() says the worst cold start took " +
                             std::to_string(cold_stats.cold_start_ns_max) +
                             " ns, the handlers saw " + std::to_string(cold_ns_max) + " ns");
  if (warm_stats.ok != total || warm_stats.cold_starts != 0 || failed(warm_stats) != 0)
    throw std::runtime_error("the warm function handled " + std::to_string(warm_stats.ok) +
                             " of " + std::to_string(total) + " messages, with " +
                             std::to_string(warm_stats.cold_starts) + " cold starts and " +
                             std::to_string(failed(warm_stats)) + " failures");
  return out;
}

void run_coldstart(const run_config& cfg, recorder& rec) {
  const auto rounds = cfg.quick ? quick_rounds : full_rounds;
  rec.note(std::to_string(cfg.runs) + " runs x " + std::to_string(rounds) +
           " cold starts, as many warm messages (alternating first) and thread wake-ups;"
           " per run: p50, p99, max");
  latency_percentiles arrival_cold, arrival_warm, wakeup, cold, warm;
  for (int run = 0; run < cfg.runs; ++run) {
    auto s = coldstart_once(rounds);
    arrival_cold.add_run(std::move(s.arrival_cold));
    arrival_warm.add_run(std::move(s.arrival_warm));
    wakeup.add_run(std::move(s.wakeup));
    cold.add_run(std::move(s.cold));
    warm.add_run(std::move(s.warm));
  }
  arrival_cold.record(rec, arrival_case, cold_system);
  arrival_warm.record(rec, arrival_case, warm_system);
  wakeup.record(rec, arrival_case, wakeup_system);
  cold.record(rec, publish_case, cold_system);
  warm.record(rec, publish_case, warm_system);
}

const registration coldstart_registration{
  {"coldstart", "a message to a function at zero instances -> its handler's start, beside a warm one",
   &run_coldstart}};

} // namespace

} // namespace plexus::bench
