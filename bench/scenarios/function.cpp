// SPDX-License-Identifier: Apache-2.0
// Scenario `function`: 1 publisher -> broker -> a function on a node (a
// pool of CAF actors, credit-driven, every message ACKed), 128 B, tcp on
// 127.0.0.1; beside the raw ZeroMQ proxy hop (PUB -> zmq_proxy -> SUB) in
// the same run. #4's target: plexus >= 60% of the zmq hop. `traced` is
// plexus recording every span (trace_sample 1) with nobody subscribed to
// them (the node then sends an empty probe each 250 ms and keeps the spans
// for queries): #7's cost of tracing. `traced-listened`: the same while a
// client subscribes to `$SYS.trace.>` (every span encoded and sent). Both
// fail if the node dropped a span (work skipped would flatter the figure).
// The systems' runs are taken in turn (see record_throughput_interleaved).
// `caf`: a thread sending to one CAF actor in the same process (no broker,
// no sockets): the actor runtime's own cost, the ceiling for a function.

#include <array>
#include <cstddef>
#include <string>

#include "baselines/caf.hpp"
#include "baselines/zmq.hpp"
#include "scenario.hpp"
#include "scenarios/throughput.hpp"
#include "systems/plexus.hpp"

namespace plexus::bench {

namespace {

constexpr std::size_t payload_bytes = 128;
constexpr std::size_t full_count = 500'000;
constexpr std::size_t quick_count = 20'000;
constexpr std::array<std::uint32_t, 2> instance_counts{1, 4};

void run_function(const run_config& cfg, recorder& rec) {
  const auto count = cfg.quick ? quick_count : full_count;
  for (auto n : instance_counts) {
    const auto name = std::to_string(payload_bytes) + "B-" + std::to_string(n) + "inst";
    // In turn, run by run: the traced/plexus ratio is #7's cost of tracing,
    // a few percent, less than the load on a shared machine drifts.
    record_throughput_interleaved(cfg, rec, name, payload_bytes, {
      {"plexus", [&] { return plexus_function_once(payload_bytes, count, n); }},
      {"traced", [&] { return plexus_function_once(payload_bytes, count, n, 1.0); }},
      {"traced-listened", [&] { return plexus_function_once(payload_bytes, count, n, 1.0, true); }},
      {"zmq", [&] { return zmq_proxy_pubsub_once(payload_bytes, count); }},
      {"caf", [&] { return caf_send_once(payload_bytes, count); }},
    });
  }
}

const registration function_registration{
  {"function", "1 publisher -> broker -> function actors (acked), 128 B, beside zmq_proxy and CAF in-process",
   &run_function}};

} // namespace

} // namespace plexus::bench
