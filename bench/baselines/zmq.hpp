// SPDX-License-Identifier: Apache-2.0
#pragma once

// The raw ZeroMQ baseline: PUB -> zmq_proxy (XSUB/XPUB on its own thread)
// -> SUB over tcp on loopback, no framing of ours: the floor a broker built
// on ZeroMQ pays nothing over.

#include <cstddef>

#include "scenarios/throughput.hpp"

namespace plexus::bench {

/// One publisher -> zmq_proxy -> one subscriber: one timed run.
[[nodiscard]] run_result zmq_proxy_pubsub_once(std::size_t size, std::size_t count,
                                               transport t = transport::tcp);

/// One publisher -> one subscriber, PUB bound, SUB connected, no proxy:
/// the floor of any hop at all.
[[nodiscard]] run_result zmq_direct_pubsub_once(std::size_t size, std::size_t count,
                                                transport t = transport::tcp);

/// One publisher -> zmq_proxy -> `subscribers` subscribers, each getting
/// every message: one timed run; `received` counts across all of them.
[[nodiscard]] run_result zmq_proxy_fanout_once(std::size_t subscribers, std::size_t size,
                                               std::size_t count);

} // namespace plexus::bench
