// SPDX-License-Identifier: Apache-2.0
// Scenario `bulkhead` (issue #21): a sibling function's request latency
// while a CPU-bound neighbour on the same node is saturated. One node
// with its embedded broker; `echo` (2 instances) answers at once; `crunch`
// (4 instances) burns 100 ms of CPU per message. Requests to `echo` are
// sent one after the other for a window per run, timed from send to reply.
// Cases:
//   sibling-unloaded         crunch idle: the sibling's own latency
//   sibling-own-dispatcher   crunch saturated on a dispatcher of its own
//                            (plexus::thread_pool, 1 thread)
//   sibling-shared-scheduler crunch saturated on the scheduler the sibling
//                            uses too (plexus before dispatchers)
// p50/p99/max per run in us, and `p99_vs_unloaded`: each run's p99 over
// the median unloaded p99 (issue #21's target: within 2x with a dispatcher
// of its own).

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "latency.hpp"
#include "plexus/node.hpp"
#include "scenario.hpp"

namespace plexus::bench {

namespace {

using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto crunch_work = 100ms;
constexpr std::uint32_t crunch_instances = 4;

enum class neighbour : std::uint8_t { idle, own_dispatcher, shared_scheduler };

void burn(std::chrono::milliseconds d) {
  auto end = steady::now() + d;
  volatile std::uint64_t x = 0;
  while (steady::now() < end)
    for (int i = 0; i < 1000; ++i) x = x + static_cast<std::uint64_t>(i);
}

function_stats stats_of(const plexus::node& n, std::string_view fn) {
  for (auto& s : n.stats())
    if (s.function == fn) return s;
  throw std::runtime_error("bulkhead: no function " + std::string{fn});
}

/// The sibling's request latencies (us) over `runs` runs of `window`
/// each, with the neighbour as `mode` says.
std::vector<std::vector<double>> measure(neighbour mode, int runs, std::chrono::milliseconds window) {
  plexus::node n{node_options{}};
  auto& svc = n.service("bench");
  auto& crunch = svc.function("crunch").on("bench.crunch").instances(crunch_instances);
  if (mode == neighbour::own_dispatcher) crunch.dispatcher(thread_pool{"crunch", 1});
  crunch.handle([](std::string_view, context&) -> plexus::result<void> {
    burn(crunch_work);
    return {};
  });
  svc.function("echo").on("bench.echo").instances(2).handle([](std::string_view p, context& ctx) -> plexus::result<void> {
    ctx.reply(p);
    return {};
  });
  n.start();
  auto ask = [&n] {
    auto t = steady::now();
    auto r = n.client().request("bench.echo", "ping", 10s);
    if (r.code != 0) throw std::runtime_error("bulkhead: a sibling request failed: " + r.text);
    return std::chrono::duration<double, std::micro>(steady::now() - t).count();
  };
  for (int i = 0; i < 50; ++i) static_cast<void>(ask()); // warm
  // Enough work to keep the neighbour saturated through the window: its
  // handlers run one at a time on its thread, or one per instance on the
  // shared scheduler (CAF 0.17 runs max(cores, 4) workers).
  auto parallel = mode == neighbour::own_dispatcher ? 1u : crunch_instances;
  auto per_run = (static_cast<std::uint32_t>(window / crunch_work) + 4) * parallel;
  std::vector<std::vector<double>> out;
  std::uint64_t fed = 0;
  for (int r = 0; r < runs; ++r) {
    if (mode != neighbour::idle) {
      for (std::uint32_t i = 0; i < per_run; ++i) n.client().publish("bench.crunch", "x");
      fed += per_run;
      auto deadline = steady::now() + 5s; // until the neighbour runs (no fixed sleep)
      while (stats_of(n, "crunch").in_flight == 0) {
        if (steady::now() > deadline) throw std::runtime_error("bulkhead: the neighbour never started");
        std::this_thread::yield();
      }
    }
    std::vector<double> us;
    auto end = steady::now() + window;
    while (steady::now() < end || us.size() < 5) us.push_back(ask());
    // On its own dispatcher the neighbour must still be busy: the figure is
    // the sibling's beside a saturated neighbour. On the shared scheduler the
    // sibling may get through only once the neighbour's backlog is done
    // (its instances hold every worker, each with a run of messages).
    if (mode == neighbour::own_dispatcher && stats_of(n, "crunch").ok >= fed)
      throw std::runtime_error("bulkhead: the neighbour ran dry before the window ended");
    out.push_back(std::move(us));
    // The neighbour's backlog drains before the next run.
    auto deadline = steady::now() + 60s;
    while (stats_of(n, "crunch").ok < fed) {
      if (steady::now() > deadline) throw std::runtime_error("bulkhead: the neighbour's work never finished");
      std::this_thread::sleep_for(10ms); // polling a counter, not synchronising
    }
  }
  n.stop();
  return out;
}

void run_bulkhead(const run_config& cfg, recorder& rec) {
  const int runs = cfg.quick ? 3 : cfg.runs;
  const auto window = cfg.quick ? 300ms : 2000ms;
  struct mode_case {
    neighbour mode;
    const char* name;
  };
  constexpr std::array<mode_case, 3> cases{{{neighbour::idle, "sibling-unloaded"},
                                            {neighbour::own_dispatcher, "sibling-own-dispatcher"},
                                            {neighbour::shared_scheduler, "sibling-shared-scheduler"}}};
  double unloaded_p99 = 0;
  for (auto& c : cases) {
    latency_percentiles lat;
    for (auto& us : measure(c.mode, runs, window)) lat.add_run(std::move(us));
    lat.record(rec, c.name, "plexus");
    auto p99 = lat.p99;
    std::sort(p99.begin(), p99.end());
    if (c.mode == neighbour::idle) {
      unloaded_p99 = p99[p99.size() / 2];
      continue;
    }
    std::vector<double> ratio;
    for (double v : lat.p99) ratio.push_back(v / unloaded_p99);
    rec.add(c.name, "plexus", "p99_vs_unloaded", "x", ratio);
  }
}

const registration bulkhead_registration{
  {"bulkhead",
   "a sibling's request p50/p99 unloaded, and beside a CPU-bound neighbour (4 x 100 ms) on its own "
   "dispatcher vs on the shared scheduler",
   &run_bulkhead}};

} // namespace

} // namespace plexus::bench
