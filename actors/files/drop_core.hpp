// SPDX-License-Identifier: Apache-2.0
#pragma once

// The file drop's core, sans-IO: which files of the watched directory to
// read and publish next (at most max_in_flight at once, the others wait in
// the order they came; a scan's oldest first), what a confirm code means
// for a file (done/, failed/ with a reason, or a retry with backoff), and
// the names and ids that must be the same on every run. No file is opened,
// no clock read here: the actor (files.cpp) does the I/O and passes `now`.
//
// A file's life: queued -> reading -> ready -> publishing -> ready again
// (a retry at retry_at) | moving -> forgotten. A move that fails waits
// (move_wait) and is tried again. Every step carries a token; an answer
// whose token is not the file's current one (a stale confirm) is ignored.

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace plexus::actors::detail {

using drop_clock = std::chrono::steady_clock;

/// A file of the watched directory, as a scan lists it.
struct listed_file {
  std::string name{};
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
};

enum class destination : std::uint8_t { done, failed };

enum class file_phase : std::uint8_t { queued, reading, ready, publishing, moving, move_wait };

/// What the actor runs next for one file.
struct drop_step {
  enum kind_t : std::uint8_t { read, publish, move } kind = read;
  std::string name{};
  std::uint64_t token = 0;
  std::string msg_id{};                  // publish
  destination to = destination::done;    // move
  std::string reason{};                  // move to failed/: the .reason file's text
};

/// What a confirm made of a file, for the log.
struct verdict {
  enum kind_t : std::uint8_t { ignored, done, failed, retry } kind = ignored;
  std::chrono::milliseconds delay{0}; // retry
  std::uint32_t attempt = 0;          // the attempt confirmed
};

enum class read_outcome : std::uint8_t { ok, gone, failed };
enum class move_outcome : std::uint8_t { moved, gone, changed, failed };

struct drop_limits {
  std::size_t max_in_flight = 64;
  std::chrono::milliseconds backoff_min{1000}, backoff_max{30000};
};

class drop_core {
public:
  /// `drop`: the drop's name (the msg ids' prefix); `topic`: where events go.
  drop_core(std::string drop, std::string topic, drop_limits l = {})
    : drop_(std::move(drop)), topic_(std::move(topic)), limits_(l) {}

  /// A name inotify reported: queued last, unless already known (one in
  /// flight is looked at again once it is settled).
  void seen(const std::string& name);
  /// A scan: the files not known yet are queued, oldest mtime first.
  void listed(std::vector<listed_file> files);

  /// The steps to run now: reads while fewer than max_in_flight files are
  /// past `queued`, publishes and moves whose time has come.
  [[nodiscard]] std::vector<drop_step> next(drop_clock::time_point now);

  /// A read's result: ok keeps the payload and the id base (the publish
  /// comes with the next next()); gone forgets the file; failed sends it
  /// to failed/ with `why`.
  void read(const std::string& name, std::uint64_t token, read_outcome r, std::string payload = {},
            std::string id_base = {}, std::uint64_t size = 0, std::int64_t mtime_ns = 0,
            const std::string& why = {});
  /// A confirm: 0 -> done/; 102 dead-lettered -> failed/; 101 (nobody
  /// subscribes) and retryable codes -> retried after a backoff doubling
  /// from backoff_min to backoff_max, with the next attempt's msg id;
  /// other codes -> failed/.
  verdict confirmed(const std::string& name, std::uint64_t token, std::uint32_t code,
                    drop_clock::time_point now);
  /// A move's result: moved and gone forget the file; changed (its size or
  /// mtime differ from what was published) queues it again as a new file;
  /// failed tries the move again after a backoff.
  void moved(const std::string& name, std::uint64_t token, move_outcome m, drop_clock::time_point now);
  /// Files waiting for a retry (publish or move) go at the next next().
  void retry_now(drop_clock::time_point now);

  /// The earliest retry, if one waits.
  [[nodiscard]] std::optional<drop_clock::time_point> next_wake() const;
  /// Files past `queued` (reading, publishing, waiting for a retry, moving).
  [[nodiscard]] std::size_t in_flight() const noexcept { return in_flight_; }
  [[nodiscard]] std::size_t known() const noexcept { return files_.size(); }
  [[nodiscard]] std::optional<file_phase> phase(const std::string& name) const;
  /// The payload read for `name` (empty when none).
  [[nodiscard]] const std::string& payload(const std::string& name) const;
  /// Size and mtime as read (what a move checks against).
  [[nodiscard]] std::optional<listed_file> identity(const std::string& name) const;

private:
  struct entry {
    file_phase phase = file_phase::queued;
    std::uint64_t token = 0;
    std::uint32_t attempt = 0;    // publishes made
    std::uint32_t move_tries = 0; // failed moves
    drop_clock::time_point retry_at{};
    std::string payload, id_base;
    std::uint64_t size = 0;
    std::int64_t mtime_ns = 0;
    destination to = destination::done;
    std::string reason;
    bool again = false; // seen again while in flight: maybe a new version
  };
  void forget(const std::string& name);
  /// Forgets `name`, and queues it again when it was seen meanwhile.
  void finish(const std::string& name);
  void send_to(entry& e, destination d, std::string reason);
  std::chrono::milliseconds backoff(std::uint32_t tries) const;

  std::string drop_, topic_;
  drop_limits limits_;
  std::map<std::string, entry> files_;
  std::deque<std::string> queue_; // names in phase queued, in order
  std::size_t in_flight_ = 0;
  std::uint64_t next_token_ = 1;
};

/// Whether the drop takes a file of this name: not empty, no leading `.`,
/// not `*.tmp`, and matching `pattern` (fnmatch; empty: every name).
[[nodiscard]] bool wanted(std::string_view name, const std::string& pattern);

/// 32 hex digits naming one version of a file: the first 128 bits of
/// sha256("<name>\n<size>\n<mtime ns>"). The same on every run while the
/// file is unchanged.
[[nodiscard]] std::string id_base(std::string_view name, std::uint64_t size, std::int64_t mtime_ns);

/// `<drop>:<base>` for the first attempt, `<drop>:<base>#<n>` for the
/// n-th (the broker answers a repeated id with its first outcome, so a
/// retry after 101 needs an id of its own).
[[nodiscard]] std::string drop_msg_id(std::string_view drop, std::string_view base, std::uint32_t attempt);

/// Lower-case hex of `bytes`.
[[nodiscard]] std::string to_hex(std::string_view bytes);

/// The name a file takes in done/ or failed/ on its n-th clash (n >= 1):
/// `a.csv` -> `a.1.csv`, `a` -> `a.1`, `.x` is never asked for.
[[nodiscard]] std::string clash_name(const std::string& name, unsigned n);

/// The .reason file's text for a failed publish: code, name and text.
[[nodiscard]] std::string reason_of(std::uint32_t code, std::string_view topic, std::string_view msg_id);

} // namespace plexus::actors::detail
