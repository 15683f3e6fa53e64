// SPDX-License-Identifier: Apache-2.0
#pragma once

// `plexus queue` (the durable queues every broker reports in its stats)
// and `plexus dlq` (peek at, show and replay the dead letters a durable
// keeps, as one of its members). The decisions that need no socket (the
// stats' JSON, which headers a replay keeps, the filter, the rows) are
// the free functions first: the unit tests call them.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace CLI {
class App;
} // namespace CLI

namespace plexus {
class client;
} // namespace plexus

namespace plexus::cli {

// ------------------------------------------------------------ durables

/// One durable queue as one broker reported it ("durables" in
/// $SYS.broker.<id>.stats, brokers/core/stats.cpp).
struct durable_row {
  std::string broker, name;
  std::uint64_t messages = 0, bytes = 0, waiting = 0, members = 0, stored = 0, acked = 0,
                full = 0, aged_out = 0, restored = 0, max_msgs = 0, max_bytes = 0, max_age_ms = 0;
  std::vector<std::string> subjects;
  std::string declared; // "config" ([[durable]]) or "runtime" (plexus queue add, .durable())
};

/// The durables of one stats payload, one row each (none for a broker
/// without durables); nothing when `json` is not a broker's stats.
[[nodiscard]] std::optional<std::vector<durable_row>> durables_from_stats(std::string_view json);

/// "512 B", "1.5 KiB", "3.0 MiB".
[[nodiscard]] std::string human_bytes(std::uint64_t bytes);

/// `plexus queue ls`: a header and one line per row, sorted by broker and
/// name: broker, name, messages, bytes (human), waiting, members, stored,
/// acked, full.
[[nodiscard]] std::string queue_table(std::vector<durable_row> rows);

/// `plexus queue info`: every field of each row, one per line, a blank
/// line between rows.
[[nodiscard]] std::string queue_details(std::vector<durable_row> rows);

// ---------------------------------------------------------- dead letters

using header_list = std::vector<std::pair<std::string, std::string>>;

inline constexpr std::string_view dlq_header_prefix = "plexus-dlq-";
inline constexpr std::string_view replayed_from_header = "plexus-replayed-from";

/// The value of the first header named `key`, or empty.
[[nodiscard]] std::string_view find_header(const header_list& headers, std::string_view key) noexcept;

/// What a dead letter says of itself (the broker's plexus-dlq-* headers).
struct dead_letter {
  std::string id;         // its msg id; "#N" (N-th of this peek) when it has none
  std::string dlq_topic;  // the topic it came on: $DLQ.<topic>
  std::string topic;      // plexus-dlq-topic; else dlq_topic without "$DLQ." (or as it is)
  std::string reason;     // plexus-dlq-reason
  std::string deliveries; // plexus-dlq-deliveries: how often it was delivered before it died
  std::string time_ns;    // plexus-dlq-time: ns since the epoch, as sent
  std::size_t size = 0;   // payload bytes
};

/// `position`: 1 for the first message of a peek (the id of one without
/// a msg id).
[[nodiscard]] dead_letter describe_dead_letter(std::string_view dlq_topic, std::string_view msg_id,
                                               const header_list& headers, std::size_t payload_size,
                                               std::size_t position);

/// Nanoseconds since the epoch (decimal text) as UTC ISO 8601 with
/// milliseconds, "2024-05-01T12:00:00.250Z"; other text as it is, "-" for
/// none.
[[nodiscard]] std::string utc_time(std::string_view ns_text);

/// True for an empty filter, or one found in the reason or the original
/// topic.
[[nodiscard]] bool matches_filter(const dead_letter& d, std::string_view filter) noexcept;

/// The headers a replay publishes: the dead letter's without the broker's
/// plexus-dlq-* ones (and without an older plexus-replayed-from), then
/// plexus-replayed-from = the DLQ topic it came from.
[[nodiscard]] header_list replay_headers(const header_list& headers, std::string_view dlq_topic);

/// `plexus dlq ls`: a header and one line per dead letter: id, original
/// topic, deliveries, reason, time (UTC), payload size.
[[nodiscard]] std::string dead_letter_table(const std::vector<dead_letter>& rows);

/// A payload for `plexus dlq show`: text as it is; anything else as a hex
/// dump of its first 256 bytes (offset, hex, ASCII), saying how many
/// bytes it leaves out.
[[nodiscard]] std::string payload_dump(std::string_view payload);

/// `plexus dlq show`: the dead letter's fields, every header, the payload.
[[nodiscard]] std::string dead_letter_details(const dead_letter& d, const header_list& headers,
                                              std::string_view traceparent, std::string_view payload);

// ------------------------------------------------------------ commands

/// The subcommands' options, as add_queue_commands registers them.
struct queue_commands {
  CLI::App *queue = nullptr, *queue_ls = nullptr, *queue_info = nullptr, *queue_add = nullptr,
           *queue_rm = nullptr;
  std::vector<std::string> subjects; // queue add --subject
  std::uint64_t max_msgs = 0, max_bytes = 0; // queue add; 0: the broker's default
  std::string max_age;                       // queue add --max-age; empty: none
  CLI::App *dlq = nullptr, *dlq_ls = nullptr, *dlq_show = nullptr, *dlq_replay = nullptr;
  std::string wait = "2s"; // queue ls, queue info
  std::string name;        // queue info NAME, dlq * QUEUE
  std::string id;          // dlq show ID
  std::string filter;      // dlq replay --filter
  std::uint64_t ls_count = 100, show_count = 10'000, replay_count = 0;
  bool dry_run = false;
};

/// Adds `queue ls|info|add|rm` and `dlq ls|show|replay` to `app`, bound to `q`.
void add_queue_commands(CLI::App& app, queue_commands& q);

using connect_fn = std::function<plexus::client()>;
using duration_fn = std::function<std::chrono::milliseconds(const std::string&)>;

/// Runs the subcommand of `q` that was given, with a client from
/// `connect`: its exit code, or nothing when none of them was. A bad
/// duration or argument throws as `parse` does (CLI::ValidationError).
/// `stop` (Ctrl-C) ends a wait early; a replay then finishes what it sent.
[[nodiscard]] std::optional<int> run_queue_commands(const queue_commands& q, const connect_fn& connect,
                                                    const duration_fn& parse,
                                                    const std::atomic<bool>* stop = nullptr);

} // namespace plexus::cli
