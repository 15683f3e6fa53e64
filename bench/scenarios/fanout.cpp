// SPDX-License-Identifier: Apache-2.0
// Scenario `fanout`: 1 publisher -> broker -> N subscribers (1, 4, 16),
// each on its own connection and getting every message, 128 B, tcp on
// 127.0.0.1. What a broker's fan-out path costs as N grows: the broker
// writes N copies of each message. Reported per subscriber: messages a
// subscriber received per second, from the first send to the last receive
// of the slowest; the total the broker delivered is N times that. Beside
// raw ZeroMQ (PUB -> zmq_proxy -> N SUBs) and nats-server (N connections),
// in the same run.

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

constexpr std::size_t payload_bytes = 128;
constexpr std::array<std::size_t, 3> subscriber_counts{1, 4, 16};
// Messages a run publishes: ~1M deliveries a run at 16 subscribers.
constexpr std::array<std::size_t, 3> full_counts{400'000, 200'000, 60'000};
constexpr std::size_t quick_count = 5'000;

struct fanout_system {
  std::string name;
  std::function<run_result(std::size_t subscribers, std::size_t size, std::size_t count)> run;
};

/// A fan-out run's totals as one subscriber's share: what it received, on
/// average, over the run's time.
run_result per_subscriber(run_result r, std::size_t subscribers) {
  r.received /= subscribers;
  return r;
}

void run_fanout(const run_config& cfg, recorder& rec) {
  const auto systems = with_nats<fanout_system>({
    {"plexus", &plexus_fanout_once},
    {"zmq", &zmq_proxy_fanout_once},
  }, {"nats", &nats_fanout_once}, rec);
  rec.note("msgs_per_s and mb_per_s are per subscriber; the broker delivers N times that");
  for (std::size_t i = 0; i < subscriber_counts.size(); ++i) {
    const auto n = subscriber_counts[i];
    const auto count = cfg.quick ? quick_count : full_counts[i];
    const auto name = std::to_string(payload_bytes) + "B-" + std::to_string(n) + "sub";
    for (const auto& sys : systems)
      record_throughput(cfg, rec, name, sys.name, payload_bytes,
                        [&] { return per_subscriber(sys.run(n, payload_bytes, count), n); });
  }
}

const registration fanout_registration{
  {"fanout", "1 publisher -> broker -> 1/4/16 subscribers each getting all, 128 B: plexus, zmq_proxy, nats-server",
   &run_fanout}};

} // namespace

} // namespace plexus::bench
