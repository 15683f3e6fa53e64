// SPDX-License-Identifier: Apache-2.0
#pragma once

// The nats-server baseline: a real nats-server started per run on a free
// loopback port, driven with libnats (the NATS C client).

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "baselines/child_process.hpp"
#include "scenarios/throughput.hpp"

namespace plexus::bench {

/// Why the nats-server baseline cannot run here, empty when it can: the
/// bench was built without libnats-dev, or there is no nats-server binary.
/// Scenarios then leave the nats rows out and say why in a note (`make
/// bench` installs both; `make test` does not need them).
[[nodiscard]] std::string nats_missing();

/// `systems` with `nats` appended when the baseline can run here; else
/// `systems` as they are and a note in `rec` saying why not.
template <class System>
[[nodiscard]] std::vector<System> with_nats(std::vector<System> systems, System nats, recorder& rec) {
  if (auto why = nats_missing(); !why.empty())
    rec.note("no nats-server rows: " + why);
  else
    systems.push_back(std::move(nats));
  return systems;
}

/// A nats-server child process listening on 127.0.0.1 on a port it picked
/// itself (-p -1, read back from its ports file: no window in which another
/// process can take the port). Its log goes to a scratch file, quoted when
/// it fails to start. Destruction stops it (SIGTERM, then SIGKILL).
class nats_server {
public:
  /// Starts it and waits until a client can connect, up to `ready_within`.
  /// Throws with an actionable message (no binary, exited, not ready).
  /// With `tls`, it serves TLS only, with a self-signed certificate made
  /// by openssl for the run (clients skip verifying it).
  explicit nats_server(bool tls = false,
                       std::chrono::milliseconds ready_within = std::chrono::seconds{10});

  /// JetStream enabled (-js), its file store in `store_dir` (-sd): a
  /// directory of the caller's (the scratch directory is under /tmp, which
  /// may be a tmpfs, where no write reaches a disk).
  struct jetstream {
    std::filesystem::path store_dir;
  };
  explicit nats_server(const jetstream& js,
                       std::chrono::milliseconds ready_within = std::chrono::seconds{10});

  /// "nats://127.0.0.1:<port>" ("tls://..." with TLS).
  [[nodiscard]] const std::string& url() const noexcept { return url_; }

private:
  /// Until a client connects, up to `ready_within`; throws if it exits or
  /// is not ready by then.
  void wait_ready(bool tls, std::chrono::milliseconds ready_within);

  scratch_dir dir_;
  child_process process_;
  std::string url_;
};

/// One publisher -> nats-server -> one subscriber: one timed run.
/// With `tls`, over TLS (a self-signed certificate; see nats_server).
[[nodiscard]] run_result nats_pubsub_once(std::size_t size, std::size_t count, bool tls = false);

/// One publisher -> nats-server -> `subscribers` plain subscribers, each on
/// its own connection and getting every message: one timed run; `received`
/// counts across all of them.
[[nodiscard]] run_result nats_fanout_once(std::size_t subscribers, std::size_t size,
                                          std::size_t count);

/// One publisher -> nats-server -> `subscribers` subscribers of one queue
/// group, each on its own connection: one timed run, counting every member.
/// `per_subscriber`, if given, receives each member's share of the run.
[[nodiscard]] run_result nats_queue_once(std::size_t subscribers, std::size_t size,
                                         std::size_t count,
                                         std::vector<std::size_t>* per_subscriber = nullptr);

} // namespace plexus::bench
