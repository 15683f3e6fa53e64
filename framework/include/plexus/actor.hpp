// SPDX-License-Identifier: Apache-2.0
#pragma once

// The escape hatch: a function whose instances are raw CAF actors, for
// what a handler cannot do (state kept between messages, timers, actors of
// your own). Each instance runs your behavior; the pool sends it one
// (plexus::handle_atom, plexus::envelope) per message and ACKs or NACKs by
// the result<void> it answers (return it, or answer later through a
// response promise). The instance is supervised like any other: if your
// actor fails, the message it was on counts as a crash and a fresh actor
// (fresh state) replaces it; if it quits normally it is replaced only when
// the function is permanent.
//
//   plexus::actor_function(svc.function("count").on("clicks"),
//     [](caf::event_based_actor* self, plexus::client& conn) -> caf::behavior {
//       auto seen = std::make_shared<std::uint64_t>(0);
//       return {[=](plexus::handle_atom, const plexus::envelope& e) -> plexus::result<void> {
//         conn.publish("clicks.total", std::to_string(++*seen));
//         return {};
//       }};
//     });
//
// This header includes CAF; the rest of plexus's public headers do not.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>

#include "plexus/node.hpp"

namespace plexus {

using handle_atom = caf::atom_constant<caf::atom("handle")>;

/// One delivered message, as a raw actor instance gets it.
struct envelope {
  std::string topic, payload, msg_id, reply_to, traceparent;
  std::uint32_t delivery = 1; // 1 on first delivery
  std::uint64_t deadline_ns = 0;
};

using actor_factory = std::function<caf::behavior(caf::event_based_actor* self, client& conn)>;

namespace detail {
struct actor_hook {
  actor_factory make;
};
} // namespace detail

/// Makes `f`'s instances raw CAF actors running `make`'s behavior.
inline function_builder& actor_function(function_builder& f, actor_factory make) {
  f.set_actor(std::make_shared<const detail::actor_hook>(detail::actor_hook{std::move(make)}));
  return f;
}

} // namespace plexus

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(plexus::envelope)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(plexus::result<void>)
