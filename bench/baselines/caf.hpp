// SPDX-License-Identifier: Apache-2.0
#pragma once

// The CAF in-process baseline: a thread sends messages to one CAF actor in
// the same process, no broker, no sockets. What a plexus function pays on
// top of the actor runtime it runs in.

#include <cstddef>

#include "scenarios/throughput.hpp"

namespace plexus::bench {

/// A sender thread -> anon_send -> one event-based actor, `size`-byte
/// std::string payloads, a fresh actor_system per run: one timed run.
[[nodiscard]] run_result caf_send_once(std::size_t size, std::size_t count);

} // namespace plexus::bench
