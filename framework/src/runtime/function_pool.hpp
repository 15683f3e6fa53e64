// SPDX-License-Identifier: Apache-2.0
#pragma once

// A function's pool: a CAF actor supervising the function's instances (one
// CAF actor each). It takes the connector's batches, hands each message to
// an idle instance, ACKs or NACKs by the outcome, grants the broker one
// credit per finished message (so the broker never pushes more than the
// instances can run), restarts crashed instances (one_for_one), quarantines
// poison messages and stops the function past its restart intensity.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/fwd.hpp>

#include "plexus/node.hpp"

namespace plexus::detail {

/// An owned copy of a delivered message (the connector's views die with
/// its callback).
struct delivery {
  std::uint32_t sid = 0;
  std::uint64_t seq = 0;
  std::uint32_t count = 1; // delivery count
  std::string topic, payload, msg_id, reply_to;
};
using delivery_ptr = std::shared_ptr<const delivery>;
using delivery_batch = std::shared_ptr<const std::vector<delivery_ptr>>;

/// A run of messages handed to one instance in one actor message. The
/// instance records each outcome and how far it got, so when it crashes
/// the pool knows which message did it and which never started.
struct work_run {
  std::vector<delivery_ptr> items;
  std::vector<std::pair<std::uint8_t, std::string>> outcomes; // per item, once run
  std::size_t finished = 0; // items with an outcome
};
using work_run_ptr = std::shared_ptr<work_run>;

/// Counters shared with the node (read from other threads).
struct pool_counters {
  std::atomic<std::uint64_t> ok{0}, errors{0}, crashes{0}, restarts{0}, rejected{0},
    quarantined{0};
  std::atomic<bool> stopped{false};
};

struct pool_spec {
  std::string service;
  const function_builder* fn = nullptr;
  service_options supervision;
  client* conn = nullptr;
  std::shared_ptr<pool_counters> counters;
};

/// Spawns the pool (which spawns its instances).
caf::actor spawn_pool(caf::actor_system& sys, pool_spec spec);

/// Hands a batch from the connector's thread to the pool.
void post_batch(const caf::actor& pool, std::span<const message_view> batch);

/// Asks the pool to finish what it holds and exit.
void post_stop(const caf::actor& pool);

} // namespace plexus::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(plexus::detail::delivery_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(plexus::detail::delivery_batch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(plexus::detail::work_run_ptr)
