// SPDX-License-Identifier: Apache-2.0
#pragma once

// Durable queues declared at run time (brokers/PROTOCOL.md "Durable
// queues"): asked of the broker a client is connected to, which keeps the
// queue from then on (its home) and its declaration in its store, so both
// survive a restart. `plexus queue add/rm` and function_builder::durable()
// use these; a broker's [[durable]] tables declare queues in its
// configuration instead.
//
//   plexus::declare_queue(client, {.name = "shipping", .subjects = {"orders.>"}});

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace plexus {

class client;

struct queue_spec {
  std::string name{};                // members SUB with this queue group
  std::vector<std::string> subjects{}; // patterns whose messages it keeps
  /// Limits; 0 leaves the broker's default (1,000,000 messages, 256 MiB of
  /// payloads, no age limit).
  std::uint64_t max_msgs = 0, max_bytes = 0;
  std::chrono::milliseconds max_age{0};
};

/// The broker refused (its text says why: no store, a bad name, the queue
/// exists with other subjects, it has members, ...) or did not answer.
class queue_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Declares `q`: "created" (its declaration is on disk), or "exists" (the
/// same name with the same subjects; its limits are left as they are).
std::string declare_queue(client& c, const queue_spec& q,
                          std::chrono::milliseconds timeout = std::chrono::seconds{10});

/// Removes a queue declared at run time, with every message it keeps: it
/// must have no members. Returns the broker's answer ("removed, N
/// message(s) dropped").
std::string remove_queue(client& c, std::string_view name,
                         std::chrono::milliseconds timeout = std::chrono::seconds{10});

} // namespace plexus
