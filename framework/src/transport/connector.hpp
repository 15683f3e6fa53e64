// SPDX-License-Identifier: Apache-2.0
#pragma once

// The client connector's insides, shared by client.cpp (the API callers
// use) and connector.cpp (the I/O thread).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>

#include "outbox.hpp"
#include "plexus/client.hpp"

namespace plexus {

namespace detail {

inline constexpr std::uint32_t inbox_sid = 0xffffffffu; // never handed to users
/// Largest batch frame a client sends: small enough that a broker's receive
/// queue (rcvhwm frames) stays bounded in bytes, large enough to amortise a
/// frame over hundreds of small envelopes.
inline constexpr std::size_t batch_frame_bytes = 32 * 1024;

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

/// The connector's state: the caller-side queue and subscription table,
/// and what only the I/O thread touches (the socket, pending envelopes,
/// unconfirmed publishes, open requests).
struct client::impl {
  using steady = std::chrono::steady_clock;
  using envelope = detail::envelope;
  using subscription_record = detail::subscription_record;

  explicit impl(client_options o);

  // ------------------------------------------------------------ caller side

  envelope make(const wire::header& h, std::string_view payload = {});
  /// Queues a control envelope (SUB, ACK, CREDIT, ...): never refused.
  void enqueue_control(const wire::header& h) { enqueue(make(h), false, true); }
  /// An ACK or NACK for a delivery of `session_tag`: the I/O thread sends
  /// it only while that session lasts.
  void enqueue_settlement(const wire::header& h, std::uint16_t session_tag) {
    auto e = make(h);
    e.session = session_tag;
    enqueue(std::move(e), false, true);
  }

  bool on_io_thread() const { return std::this_thread::get_id() == io.get_id(); }

  bool enqueue(envelope e, bool wait, bool control = false);

  wire::header pub_header(std::string_view topic, const publish_options& o);
  /// A plain PUB's envelope; repeated topics are validated and encoded once.
  envelope make_pub(std::string_view topic, std::string_view payload, const publish_options& o);

  std::string next_msg_id();

  // ------------------------------------------------------------ I/O thread

  void connect_socket();

  // Asks ZeroMQ to report the socket's disconnects on an inproc PAIR that
  // run() polls beside it: a broker process that dies closes its TCP
  // connections, and that is news at once, not after the heartbeat.
  void watch_socket();

  // Reads the monitor's events: a disconnect ends the session.
  void read_monitor();

  void close_socket();

  // A new broker connection: its seqs start again at 1, so deliveries get
  // a new session number and settlements of earlier ones go nowhere.
  void begin_session();

  bool send_frames(std::string_view header, std::string_view payload, bool with_payload);

  bool send_control(const wire::header& h);

  void say_hello();

  // After WELCOME: subscriptions again, then unconfirmed publishes again.
  void restore_session();

  envelope sub_envelope(std::uint32_t sid, const subscription_record& r);

  // Moves envelopes from the outbox to `pending`, registering callbacks;
  // ACKs and NACKs of an ended session are dropped and counted.
  void drain_outbox();

  // Keeps a confirmed publish until its CONFIRM. A second publish with the
  // same msg id gets the one CONFIRM the broker sends for both.
  void remember_unconfirmed(envelope& e);

  // Runs an unconfirmed publish's handler with `code` and frees its slot.
  void settle(std::map<std::string, envelope, std::less<>>::iterator it, std::uint32_t code);

  // Writes pending envelopes: one plain message when there is one, batches
  // when several are waiting. Stops when ZeroMQ would block.
  void send_pending();

  void receive_all();

  message_view view_of(const wire::entry& e) const;

  void dispatch();

  void deliver(std::uint32_t sid, std::span<const message_view> batch_views);

  void complete_request(std::string_view inbox, reply r);

  void control(const wire::header& h);

  // Tells the application (on_error), or stderr when it set no handler
  // and the news is a loss (see client::on_error).
  void report(std::uint32_t code, std::string_view text);

  // Between handler calls: the heartbeat goes out even while a backlog is
  // being handled, so the broker hears from us however long that takes.
  void keep_alive_between_handlers(steady::time_point now);
  // After a handler call (or one message of a per-message handler): a
  // call that kept this thread past the broker's heartbeat is a stall,
  // reported; then the heartbeat.
  void handler_returned(std::uint32_t sid);

  void reconnect();

  void keep_alive(steady::time_point now);

  [[nodiscard]] bool broker_silent(steady::time_point now) const;

  void expire_requests(steady::time_point now);

  void timers();

  void run();

  client_options opts;
  detail::outbox box;
  detail::confirm_window window;
  std::unique_ptr<zmq::context_t> owned_ctx;
  zmq::context_t& ctx;
  std::unique_ptr<zmq::socket_t> sock, monitor;
  std::thread io;
  std::atomic<bool> stopping{false};

  std::vector<std::string> endpoints;
  std::size_t current = 0;
  std::string inbox_prefix, id_prefix, broker;
  std::uint64_t lineage = 0; // HELLO's seq: the scope of our msg ids
  std::atomic<std::uint64_t> msg_counter{0}, request_counter{1};
  std::atomic<std::uint32_t> next_sid{1};

  std::mutex subs_mutex;
  std::unordered_map<std::uint32_t, std::shared_ptr<subscription_record>> subs;
  std::mutex state_mutex;
  std::condition_variable state_cv;
  bool connected_once = false;
  error_handler error_cb;

  // I/O thread only
  bool welcomed = false, hello_sent = false, want_reconnect = false;
  steady::time_point last_heard{}, last_sent{}, last_ping{}, first_unanswered_ping{}, next_attempt{};
  std::chrono::milliseconds backoff{100};
  std::uint16_t session = 0;
  std::uint64_t monitors = 0;
  std::string connected_to, last_welcomed;
  std::deque<envelope> pending;
  std::vector<envelope> taken;
  std::vector<std::string> sent_buffers; // of sent envelopes: back to the outbox
  std::map<std::string, envelope, std::less<>> unconfirmed;
  std::unordered_map<std::uint64_t, std::pair<steady::time_point, reply_handler>> requests;
  std::vector<zmq::message_t> parts;
  std::vector<std::string_view> frames;
  std::vector<wire::entry> entries;
  std::vector<message_view> views;
  std::string batch;
  std::atomic<std::uint64_t> published{0}, received{0}, errors{0}, reconnects{0}, failovers{0},
    resent{0}, stale_acks{0}, outbox_full{0}, broker_dropped{0}, sessions_lost{0}, stalls{0};
  // The broker's heartbeat (WELCOME): a handler call longer than this is
  // a stall. When each kind of report last went to stderr.
  std::chrono::milliseconds broker_heartbeat{1000};
  std::map<std::uint32_t, steady::time_point> last_stderr;
  // Since when the I/O thread has been away in handlers: the frame's
  // arrival, then each handler's return.
  steady::time_point turn_started{};
};

} // namespace plexus
