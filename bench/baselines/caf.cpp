// SPDX-License-Identifier: Apache-2.0
#include "baselines/caf.hpp"

#include <span>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

namespace plexus::bench {

run_result caf_send_once(std::size_t size, std::size_t count) {
  // Declaration order is teardown order, reversed: the actor system waits
  // for the receiver, which has been told to exit, before the sink goes.
  message_sink sink{1, warmup_count(count), count};
  caf::actor_system_config cfg;
  caf::actor_system system{cfg};
  auto receiver = system.spawn([&sink](caf::event_based_actor*) -> caf::behavior {
    return {
      [&sink](const std::string& payload) {
        sink.on_message(0, payload.empty() ? '\0' : payload[0]);
      },
    };
  });
  auto result = drive(
    sink, size, count,
    [&receiver](std::span<const char> m) {
      caf::anon_send(receiver, std::string{m.data(), m.size()});
    },
    [] {}); // nothing buffered: each send is in the actor's mailbox
  caf::anon_send_exit(receiver, caf::exit_reason::user_shutdown);
  return result;
}

} // namespace plexus::bench
