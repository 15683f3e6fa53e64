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

  bool on_io_thread() const { return std::this_thread::get_id() == io.get_id(); }

  bool enqueue(envelope e, bool wait, bool control = false);

  wire::header pub_header(std::string_view topic, const publish_options& o);
  /// A plain PUB's envelope; repeated topics are validated and encoded once.
  envelope make_pub(std::string_view topic, std::string_view payload, const publish_options& o);

  std::string next_msg_id();

  // ------------------------------------------------------------ I/O thread

  void connect_socket();

  bool send_frames(std::string_view header, std::string_view payload, bool with_payload);

  void send_control(const wire::header& h);

  void say_hello();

  // After WELCOME: subscriptions again, then unconfirmed publishes again.
  void restore_session();

  envelope sub_envelope(std::uint32_t sid, const subscription_record& r);

  // Moves envelopes from the outbox to `pending`, registering callbacks.
  void drain_outbox();

  // Writes pending envelopes: one plain message when there is one, batches
  // when several are waiting. Stops when ZeroMQ would block.
  void send_pending();

  void receive_all();

  static message_view view_of(const wire::entry& e);

  void dispatch();

  void deliver(std::uint32_t sid, std::span<const message_view> batch_views);

  void complete_request(std::string_view inbox, reply r);

  void control(const wire::header& h);

  void reconnect();

  void timers();

  void run();

  client_options opts;
  detail::outbox box;
  std::unique_ptr<zmq::context_t> owned_ctx;
  zmq::context_t& ctx;
  std::unique_ptr<zmq::socket_t> sock;
  std::thread io;
  std::atomic<bool> stopping{false};

  std::vector<std::string> endpoints;
  std::size_t current = 0;
  std::string inbox_prefix, id_prefix, broker;
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
  steady::time_point last_heard{}, last_sent{}, next_attempt{};
  std::chrono::milliseconds backoff{100};
  std::deque<envelope> pending;
  std::vector<envelope> taken;
  std::map<std::string, envelope> unconfirmed;
  std::unordered_map<std::uint64_t, std::pair<steady::time_point, reply_handler>> requests;
  std::vector<zmq::message_t> parts;
  std::vector<std::string_view> frames;
  std::vector<wire::entry> entries;
  std::vector<message_view> views;
  std::string batch;
  std::atomic<std::uint64_t> published{0}, received{0}, errors{0}, reconnects{0}, resent{0};
};

} // namespace plexus
