// SPDX-License-Identifier: Apache-2.0
#pragma once

// The PostgreSQL listener's blocking side, no CAF: one libpq connection on
// a thread of its own that connects (without blocking on the socket),
// LISTENs, and waits in poll() on libpq's socket and an eventfd; it hands
// out each notification, and on a lost or failed connection waits as
// backoff says and tries again. Callbacks run on that thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace plexus::actors::detail {

/// Whether libpq can parse `conninfo` (a key=value string or a URI); the
/// parser's message when it cannot.
[[nodiscard]] std::string conninfo_problem(const std::string& conninfo);

class pg_listener {
public:
  struct callbacks {
    /// LISTENing on every channel; `again` after an earlier connection.
    std::function<void(bool again)> connected;
    /// A connection that was up (`was_up`) went down, or an attempt failed:
    /// why, and the wait before the next attempt.
    std::function<void(bool was_up, const std::string& why, std::chrono::milliseconds retry_in)> down;
    /// One notification, as it was read (ns since the Unix epoch).
    std::function<void(std::string channel, std::string payload, std::int32_t pid, std::int64_t received_at)>
      notified;
  };
  /// Starts the thread; `connected_before`: count the first connection as
  /// `again` (the actor was restarted). Null and `why` when it cannot.
  static std::unique_ptr<pg_listener> start(std::string conninfo, std::vector<std::string> channels,
                                            bool connected_before, callbacks cb, std::string& why);
  /// Ends a reconnect wait now (no-op while connected).
  void reconnect_now();
  /// Wakes the thread, joins it, closes the connection and the eventfd.
  ~pg_listener();
  pg_listener(const pg_listener&) = delete;
  pg_listener& operator=(const pg_listener&) = delete;

private:
  explicit pg_listener(int wake) : wake_(wake) {}
  void run(std::string conninfo, std::string listen_sql, bool again, callbacks cb);
  enum class waited { ready, woken, timeout, stop, failed };
  waited wait(int fd, short events, int timeout_ms);

  int wake_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

} // namespace plexus::actors::detail
