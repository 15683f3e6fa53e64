// SPDX-License-Identifier: Apache-2.0
// Scenario `pubsub`: 1 publisher -> broker -> 1 subscriber over tcp on
// 127.0.0.1, payloads of 16, 128 and 1024 B; messages per second from the
// first send to the last receive. Each system is one run function; each
// run starts its broker afresh and tears it down.

#include <array>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "baselines/nats.hpp"
#include "baselines/zmq.hpp"
#include "scenario.hpp"
#include "scenarios/throughput.hpp"
#include "systems/plexus.hpp"

namespace plexus::bench {

namespace {

/// A system under test: one timed run of `count` messages of `size` bytes.
struct pubsub_system {
  std::string name;
  std::function<run_result(std::size_t size, std::size_t count)> run_once;
};

/// Every system, measured in the same run, case by case.
std::vector<pubsub_system> systems() {
  return {
    {"plexus", &plexus_pubsub_once},
    {"zmq", &zmq_proxy_pubsub_once},
    {"nats", &nats_pubsub_once},
  };
}

struct pubsub_case {
  std::size_t size;
  std::size_t count;       // messages per timed run
  std::size_t quick_count; // the same under --quick
};

constexpr std::array<pubsub_case, 3> cases{{
  {16, 1'000'000, 20'000},
  {128, 1'000'000, 20'000},
  {1024, 200'000, 20'000},
}};

void run_pubsub(const run_config& cfg, recorder& rec) {
  const auto all = systems();
  for (const auto& c : cases) {
    const auto count = cfg.quick ? c.quick_count : c.count;
    const auto name = std::to_string(c.size) + "B";
    for (const auto& sys : all)
      record_throughput(cfg, rec, name, sys.name, c.size,
                        [&] { return sys.run_once(c.size, count); });
  }
}

const registration pubsub_registration{
  {"pubsub", "1 publisher -> broker -> 1 subscriber, tcp loopback: plexus, zmq_proxy, nats-server",
   &run_pubsub}};

} // namespace

} // namespace plexus::bench
