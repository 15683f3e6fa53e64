// SPDX-License-Identifier: Apache-2.0
#pragma once

// The file-drop trigger: watches a directory (inotify, not recursive) and
// publishes each file written and closed there, or moved in, as an event
// (msgpack of plexus::actors::file_event: name, path, size, sha256, and the
// content itself up to max_content) to a topic, confirmed. When a consumer
// ACKs it the file moves to `<dir>/done/`; when it is dead-lettered (or the
// broker refuses it for good) to `<dir>/failed/`, with `<file>.reason`
// beside it saying why. Files already in the directory at start are
// picked up, oldest first.
//
//   plexus::node node{argc, argv};
//   auto& ops = node.service("ops");
//   plexus::actors::add_file_drop(ops, {.name = "orders", .dir = "/srv/drop/orders",
//                                       .topic = "orders.csv", .pattern = "*.csv"});
//   ops.function("import").on("orders.csv").handle(
//     [](const plexus::actors::file_event& f, plexus::context& ctx) -> plexus::result<void> { ... });
//
// Writers should write elsewhere (or under a `.name` or `name.tmp`, which
// are ignored) and rename into the directory: a file is taken when it is
// first closed after writing.
//
// Confirms: 0 -> done/; 102 (dead-lettered) and codes no retry can help ->
// failed/; 101 (nobody subscribes) and retryable codes leave the file
// where it is and publish it again after 1 s, doubling up to 30 s (at once
// on a message to the rescan topic); a file is never lost. At most 64 files
// are in flight at once; the others wait in the order they came.
//
// Restarts: each file version is published with the msg id
// `<name>:<32 hex of sha256(file name, size, mtime)>` (`#<n>` appended for
// the n-th attempt) as a shared id, so a file left in the directory by a
// stopped node is published again with the same id and the broker answers
// with the first outcome instead of delivering it again, within its dedup
// window (2 min by default). Past the window it is delivered again: at
// least once, never lost. done/ and failed/ are never read.
//
// The drop is a function, `files-<name>`, of one permanent instance (a raw
// CAF actor): supervised, restarted when it crashes (it then scans the
// directory again), listed by `plexus top`. A message on
// file_drop_rescan_topic(name), `_plexus.files.<name>`, scans the directory
// now and retries waiting files at once; it is ACKed once the scan is done.

#include <cstdint>
#include <string>
#include <string_view>

#include <msgpack.hpp>

#include "plexus/node.hpp"

namespace plexus::actors {

struct file_drop_options {
  /// Names the drop: in the function (`files-<name>`), the rescan topic
  /// and each msg id. Letters, digits, `_` and `-`; at most 20 bytes (a msg
  /// id, `<name>:<32 hex>#<attempt>`, must fit the wire's 64 bytes).
  std::string name{};
  /// The watched directory, created if missing; done/ and failed/ are
  /// created inside it. It must be on one file system with them (moves are
  /// renames).
  std::string dir{};
  /// Where events go: a concrete topic outside `$SYS.`, `$DLQ.`, `_INBOX.`.
  std::string topic{};
  /// Content up to this many bytes is inlined in the event; a bigger file
  /// (or one whose event would pass the broker's max_payload) has the path
  /// only, valid until the consumer ACKs (then the file is in done/). At
  /// most 1 MiB (a typed handler decodes strings up to that).
  std::uint64_t max_content = 64 * 1024;
  /// A glob on the file name (fnmatch, e.g. "*.csv"); empty: every name.
  /// Names starting with `.` and ending in `.tmp` are ignored regardless.
  std::string pattern{};
  /// Files published and not yet settled (moved) at once, 1 to 65536.
  std::uint32_t max_in_flight = 64;
};

/// What the drop publishes for each file.
struct file_event {
  std::string name{}; // the file's name in the directory
  std::string path{}; // its absolute path there (until the ACK)
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0; // its modification time, ns since the Unix epoch
  std::string sha256{};      // of the content, 64 lower-case hex digits
  bool has_content = false;  // size <= max_content: `content` is the file
  std::string content{};
  MSGPACK_DEFINE_MAP(name, path, size, mtime_ns, sha256, has_content, content)
};

/// Adds the drop to `svc` as the function file_drop_function_name(name)
/// and returns it (to tune it further). Checks every option first (and
/// creates dir, done/ and failed/) and throws one std::invalid_argument
/// naming each bad one: `file drop "in": dir "...": Permission denied;
/// topic "": ...`.
function_builder& add_file_drop(service& svc, file_drop_options o);

/// `files-<name>`: the drop's function (in stats, `plexus top`, metrics).
[[nodiscard]] std::string file_drop_function_name(std::string_view name);

/// `_plexus.files.<name>`: a message here rescans the directory now.
[[nodiscard]] std::string file_drop_rescan_topic(std::string_view name);

} // namespace plexus::actors
