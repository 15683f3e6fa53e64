// SPDX-License-Identifier: Apache-2.0
// Scenario `cluster`: what one hop between brokers costs. The publisher is
// on broker A and the subscribers on broker B, two brokers linked as a
// cluster (each on its own ZeroMQ context and thread, tcp on 127.0.0.1),
// beside the same traffic through one broker, in the same run: fan-out to
// one subscriber (128 B and 1024 B), and a queue group of two acking
// members (128 B), which A feeds against the group's capacity on B and B
// answers with a relayed outcome per message. Messages per second from the
// first send to the last receive; each run starts its brokers afresh.

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "scenario.hpp"
#include "scenarios/throughput.hpp"
#include "systems/plexus.hpp"

namespace plexus::bench {

namespace {

// "plexus" is the subject (the report gives it a ratio to the baseline):
// here, the publisher and the subscribers on two linked brokers.
constexpr std::string_view cluster_system = "plexus";
constexpr std::string_view single_system = "single"; // the same on one broker

constexpr std::size_t queue_members = 2;

struct cluster_case {
  std::string name;
  std::size_t size;
  std::size_t count;       // messages per timed run
  std::size_t quick_count; // the same under --quick
  bool queue = false;      // a queue group of acking members, else one subscriber
};

std::vector<cluster_case> cases() {
  return {
    {"128B", 128, 1'000'000, 10'000},
    {"1024B", 1024, 200'000, 10'000},
    {"128B-queue-" + std::to_string(queue_members) + "sub-acked", 128, 500'000, 10'000, true},
  };
}

/// One timed run of a case on one side of the comparison.
run_result run_once(const cluster_case& c, std::size_t count, bool clustered) {
  if (c.queue)
    return clustered ? plexus_cluster_queue_once(queue_members, c.size, count, true)
                     : plexus_queue_once(queue_members, c.size, count, true);
  return clustered ? plexus_cluster_pubsub_once(c.size, count) : plexus_pubsub_once(c.size, count);
}

void run_cluster(const run_config& cfg, recorder& rec) {
  for (const auto& c : cases()) {
    const auto count = cfg.quick ? c.quick_count : c.count;
    for (bool clustered : {true, false})
      record_throughput(cfg, rec, c.name, clustered ? cluster_system : single_system, c.size,
                        [&] { return run_once(c, count, clustered); });
  }
}

const registration cluster_registration{
  {"cluster",
   "publisher on broker A -> subscribers on broker B (linked), beside one broker: "
   "fan-out 128 B, 1024 B; acked queue group 128 B",
   &run_cluster}};

} // namespace

} // namespace plexus::bench
