// SPDX-License-Identifier: Apache-2.0
#pragma once

// The broker's metrics as Prometheus text (rendered on the event loop's
// thread from the core's counters, gauges and connections; served by the
// server's HTTP thread from the last rendering).

#include <cstdint>
#include <string>

#include "core.hpp"

namespace plexus::broker {

/// What the server shell counts itself (the core never sees a handshake).
struct shell_figures {
  std::uint64_t handshakes_in_progress = 0;
  std::uint64_t handshakes_refused = 0; // past max_handshakes: closed when accepted
  std::uint64_t handshakes_failed = 0;  // refused keys, protocol errors, timeouts, hang-ups
  // The durable queues' store (brokers/store), when there is one.
  bool store = false;
  std::uint64_t store_disk_bytes = 0, store_live_bytes = 0, store_live_messages = 0;
  std::uint64_t store_segments = 0;
  std::uint64_t store_fsyncs = 0;         // fdatasync and fsync calls, recovery's included
  std::uint64_t store_commits = 0;        // commits that wrote something
  std::uint64_t store_torn_tails_cut = 0; // at recovery
  std::uint64_t store_orphans = 0;        // recovered messages no durable took: left on disk
};

[[nodiscard]] std::string prometheus_metrics(const core& b, const shell_figures& s = {});

} // namespace plexus::broker
