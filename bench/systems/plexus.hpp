// SPDX-License-Identifier: Apache-2.0
#pragma once

// plexus itself as a system under test: a broker server on a free loopback
// port (its own ZeroMQ context and thread, as a separate process would
// have), or two of them linked as a cluster, and plexus::client publishers
// and subscribers, each with its own I/O thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "plexus/node.hpp"
#include "scenarios/throughput.hpp"

namespace plexus::bench {

/// Runs `body` with a plexus broker, as the runs below start theirs, on a
/// free loopback port; `body` gets its endpoint. The broker stops after.
void with_plexus_broker(const std::function<void(const std::string& endpoint)>& body);

/// One publisher -> plexus broker -> one subscriber: one timed run. With
/// `curve`, the broker runs as with --auth (CURVE, ZAP, permissions).
[[nodiscard]] run_result plexus_pubsub_once(std::size_t size, std::size_t count,
                                            transport t = transport::tcp, bool curve = false);

/// One publisher -> plexus broker -> `subscribers` plain subscribers, each
/// a client of its own and getting every message: one timed run;
/// `received` counts across all of them.
[[nodiscard]] run_result plexus_fanout_once(std::size_t subscribers, std::size_t size,
                                            std::size_t count);

/// One publisher -> plexus broker -> `subscribers` members of one queue
/// group, receiving against credit (granted back per message). With
/// `acked`, members are at-least-once and ACK every message.
[[nodiscard]] run_result plexus_queue_once(std::size_t subscribers, std::size_t size,
                                           std::size_t count, bool acked,
                                           std::vector<std::size_t>* per_subscriber = nullptr);

/// One publisher on broker A -> broker B -> one subscriber on B: two
/// brokers linked as a cluster (B dials A), over tcp loopback.
[[nodiscard]] run_result plexus_cluster_pubsub_once(std::size_t size, std::size_t count);

/// As plexus_queue_once, with the publisher on broker A and the members on
/// broker B, linked as a cluster: A forwards against the group's capacity
/// on B, and B relays each outcome back to A.
[[nodiscard]] run_result plexus_cluster_queue_once(std::size_t subscribers, std::size_t size,
                                                   std::size_t count, bool acked,
                                                   std::vector<std::size_t>* per_subscriber = nullptr);

/// One publisher -> plexus broker -> a node's function (a pool of CAF
/// actors, acking every message, `instances` of them): one timed run.
/// With `span_listener`, a client subscribes to the node's spans
/// (`$SYS.trace.>`) for the run, as `plexus trace --all` would.
[[nodiscard]] run_result plexus_function_once(std::size_t size, std::size_t count,
                                              std::uint32_t instances,
                                              double trace_sample = node_options{}.trace_sample,
                                              bool span_listener = false);

/// One publisher -> plexus broker -> a node's function whose handler takes
/// `work` per message (a sleep: waiting on something slow), on a fixed
/// pool of `instances`; `blocking` ones get a thread each. One timed run,
/// from the first measured send to the last measured handler's end.
/// Throws unless every message published was handled once and ACKed, and
/// none failed.
[[nodiscard]] run_result plexus_worker_pool_once(std::size_t size, std::size_t count,
                                                 std::uint32_t instances,
                                                 std::chrono::microseconds work, bool blocking);

} // namespace plexus::bench
