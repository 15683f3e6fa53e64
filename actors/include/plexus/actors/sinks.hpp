// SPDX-License-Identifier: Apache-2.0
#pragma once

// Sinks: functions that take messages out of plexus, ACKing each only once
// it is safely out.
//
// The file sink appends each message matching a pattern to a file and
// fdatasyncs before the ACK: a message whose publisher heard confirm 0 is
// on disk (an outbox, an audit log).
//
//   plexus::actors::add_file_sink(ops, {.name = "outbox", .on = "mail.send",
//                                       .path = "/var/spool/shop/outbox.jsonl",
//                                       .format = plexus::actors::record_format::json_line});
//
// The webhook sink POSTs each message's payload to a URL: a 2xx ACKs it;
// 5xx, 429, 408, connection errors and timeouts retry it with backoff; any
// other answer dead-letters it at once; after max_deliver attempts it is
// dead-lettered with the last answer in `plexus-dlq-reason`.
//
//   plexus::actors::add_webhook_sink(ops, {.name = "crm", .on = "orders.shipped",
//                                          .url = "http://crm.local:8080/hooks/shipped"});
//
// Both are plain blocking functions (a thread per instance, supervised,
// listed by `plexus top`): at least once, so a record or a POST may repeat
// after a crash; receivers dedupe on the msg id (JSON line's `msg_id`, the
// `X-Plexus-Msg-Id` header).

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "plexus/node.hpp"

namespace plexus::actors {

/// How the file sink writes one message: one record each.
enum class record_format : std::uint8_t {
  /// The payload, then '\n'. A payload holding '\n' is dead-lettered (it
  /// would read as two records).
  line,
  /// The payload's size as 4 bytes, big-endian, then the payload.
  length_prefixed,
  /// `{"topic":"...","msg_id":"...","payload":"<base64>"}` then '\n'.
  json_line,
};

/// When the file sink calls fdatasync.
enum class sync_policy : std::uint8_t {
  /// After each record, before its ACK: an ACKed message is on disk.
  every_message,
  /// At most once per sync_interval (after a write): an ACKed message
  /// survives the process crashing, not the machine (the last interval's
  /// records may be in the page cache only). Faster on slow disks.
  interval,
};

struct file_sink_options {
  /// Names the sink's function, `file-sink-<name>`: 1-40 letters, digits,
  /// '_' or '-'.
  std::string name{};
  /// The topic pattern it takes (wildcards allowed, not reserved ones).
  std::string on{};
  /// The file, opened (created, 0644) at add time with O_APPEND; its
  /// directory must exist. Renamed or removed (log rotation), the next
  /// record goes to a new file at `path`.
  std::string path{};
  record_format format = record_format::line;
  sync_policy sync = sync_policy::every_message;
  std::chrono::milliseconds sync_interval{1000};
  /// Deliveries before a message that cannot be written (disk full, the
  /// directory gone) is dead-lettered, the error in its reason.
  std::uint32_t max_deliver = 5;
};

/// Adds the file sink to `svc` as the function file_sink_function_name(name),
/// one instance (records are appended in the order it takes messages), and
/// returns it. Checks every option first (and opens the file) and throws
/// one std::invalid_argument naming each bad one.
function_builder& add_file_sink(service& svc, file_sink_options o);

/// `file-sink-<name>`.
[[nodiscard]] std::string file_sink_function_name(std::string_view name);

struct webhook_options {
  /// Names the sink's function, `webhook-<name>`: 1-40 letters, digits,
  /// '_' or '-'.
  std::string name{};
  /// The topic pattern it takes (wildcards allowed, not reserved ones).
  std::string on{};
  /// `http://host[:port][/path]` or `https://...` (verified against the
  /// system's CAs).
  std::string url{};
  /// Connect, send and answer, each.
  std::chrono::milliseconds timeout{5000};
  /// Attempts (deliveries) before a message is dead-lettered, 1 to 100.
  std::uint32_t max_deliver = 5;
  /// The wait after the n-th failed attempt, in the broker (the NACK's
  /// delay): initial x 2^(n-1), at most `backoff_max`, drawn from [d/2, d].
  /// timeout + backoff_max must stay under 15 s.
  std::chrono::milliseconds backoff_initial{200};
  std::chrono::milliseconds backoff_max{5000};
  std::string content_type = "application/octet-stream";
  /// Added to every POST (e.g. Authorization).
  std::vector<std::pair<std::string, std::string>> headers{};
  /// POSTs in flight at once (instances of the function), 1 to 256.
  std::uint32_t concurrency = 4;
};

/// Adds the webhook sink to `svc` as the function
/// webhook_function_name(name) and returns it. Checks every option first
/// and throws one std::invalid_argument naming each bad one.
function_builder& add_webhook_sink(service& svc, webhook_options o);

/// `webhook-<name>`.
[[nodiscard]] std::string webhook_function_name(std::string_view name);

} // namespace plexus::actors
