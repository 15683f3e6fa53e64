// SPDX-License-Identifier: Apache-2.0
// Scenario `spawn`: a function of 100,000 instances (--quick: 10,000), the
// time from node.start() to every instance spawned and the memory each one
// costs; the Scaling issue's targets are <= 1 s and <= 1.5 KiB an instance.
// Each run starts plexus-bench again as a child process (--child), a fresh
// heap for every figure, and the child only measures: it leaves the node
// to the process's exit.
//
// "Spawned", through the public API: stats().instances is the scaler's
// target, set before any instance exists, and no count of live instances is
// exposed, so each system is timed to a signal of its own:
// - plexus (a handler function): the first message's handler starts. The
//   pool actor spawns all of its instances before it takes its first
//   message, so every instance actor exists (constructed and scheduled);
//   CAF runs an actor's initialisation (its behaviour) when the actor is
//   first scheduled, which for most of them comes later still.
// - actor (a raw CAF actor function, plexus/actor.hpp): its factory has run
//   once per instance, so every instance actor and the user's actor linked
//   to it has been initialised: the complete signal, at two actors an
//   instance.
//
// Those initialisations, most of them after the plexus signal, allocate
// (the behaviour), so each child also waits for VmRSS to settle (read every 10 ms;
// settled once it grew by less than 64 KiB over 200 ms, a measurement's
// sampling, with a deadline): `settled_ms` is start() -> the last growth,
// the handler function's time to every instance initialised, to 10 ms.
//
// Memory: VmRSS settled (and, as rss_at_spawn, at the signal) minus VmRSS
// before the node was made, with N instances, less the same with one
// instance (the node's fixed cost: threads, broker, buffers), over N - 1.
// The `1inst` case is that base.

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <optional>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>

#include "baselines/child_process.hpp"
#include "plexus/actor.hpp"
#include "plexus/node.hpp"
#include "scenario.hpp"

namespace plexus::bench {

namespace {

using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::string_view topic = "bench.spawn";
constexpr std::string_view handler_system = "plexus"; // signal: the first handler starts
constexpr std::string_view actor_system = "actor";    // signal: every instance initialised
constexpr std::uint32_t full_instances = 100'000;
constexpr std::uint32_t quick_instances = 10'000;
constexpr auto signal_deadline = 60s; // in the child, from start()
constexpr auto child_deadline = 90s;  // the whole child
constexpr std::string_view figures_tag = "spawn-figures";
constexpr auto rss_poll = 10ms;
constexpr auto rss_quiet_window = 200ms;
constexpr std::int64_t rss_quiet_kib = 64;
constexpr auto rss_settle_deadline = 30s; // from the signal

// ---------------------------------------------------------------- child

/// VmRSS of this process, in KiB.
std::int64_t vm_rss_kib() {
  std::ifstream status{"/proc/self/status"};
  std::string line;
  while (std::getline(status, line)) {
    if (!line.starts_with("VmRSS:")) continue;
    std::istringstream fields{line.substr(6)};
    std::int64_t kib = -1;
    std::string unit;
    if (fields >> kib >> unit && unit == "kB" && kib > 0) return kib;
    break;
  }
  throw std::runtime_error("cannot read VmRSS from /proc/self/status");
}

/// Counts arrivals (from CAF workers) and stamps the one that reaches the
/// target; the driver waits for it.
class arrivals {
public:
  explicit arrivals(std::uint64_t target) : target_(target) {}

  void arrive() noexcept {
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 != target_) return;
    auto now = steady::now();
    std::lock_guard lock{mutex_};
    reached_at_ = now;
    reached_.notify_all();
  }

  /// When the target was reached; throws past `deadline`.
  steady::time_point await(steady::time_point deadline, std::string_view what) {
    std::unique_lock lock{mutex_};
    if (!reached_.wait_until(lock, deadline, [&] { return reached_at_.has_value(); }))
      throw std::runtime_error("waited " + std::to_string(signal_deadline.count()) + " s for " +
                               std::string{what} + " (" + std::to_string(count()) + " of " +
                               std::to_string(target_) + ")");
    return *reached_at_;
  }

  [[nodiscard]] std::uint64_t count() const noexcept {
    return count_.load(std::memory_order_acquire);
  }

private:
  const std::uint64_t target_;
  std::atomic<std::uint64_t> count_{0};
  std::mutex mutex_;
  std::condition_variable reached_;
  std::optional<steady::time_point> reached_at_;
};

/// VmRSS once it stops growing, and when it last grew.
struct settled_rss {
  std::int64_t kib = 0;
  steady::time_point last_growth{};
};

/// Reads VmRSS every rss_poll from `since` (when it read `kib`) until it
/// grew by less than rss_quiet_kib over rss_quiet_window.
settled_rss await_settled_rss(steady::time_point since, std::int64_t kib) {
  settled_rss s{kib, since};
  const auto deadline = since + rss_settle_deadline;
  for (;;) {
    std::this_thread::sleep_for(rss_poll); // sampling, not synchronisation
    const auto now = steady::now();
    const auto current = vm_rss_kib();
    if (current - s.kib >= rss_quiet_kib) {
      s.last_growth = now;
      s.kib = current;
    } else if (now - s.last_growth >= rss_quiet_window) {
      s.kib = std::max(s.kib, current);
      return s;
    }
    if (now >= deadline)
      throw std::runtime_error("VmRSS still grew " + std::to_string(rss_settle_deadline.count()) +
                               " s after the signal (" + std::to_string(current) + " KiB)");
  }
}

/// What a child measures, in ns and KiB.
struct child_figures {
  std::int64_t start_ns = 0;   // start() called -> returned
  std::int64_t spawned_ns = 0; // start() called -> the system's signal
  std::int64_t settled_ns = 0; // start() called -> VmRSS last grew
  std::int64_t rss_before_kib = 0, rss_spawned_kib = 0, rss_settled_kib = 0;
};

std::int64_t ns_between(steady::time_point a, steady::time_point b) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count();
}

child_figures measure(std::string_view system, std::uint32_t instances) {
  const bool raw_actor = system == actor_system;
  child_figures f;
  f.rss_before_kib = vm_rss_kib();
  arrivals made{instances}; // raw actor instances initialised
  arrivals handled{1};      // the probe
  plexus::node n{node_options{}}; // its embedded broker
  auto& fn = n.service("bench").function("spawn").on(std::string{topic}).instances(instances);
  if (raw_actor) {
    actor_function(fn, [&made, &handled](caf::event_based_actor*, plexus::client&) -> caf::behavior {
      made.arrive();
      return {[&handled](plexus::handle_atom, const plexus::envelope&) -> plexus::result<void> {
        handled.arrive();
        return {};
      }};
    });
  } else {
    fn.handle([&handled](std::string_view, plexus::context&) -> plexus::result<void> {
      handled.arrive();
      return {};
    });
  }
  const auto called = steady::now();
  n.start();
  f.start_ns = ns_between(called, steady::now());
  n.client().publish(topic, "probe");
  const auto deadline = called + signal_deadline;
  const auto signal = raw_actor ? made.await(deadline, "every raw actor instance to initialise")
                                : handled.await(deadline, "the first message's handler");
  f.spawned_ns = ns_between(called, signal);
  f.rss_spawned_kib = vm_rss_kib();
  const auto settled = await_settled_rss(steady::now(), f.rss_spawned_kib);
  f.settled_ns = ns_between(called, std::max(signal, settled.last_growth));
  f.rss_settled_kib = settled.kib;

  // What was timed is what was asked for: the probe handled once, the
  // pool at its size, nothing crashed, no raw actor made twice.
  handled.await(deadline, "the probe's handler");
  auto stats = n.stats();
  if (stats.size() != 1 || stats[0].instances != instances || stats[0].crashes != 0 ||
      stats[0].errors != 0)
    throw std::runtime_error("the node's stats do not show one function of " +
                             std::to_string(instances) + " instances without failures");
  if (handled.count() != 1 || (raw_actor && made.count() != instances))
    throw std::runtime_error("the probe was handled " + std::to_string(handled.count()) +
                             " times; " + std::to_string(made.count()) + " raw actors made for " +
                             std::to_string(instances) + " instances");
  return f;
}

/// plexus-bench --child spawn:SYSTEM:INSTANCES
void spawn_child(std::string_view arg, std::ostream& out) {
  auto colon = arg.find(':');
  auto system = arg.substr(0, colon);
  std::uint32_t instances = 0;
  auto count = colon == std::string_view::npos ? std::string_view{} : arg.substr(colon + 1);
  auto [end, ec] = std::from_chars(count.data(), count.data() + count.size(), instances);
  if ((system != handler_system && system != actor_system) || ec != std::errc{} ||
      end != count.data() + count.size() || instances == 0)
    throw std::runtime_error("spawn: a child needs plexus|actor:INSTANCES, got '" +
                             std::string{arg} + "'");
  auto f = measure(system, instances);
  out << figures_tag << ' ' << f.start_ns << ' ' << f.spawned_ns << ' ' << f.settled_ns << ' '
      << f.rss_before_kib << ' ' << f.rss_spawned_kib << ' ' << f.rss_settled_kib << std::endl;
  // The figures are out: the process's exit frees the node, with its
  // instances, faster than stopping it would.
  std::_Exit(0);
}

// ---------------------------------------------------------------- driver

child_figures run_child(std::string_view system, std::uint32_t instances, const scratch_dir& dir) {
  const auto arg = std::string{system} + ":" + std::to_string(instances);
  const auto log = dir.path() / ("child-" + std::string{system} + "-" + std::to_string(instances) + ".log");
  std::filesystem::remove(log); // the child appends
  child_process child{{self_executable().string(), "--child", "spawn:" + arg}, log};
  const auto where = "the child for " + arg + " ";
  if (!child.wait_for_exit(child_deadline)) {
    child.terminate();
    throw std::runtime_error(where + "ran past " + std::to_string(child_deadline.count()) +
                             " s; its output: " + tail_of(log));
  }
  if (!child.succeeded())
    throw std::runtime_error(where + child.describe() + "; its output: " + tail_of(log));
  std::ifstream in{log};
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with(figures_tag)) continue;
    std::istringstream fields{line.substr(figures_tag.size())};
    child_figures f;
    if (fields >> f.start_ns >> f.spawned_ns >> f.settled_ns >> f.rss_before_kib >>
          f.rss_spawned_kib >> f.rss_settled_kib &&
        f.start_ns > 0 && f.spawned_ns > 0 && f.settled_ns >= f.spawned_ns && f.rss_before_kib > 0)
      return f;
    break;
  }
  throw std::runtime_error(where + "printed no figures; its output: " + tail_of(log));
}

std::string case_of(std::uint32_t instances) {
  return instances % 1000 == 0 ? std::to_string(instances / 1000) + "k" : std::to_string(instances);
}

double to_ms(std::int64_t ns) { return static_cast<double>(ns) / 1e6; }

void run_spawn(const run_config& cfg, recorder& rec) {
  const auto instances = cfg.quick ? quick_instances : full_instances;
  rec.note(std::to_string(cfg.runs) + " runs x (a child with " + std::to_string(instances) +
           " instances + one with 1) per system");
  scratch_dir dir{"plexus-bench-spawn-"};
  for (auto system : {handler_system, actor_system}) {
    std::vector<double> start_ms, spawn_ms, settled_ms, base_start_ms, base_spawn_ms;
    std::vector<double> bytes_at_spawn, bytes_settled;
    // Per instance: the growth with N instances less the growth with one.
    auto per_instance = [&](std::int64_t big_kib, std::int64_t base_kib, const char* when) {
      if (big_kib <= base_kib)
        throw std::runtime_error(std::string{system} + ": " + std::to_string(instances) +
                                 " instances grew VmRSS no more than one did, " + when + " (" +
                                 std::to_string(big_kib) + " KiB vs " + std::to_string(base_kib) + ")");
      return static_cast<double>(big_kib - base_kib) * 1024.0 / static_cast<double>(instances - 1);
    };
    for (int run = 0; run < cfg.runs; ++run) {
      auto big = run_child(system, instances, dir);
      auto base = run_child(system, 1, dir);
      start_ms.push_back(to_ms(big.start_ns));
      spawn_ms.push_back(to_ms(big.spawned_ns));
      settled_ms.push_back(to_ms(big.settled_ns));
      base_start_ms.push_back(to_ms(base.start_ns));
      base_spawn_ms.push_back(to_ms(base.spawned_ns));
      bytes_at_spawn.push_back(per_instance(big.rss_spawned_kib - big.rss_before_kib,
                                            base.rss_spawned_kib - base.rss_before_kib, "at the signal"));
      bytes_settled.push_back(per_instance(big.rss_settled_kib - big.rss_before_kib,
                                           base.rss_settled_kib - base.rss_before_kib, "settled"));
    }
    const auto name = case_of(instances);
    rec.add(name, system, "start_ms", "ms", start_ms);
    rec.add(name, system, "spawn_ms", "ms", spawn_ms);
    rec.add(name, system, "settled_ms", "ms", settled_ms);
    rec.add(name, system, "rss_per_instance", "B", bytes_settled);
    rec.add(name, system, "rss_at_spawn", "B", bytes_at_spawn);
    rec.add("1inst", system, "start_ms", "ms", base_start_ms);
    rec.add("1inst", system, "spawn_ms", "ms", base_spawn_ms);
  }
}

const registration spawn_registration{
  {"spawn", "node.start() -> 100k instances spawned, and VmRSS per instance (a child process a run)",
   &run_spawn, &spawn_child}};

} // namespace

} // namespace plexus::bench
