// SPDX-License-Identifier: Apache-2.0
#pragma once

// A function's pool: a CAF actor over the function's instances (one CAF
// actor each). It takes the connector's batches, hands runs of messages to
// idle instances, ACKs or NACKs by the outcome, grants the broker one
// credit per finished message (so the broker never pushes more than the
// instances can run), quarantines poison messages, and restarts crashed
// instances as its service's supervisor core decides (supervision.hpp);
// the service actor tells it to replace every instance, stop, start again.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/fwd.hpp>

#include "plexus/node.hpp"
#include "plexus/trace.hpp"
#include "pool_types.hpp"
#include "supervision.hpp"

namespace plexus::detail {
class span_sink;
class dispatcher;
}

namespace plexus::detail {

/// An instance's side of the message in hand, reached through its context:
/// the continuation of a pending request.
struct invocation {
  continuation then;       // set by context::request
  std::uint64_t token = 0; // the request the next reply must answer
  caf::actor_addr instance;
  const std::string* name = nullptr; // "service.function", for log lines (the pool's)
  bool cold = false; // the item in hand is a cold start
  // Its function's options (the retry policy) and the item's jitter draw:
  // context::next_retry_delay() and the span say what the pool will do.
  const function_options* opts = nullptr;
  double jitter = 0;
  std::uint64_t cold_ns = 0; // its arrival -> handler start
  // Reliable functions: the pool that settles, the tracker of the item in
  // hand (made at its first publish) and the function's place in its
  // service (part of derived msg ids).
  bool reliable = false;
  caf::actor pool;
  tracker_ptr tracker;
  // The item's span: its ids (the context's trace_id() and span_id()),
  // when its handler started, and what its last failed request said (the
  // cause when the handler then fails). The request in flight has a span
  // of its own, ended by the reply.
  span_sink* spans = nullptr;
  const std::string* span_name = nullptr; // `name`, interned by the sink
  observe::latency_histogram* latency = nullptr; // the function's
  // Ids as integers; 0 is none yet: the trace and span ids are made on
  // first use (context.cpp), the parent is the incoming traceparent's.
  std::uint64_t trace_hi = 0, trace_lo = 0, span = 0, parent = 0;
  std::string trace_hex, span_hex; // what context::trace_id()/span_id() returned
  std::uint64_t start_ns = 0;
  bool sampled = false; // its ok spans are kept; carried on in the traceparent
  span_status request_failure = span_status::ok;
  std::string request_cause, request_callee;
  std::string request_topic;
  std::uint64_t request_span = 0;
  std::uint64_t request_start_ns = 0;
  // A publish of the item in hand found its topic's queue group paused
  // (flow control): the invocation ends `overloaded`, whatever it returns.
  std::string paused_topic;
  bool overloaded = false;
};
using reply_ptr = std::shared_ptr<const reply>;

/// Hands a request's reply from the I/O thread to the instance waiting on it.
void post_reply(const caf::actor_addr& instance, std::uint64_t token, reply r);

/// Tells a pool that the last publish of a deferred reliable invocation is
/// confirmed (from the I/O thread).
void post_published(const caf::actor& pool, tracker_ptr t);

struct pool_spec {
  span_sink* spans = nullptr; // the node's; null: no spans
  std::string service;
  std::size_t index = 0; // among its service's functions
  const function_builder* fn = nullptr;
  client* conn = nullptr;
  std::shared_ptr<pool_counters> counters;
  std::shared_ptr<shared_supervisor> sup; // its service's decisions
  caf::actor service_actor;                // its service, for what spans pools
  std::function<void()> on_exit; // runs when the pool has ended (node stop)
  // At a stop, how long a finished reliable invocation may still wait for
  // its publishes' confirms before its message goes back unacked.
  std::chrono::milliseconds confirm_grace{1000};
  // The dispatcher the function's handlers run on (the node's, by name);
  // null: the shared scheduler.
  dispatcher* disp = nullptr;
};

/// Spawns the pool, which spawns its instances.
caf::actor spawn_pool(caf::actor_system& sys, pool_spec spec);
/// Subscribes the pool's queue group (SUB is queued before this returns:
/// what is published afterwards on the same connection reaches it).
std::uint32_t subscribe_pool(const pool_spec& spec, const caf::actor& pool);

} // namespace plexus::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(plexus::detail::delivery_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(plexus::detail::delivery_batch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(plexus::detail::work_run_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(plexus::detail::reply_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(plexus::detail::tracker_ptr)
