// SPDX-License-Identifier: Apache-2.0
// Scenario `scaling`: queue-group throughput of a function whose handler
// waits 1 ms per message (a sleep: the simulated work is waiting on
// something slow), on fixed pools of 1 to 64 instances (--quick: 1, 4, 16);
// msgs/s per case and its ratio to the 1-instance case of the same system
// (vs_1inst; linear is vs_1inst = instances). The Scaling issue's target:
// about linear up to the maximum. 1 publisher -> broker -> one node, 16 B
// messages, every one ACKed, each case with as many messages per instance.
//
// Two systems, in the same run: plexus, instances sharing CAF's scheduler
// threads (a handler that blocks holds one of them), and blocking, the
// function declared .blocking(): a thread per instance.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "report.hpp"
#include "scenario.hpp"
#include "scenarios/throughput.hpp"
#include "systems/plexus.hpp"

namespace plexus::bench {

namespace {

using namespace std::chrono_literals;

constexpr std::size_t payload_bytes = 16;
constexpr std::chrono::microseconds work = 1ms;
constexpr std::array<std::uint32_t, 7> full_pools{1, 2, 4, 8, 16, 32, 64};
constexpr std::array<std::uint32_t, 3> quick_pools{1, 4, 16};
static_assert(full_pools[0] == 1 && quick_pools[0] == 1, "vs_1inst needs the 1-instance case first");
constexpr std::size_t full_per_instance = 500;  // messages per run, per instance
constexpr std::size_t quick_per_instance = 100;

struct system_under_test {
  std::string_view name;
  bool blocking = false;
};
constexpr std::array<system_under_test, 2> systems{{{"plexus", false}, {"blocking", true}}};

std::string percent(double fraction) { return format_number(fraction * 100) + "%"; }

void run_scaling(const run_config& cfg, recorder& rec) {
  const std::span<const std::uint32_t> pools =
    cfg.quick ? std::span<const std::uint32_t>{quick_pools} : std::span<const std::uint32_t>{full_pools};
  const auto per_instance = cfg.quick ? quick_per_instance : full_per_instance;
  rec.note(std::to_string(cfg.runs) + " runs a case, " + std::to_string(per_instance) +
           " messages an instance, each taking " + std::to_string(work.count()) + " us");
  std::array<double, systems.size()> one_instance{}; // median msgs/s of the 1-instance case
  for (auto instances : pools) {
    const auto case_name = std::to_string(instances) + "inst";
    const auto count = per_instance * instances;
    for (std::size_t i = 0; i < systems.size(); ++i) {
      const auto& sys = systems[i];
      std::vector<double> msgs;
      for (int run = 0; run < cfg.runs; ++run) {
        try {
          msgs.push_back(plexus_worker_pool_once(payload_bytes, count, instances, work, sys.blocking)
                           .msgs_per_s());
        } catch (const std::exception& e) {
          throw std::runtime_error(case_name + " " + std::string{sys.name} + ", run " +
                                   std::to_string(run + 1) + ": " + e.what());
        }
      }
      const auto median = summarize(msgs).median;
      if (instances == 1) one_instance[i] = median;
      std::vector<double> ratio;
      for (auto m : msgs) ratio.push_back(m / one_instance[i]);
      rec.add(case_name, sys.name, "msgs_per_s", "msg/s", msgs);
      rec.add(case_name, sys.name, "vs_1inst", "x", ratio);
      rec.note(case_name + " " + std::string{sys.name} + ": " +
               format_number(median / one_instance[i]) + "x the 1-instance case, " +
               percent(median / one_instance[i] / instances) + " of linear; " +
               percent(median * static_cast<double>(work.count()) / 1e6 / instances) +
               " of the " + std::to_string(instances) + " instances' time in the work itself");
    }
  }
}

const registration scaling_registration{
  {"scaling", "a queue group's msgs/s with a 1 ms handler, 1..64 fixed instances, and vs 1 instance",
   &run_scaling}};

} // namespace

} // namespace plexus::bench
