// SPDX-License-Identifier: Apache-2.0
#pragma once

// Helper processes a benchmark starts (a broker under comparison) and the
// scratch directory they write into. Both clean up after themselves,
// including when the benchmark throws; the child also dies with us.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace plexus::bench {

/// A fresh directory under the system's temp dir, removed with its contents
/// on destruction.
class scratch_dir {
public:
  /// Throws std::system_error if it cannot be created.
  explicit scratch_dir(std::string_view prefix);
  ~scratch_dir();
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

private:
  std::filesystem::path path_;
};

/// A running child process. Destruction stops it (terminate()).
class child_process {
public:
  /// Starts the program `argv[0]` (a path, not searched in PATH) with these
  /// arguments; stdin is /dev/null, stdout and stderr append to `output`,
  /// no other descriptor is inherited. The child is sent SIGKILL if the
  /// starting thread dies (PR_SET_PDEATHSIG), so not even a killed
  /// benchmark leaves it behind. Throws std::system_error if it cannot start
  /// (including when exec fails).
  child_process(const std::vector<std::string>& argv, const std::filesystem::path& output);
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  /// Whether it still runs; reaps it if it has exited.
  [[nodiscard]] bool running() noexcept;
  /// Up to `timeout` for it to exit on its own; true (reaped) if it did.
  [[nodiscard]] bool wait_for_exit(std::chrono::milliseconds timeout) noexcept;
  /// True once reaped with exit status 0.
  [[nodiscard]] bool succeeded() const noexcept;
  /// SIGTERM, up to `grace` for it to exit, then SIGKILL; always reaps.
  /// Does nothing once it has been reaped.
  void terminate(std::chrono::milliseconds grace = std::chrono::seconds{5}) noexcept;
  /// "running", "exited with status 1", "killed by signal 9".
  [[nodiscard]] std::string describe() const;

private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0; // from waitpid, once reaped
};

/// This program's own executable, to start it again as a child.
/// Throws std::system_error if /proc/self/exe cannot be read.
[[nodiscard]] std::filesystem::path self_executable();

/// The last `max_bytes` of a text file, "" if it cannot be read; for error
/// messages that quote a child's log.
[[nodiscard]] std::string tail_of(const std::filesystem::path& file, std::size_t max_bytes = 2000);

} // namespace plexus::bench
