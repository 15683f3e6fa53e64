// SPDX-License-Identifier: Apache-2.0
#pragma once

// What a result was measured on: printed first and stored with the JSON, so
// numbers are only ever compared with numbers from the same build and box.

#include <string>

namespace plexus::bench {

struct machine_info {
  std::string git_sha;    // short sha of the built tree, or "unknown"
  std::string compiler;   // "gcc 12.2.0"
  std::string build_type; // CMake build type, "none" if unset
  std::string cpu;        // /proc/cpuinfo "model name", or "unknown"
  unsigned cores = 0;     // std::thread::hardware_concurrency
  std::string date;       // UTC, ISO-8601: "2025-01-31T12:00:00Z"
  std::string load;       // 1, 5, 15 min load averages at start: "2.04 2.26 2.10"
};

[[nodiscard]] machine_info describe_machine();

} // namespace plexus::bench
