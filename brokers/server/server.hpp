// SPDX-License-Identifier: Apache-2.0
#pragma once

// The broker's I/O shell: one ZeroMQ ROUTER socket and a single-threaded
// event loop around the sans-IO core (which holds every delivery rule).
// It runs as `plexus-broker` or inside another process on any endpoint,
// inproc included (the node's embedded broker).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <vector>
#include <memory>
#include <string>
#include <thread>

#include "core.hpp"
#include "zap.hpp"

namespace zmq {
class context_t;
}

namespace plexus::broker {

/// When the broker makes its store's writes durable (--store-sync): a
/// publish a durable queue keeps is confirmed (0) only after that.
enum class store_sync {
  always,   // an fdatasync after every message appended
  batch,    // once per pass of the event loop with writes pending (group commit)
  interval, // at most every store_sync_interval: fewer syncs, later confirms
};

struct server_options {
  config core{};
  /// The durable queues' store (brokers/store): a directory only this
  /// broker uses (a second one is refused). Empty: no store, and then no
  /// core.durables either.
  std::string store;
  store_sync store_sync_policy = store_sync::batch;
  std::chrono::milliseconds store_sync_interval{0}; // store_sync::interval
  std::uint64_t store_segment_bytes = 64ull << 20;  // a segment file rolls past this
  /// Where to listen. `tcp://127.0.0.1:*` picks a free port (see endpoint()).
  std::string listen = "tcp://127.0.0.1:7400";
  /// ZeroMQ queue limits per peer, in frames. Past them ROUTER would drop
  /// silently; plexus sets ZMQ_ROUTER_MANDATORY and keeps the excess in the
  /// core's bounded per-connection queue instead.
  int sndhwm = 10000;
  /// Inbound frames queued per peer before ZeroMQ pushes back on the
  /// sender. Clients send frames of at most 32 KiB, so a fast publisher
  /// costs at most rcvhwm x 32 KiB (32 MiB by default) before it is slowed.
  int rcvhwm = 1000;
  /// Outputs per batch frame, at most.
  std::size_t batch_max = 256;
  /// No info lines on start and stop (an embedded broker is not news).
  bool quiet = false;
  /// Seed brokers to link with (a full mesh: every broker dials every seed;
  /// its own endpoint is recognised and skipped). A link that drops is
  /// dialed again after `peer_retry_min`, doubling to `peer_retry_max`.
  std::vector<std::string> peers;
  std::chrono::milliseconds peer_retry_min{100};
  std::chrono::milliseconds peer_retry_max{2000};
  /// Prometheus text on http://127.0.0.1:<port>/metrics, refreshed every
  /// stats_interval: 0 = none, -1 = a free port (metrics_port() says which).
  int metrics_port = 0;

  /// CurveZMQ (issue #18). With a secret key (Z85) the listener is a CURVE
  /// server and a ZAP handler on the context admits exactly the keys of
  /// `admitted`, each connection as its user (core::identify); plaintext
  /// and unknown keys never get in. Empty: plaintext, everyone admitted.
  std::string curve_secret_key;
  zap_policy admitted;
  /// Our links to peers as CURVE clients: our key pair and the peers'
  /// (the cluster's) public key, all Z85. Empty with a curve_secret_key:
  /// the broker's own key pair. With a curve_secret_key the broker always
  /// admits its own public key as a peer: brokers sharing a key pair (as
  /// the cluster's clients, which fail over with one broker key, need)
  /// link without listing each other.
  std::string link_public_key, link_secret_key, link_server_key;
  /// A connection has this long to finish its ZeroMQ (and CURVE) handshake
  /// before it is dropped (ZMQ_HANDSHAKE_IVL; libzmq's default is 30 s): a
  /// crowd of connections that never complete one cannot pile up.
  std::chrono::milliseconds handshake_timeout{5000};
  /// Connections still in their handshake at once (0: no cap). One past it
  /// is closed as soon as it is accepted, so a crowd of idle or slow
  /// dialers costs at most this many handshakes' memory and CPU.
  std::size_t max_handshakes = 1024;
  /// Open although reachable from other machines without authentication
  /// (--insecure): said in the log every `insecure_warning_every`.
  bool insecure = false;
  std::chrono::seconds insecure_warning_every{60};

  /// Bytes one batch frame may carry: max_pending_bytes / sndhwm (at least
  /// 4 KiB), so what ZeroMQ holds for a peer that stopped reading is
  /// bounded like the core's own queue. Per slow connection the broker
  /// then holds at most about 2 x max_pending_bytes plus kernel socket
  /// buffers; a message larger than this cap still goes alone, so with
  /// large payloads lower sndhwm.
  [[nodiscard]] std::size_t frame_bytes() const noexcept {
    auto per_frame = core.max_pending_bytes / static_cast<std::size_t>(sndhwm > 0 ? sndhwm : 1);
    return std::max<std::size_t>(per_frame, 4096);
  }
};

/// The durable queues of `c` this broker keeps (their home is empty or
/// this broker's id): with any, the broker needs a store.
[[nodiscard]] inline std::size_t kept_here(const config& c) {
  return static_cast<std::size_t>(std::count_if(c.durables.begin(), c.durables.end(),
                                                [&](const durable_config& d) {
                                                  return d.home.empty() || d.home == c.id;
                                                }));
}

/// Process-wide malloc tuning for a broker process: glibc returns freed heap
/// to the kernel whenever 128 KiB sit free at the top, and a broker frees
/// every burst's messages at once, so each burst paid brk/munmap and page
/// faults again. Keeping up to 64 MiB of free heap (and growing it 64 MiB
/// at a time) costs at most that much RSS during a busy spell (the server
/// gives it back after a second without input); measured on the
/// pubsub bench, 128 B: 0.70 -> 0.97 M msg/s, 1024 B: 0.36 -> 0.57 M.
/// plexus-broker calls it; a process embedding the broker may.
void tune_allocator();

class server {
public:
  /// Binds at once; throws std::runtime_error with the endpoint and the
  /// reason when it cannot. `ctx` is shared for inproc endpoints.
  explicit server(server_options opts, zmq::context_t* ctx = nullptr);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// The endpoint actually bound (with the port picked for `:*`).
  [[nodiscard]] const std::string& endpoint() const noexcept;
  /// The metrics port bound; 0 without one.
  [[nodiscard]] int metrics_port() const noexcept;

  /// Serves until `stop` becomes true (checked at least every 50 ms), then
  /// says BYE to every client and returns.
  void run(const std::atomic<bool>& stop);

  /// run() on a thread of its own, for embedding; stop() ends it.
  void start();
  void stop();


private:
  struct impl;
  std::unique_ptr<impl> impl_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

} // namespace plexus::broker
