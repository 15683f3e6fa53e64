// SPDX-License-Identifier: Apache-2.0
#pragma once

// The client connector's insides, shared by client.cpp (the API callers
// use) and connector.cpp (the I/O thread).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>

#include "connector_core.hpp"
#include "outbox.hpp"
#include "plexus/client.hpp"

namespace plexus {

namespace detail {

inline constexpr std::uint32_t inbox_sid = 0xffffffffu; // never handed to users
/// Largest batch frame a client sends: small enough that a broker's receive
/// queue (rcvhwm frames) stays bounded in bytes, large enough to amortise a
/// frame over hundreds of small envelopes.
inline constexpr std::size_t batch_frame_bytes = 32 * 1024;
inline constexpr std::size_t batch_frame_envelopes = 256;

/// Delivery tags handed to users: the session in the high 16 bits, the
/// broker's per-connection seq in the low 48 (a broker would need 2^48
/// deliveries on one connection to reach the session's bits).
inline constexpr int session_shift = 48;
inline constexpr std::uint64_t broker_seq_mask = (std::uint64_t{1} << session_shift) - 1;

[[nodiscard]] constexpr std::uint64_t delivery_tag(std::uint16_t session, std::uint64_t broker_seq) {
  if (broker_seq == 0) return 0; // not an acked delivery
  return std::uint64_t{session} << session_shift | (broker_seq & broker_seq_mask);
}
[[nodiscard]] constexpr std::uint16_t session_of(std::uint64_t tag) {
  return static_cast<std::uint16_t>(tag >> session_shift);
}

struct subscription_record {
  std::string pattern;
  subscribe_options opts;
  client::batch_handler on_batch; // null for the reply inbox
};

/// `bytes` random bytes as hex.
std::string random_hex(std::size_t bytes);

} // namespace detail

/// The connector: the caller-side queue and subscription table, and the
/// I/O thread, the shell around the session logic (connector_core.hpp)
/// that alone touches the socket and runs handlers.
struct client::impl {
  using steady = std::chrono::steady_clock;
  using envelope = detail::envelope;
  using subscription_record = detail::subscription_record;

  explicit impl(client_options o);

  // ------------------------------------------------------------ caller side

  /// Queues a control envelope (SUB, ACK, CREDIT, ...): never refused.
  void enqueue_control(const wire::header& h) { enqueue(detail::make_envelope(h), false, true); }
  /// An ACK or NACK for a delivery of `session_tag`: the I/O thread sends
  /// it only while that session lasts.
  void enqueue_settlement(const wire::header& h, std::uint16_t session_tag) {
    auto e = detail::make_envelope(h);
    e.session = session_tag;
    enqueue(std::move(e), false, true);
  }

  bool on_io_thread() const { return std::this_thread::get_id() == io.get_id(); }

  bool enqueue(envelope e, bool wait, bool control = false);

  wire::header pub_header(std::string_view topic, const publish_options& o);
  /// A plain PUB's envelope; repeated topics are validated and encoded once.
  envelope make_pub(std::string_view topic, std::string_view payload, const publish_options& o);

  std::string next_msg_id();

  envelope sub_envelope(std::uint32_t sid, const subscription_record& r);

  // ------------------------------------------------------------ I/O thread

  void run();

  // Carries out the core's commands: the socket, handlers of confirms and
  // requests, reports, the start of a session.
  void carry_out();

  void open_socket(const std::string& endpoint);

  // Asks ZeroMQ to report the socket's disconnects on an inproc PAIR that
  // run() polls beside it: a broker process that dies closes its TCP
  // connections, and that is news at once, not after the heartbeat.
  void watch_socket();

  // Reads the monitor's events: a disconnect ends the session.
  void read_monitor();

  void close_socket();

  // Outbox to core, then the core's frames to the socket until ZeroMQ
  // would block.
  void drain_outbox();
  void write_frames();

  void receive_all();

  message_view view_of(const wire::entry& e) const;

  void dispatch();

  void deliver(std::uint32_t sid, std::span<const message_view> batch_views);

  // After a handler call (or one message of a per-message handler).
  void handler_returned(std::uint32_t sid);

  // Tells the application (on_error), or stderr when it set no handler
  // and the news is a loss (see client::on_error).
  void report(std::uint32_t code, std::string_view text);

  client_options opts;
  std::string id_prefix, inbox_prefix;
  detail::outbox box;
  detail::confirm_window window;
  detail::flow_gate gate; // patterns the broker paused (flow control)
  std::unique_ptr<zmq::context_t> owned_ctx;
  zmq::context_t& ctx;
  std::unique_ptr<zmq::socket_t> sock, monitor;
  std::thread io;
  std::atomic<bool> stopping{false};

  std::atomic<std::uint64_t> msg_counter{0}, request_counter{1};
  std::atomic<std::uint32_t> next_sid{1};
  std::atomic<std::uint64_t> published{0}, received{0}, outbox_full{0};
  /// publish() while its topic was paused: calls that waited, dropped,
  /// failed (client_options::when_paused); try_publish refusals.
  std::atomic<std::uint64_t> paused_waits{0}, paused_drops{0}, paused_failures{0},
    paused_refusals{0}, paused_holds{0};
  /// PUBs the core holds back while their group is paused, as of the I/O
  /// thread's last turn: `hold` stops at twice outbox_limit of them.
  std::atomic<std::size_t> held{0};
  /// publish()'s check while the broker pauses some queue group: throws,
  /// drops or waits as when_paused says; false when the message is dropped.
  /// `self`: the client publishing (a thread's override may name it).
  [[nodiscard]] bool pass_gate(std::string_view topic, const client* self);
  /// The broker's max_payload (last WELCOME; 0 = not said).
  std::atomic<std::uint64_t> max_payload{0};

  /// The publish_error for a payload the broker would drop, or nothing.
  [[nodiscard]] std::optional<publish_error> oversized(std::size_t payload_bytes) const;

  std::mutex subs_mutex;
  std::unordered_map<std::uint32_t, std::shared_ptr<subscription_record>> subs;
  std::mutex state_mutex;
  std::condition_variable state_cv;
  bool connected_once = false;
  std::string broker;
  /// Why the last CURVE handshake failed (for connect_error); empty: none did.
  std::string handshake_failure;
  error_handler error_cb;

  // I/O thread only
  detail::connector_core core;
  std::uint64_t monitors = 0;
  std::vector<envelope> taken;
  std::vector<zmq::message_t> parts;
  std::vector<std::string_view> frames;
  std::vector<wire::entry> entries;
  std::vector<message_view> views;
  // When each kind of report last went to stderr.
  std::map<std::uint32_t, steady::time_point> last_stderr;
};

} // namespace plexus
