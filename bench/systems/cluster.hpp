// SPDX-License-Identifier: Apache-2.0
#pragma once

// plexus-broker processes as a system under test, for what only a separate
// process can show (kill -9): one broker on a free loopback port, started
// from the binary CMake built beside the bench, and a full mesh of them.
// Each stops its processes when it goes, including when a scenario throws;
// a broker also dies with the thread that started it (child_process).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "baselines/child_process.hpp"

namespace plexus::bench {

/// One plexus-broker process on tcp://127.0.0.1 with a port of its own.
class broker_process {
public:
  /// Starts `plexus-broker --id ID --listen tcp://127.0.0.1:*`, dialing each
  /// of `peers`, stats every 100 ms; its output goes to a file in `dir`.
  /// Returns once it printed the endpoint it bound. Throws
  /// std::runtime_error (with the end of its log) if it exits first or
  /// prints nothing within `within`.
  broker_process(const std::filesystem::path& dir, std::string id,
                 const std::vector<std::string>& peers,
                 std::chrono::milliseconds within = std::chrono::seconds{10});

  [[nodiscard]] const std::string& id() const noexcept { return id_; }
  [[nodiscard]] const std::string& endpoint() const noexcept { return endpoint_; }
  /// kill -9, then reaps it. Throws if it does not go within 5 s.
  void kill();
  /// The last lines it wrote, for error messages.
  [[nodiscard]] std::string log_tail() const;

private:
  std::string id_;
  std::filesystem::path log_;
  std::unique_ptr<child_process> process_;
  std::string endpoint_;
};

/// Brokers b1..bN in a full mesh: b1 alone, each next one dialing every
/// broker before it (a link carries traffic both ways). Ready once every
/// broker's $SYS.broker.<id>.stats says it has N - 1 peers.
class broker_mesh {
public:
  /// Throws std::runtime_error if a broker does not start, or the mesh is
  /// not linked within `within`.
  explicit broker_mesh(std::size_t brokers,
                       std::chrono::milliseconds within = std::chrono::seconds{10});

  [[nodiscard]] broker_process& operator[](std::size_t i) { return *brokers_.at(i); }
  [[nodiscard]] std::size_t size() const noexcept { return brokers_.size(); }

private:
  void await_linked(std::chrono::milliseconds within);

  scratch_dir dir_; // first: removed after the brokers are gone
  std::vector<std::unique_ptr<broker_process>> brokers_;
};

/// `"name":<digits>` in a broker's stats JSON, the first occurrence.
[[nodiscard]] std::optional<std::uint64_t> json_number(std::string_view json, std::string_view name);

} // namespace plexus::bench
