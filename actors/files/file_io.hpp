// SPDX-License-Identifier: Apache-2.0
#pragma once

// The file drop's blocking side, no CAF: the directory's preparation and
// listing, reading a file into its event, moving it to done/ or failed/,
// and the inotify watcher (a thread of its own, woken through an eventfd
// to stop). files.cpp runs the first four on a detached actor, so no CAF
// scheduler thread ever waits on the disk.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "drop_core.hpp"

namespace plexus::actors::detail {

/// The watched directory and its two outcomes, absolute.
struct drop_paths {
  std::string dir, done, failed;
};

/// Creates dir, done/ and failed/ when missing; the error when it cannot.
[[nodiscard]] std::optional<std::string> prepare_dirs(const drop_paths& p);

struct scan_result {
  std::vector<listed_file> files; // regular files the drop wants
  std::string error;              // the listing failed: why
};
[[nodiscard]] scan_result scan_dir(const drop_paths& p, const std::string& pattern);

struct read_result {
  read_outcome outcome = read_outcome::ok;
  std::string payload; // msgpack of file_event
  std::string base;    // id_base() of this version
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::string why; // failed
};
/// Reads `name` into its event: content inlined when its size is at most
/// `max_content` and the event fits `max_payload` (0: no limit). Gone (or
/// no regular file): read_outcome::gone.
[[nodiscard]] read_result read_event(const drop_paths& p, const std::string& name, std::uint64_t max_content,
                                     std::uint64_t max_payload);

struct move_result {
  move_outcome outcome = move_outcome::moved;
  std::string where; // moved: the new path
  std::string why;   // failed
};
/// Renames `name` into done/ or failed/ (`a.1.csv`, `a.2.csv`, ... when
/// the name is taken there), unless its size or mtime are no longer
/// those published (changed); into failed/ it writes `<new name>.reason`
/// holding `reason` beside it.
[[nodiscard]] move_result move_file(const drop_paths& p, const std::string& name, destination to,
                                    const std::string& reason, std::uint64_t size, std::int64_t mtime_ns);

/// inotify on one directory (IN_CLOSE_WRITE, IN_MOVED_TO; not recursive),
/// read on a thread of its own. Callbacks run on that thread.
class dir_watcher {
public:
  struct callbacks {
    std::function<void(std::string name)> seen; // a wanted name was written or moved in
    std::function<void()> overflow;             // events were lost: scan again
    std::function<void(std::string why)> lost;  // the directory went (the thread ends)
  };
  /// Sets the watch and starts the thread; null and `why` when it cannot.
  static std::unique_ptr<dir_watcher> start(const std::string& dir, std::string pattern, callbacks cb,
                                            std::string& why);
  /// Wakes the thread, joins it, closes the descriptors.
  ~dir_watcher();
  dir_watcher(const dir_watcher&) = delete;
  dir_watcher& operator=(const dir_watcher&) = delete;

private:
  dir_watcher(int ino, int wake) : ino_(ino), wake_(wake) {}
  void run(std::string pattern, callbacks cb);

  int ino_ = -1, wake_ = -1;
  std::thread thread_;
};

} // namespace plexus::actors::detail
