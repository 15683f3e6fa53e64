// SPDX-License-Identifier: Apache-2.0
#pragma once

// A function's instances: the CAF actors that run its handler (or a user's
// raw actor) on one run of messages at a time, recording each outcome in
// the run for the pool (function_pool.cpp) to settle with the broker.

#include <cstdint>
#include <string>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include "function_pool.hpp"

namespace plexus::detail {

// pool -> instance: (run, work_run_ptr)
using run_atom = caf::atom_constant<caf::atom("run")>;
// instance -> pool: the run ended (all done, or work_run::crash says where)
using done_atom = caf::atom_constant<caf::atom("done")>;

class dispatcher;

/// Spawns one instance of `fn` for `pool`: lazily (an instance that never
/// gets work never allocates its behavior, ~190 B of the ~1.8 KiB one
/// cost), or on a thread of its own when the function is blocking. With
/// `disp`, its handlers run on that dispatcher's threads (dispatcher.hpp).
caf::actor spawn_instance_of(caf::event_based_actor* pool, const function_builder& fn,
                             client* conn, const std::string* name, span_sink* spans,
                             const std::string* span_name, observe::latency_histogram* latency,
                             dispatcher* disp = nullptr);

/// The item in hand starts: its span's ids (from the incoming traceparent,
/// or a new trace) and start time (context.cpp, which shares the ids).
void begin_span(invocation& inv, const delivery& d);
/// Makes the item's trace and span ids if nothing asked for them yet.
void ensure_ids(invocation& inv);
/// A publish of the item in hand found `topic` paused (flow control).
void note_overloaded(invocation& inv, std::string_view topic);

} // namespace plexus::detail
