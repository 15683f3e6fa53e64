// SPDX-License-Identifier: Apache-2.0
#pragma once

// The client connector: one I/O thread owns the node's ZeroMQ DEALER socket
// (sockets are never shared between threads). Any thread may publish: the
// envelope is encoded on the caller's thread and handed over through a
// bounded queue with a doorbell; the I/O thread drains it in batches.
// Handlers run on the I/O thread and must not block; the actor runtime
// turns each batch into one actor message. No CAF and no ZeroMQ here.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "plexus/wire.hpp"

namespace plexus {

/// The broker did not answer HELLO within the connect timeout.
struct connect_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// What a handler sees; views are valid for the duration of the call.
struct message_view {
  std::uint32_t sid = 0;
  std::string_view topic, payload, msg_id, reply_to, traceparent;
  wire::string_map_view headers;
  std::uint64_t seq = 0;       // for ack()/nack() on acked subscriptions
  std::uint32_t delivery = 1;  // 1 on first delivery
  std::uint64_t deadline_ns = 0;
};

struct client_options {
  /// The broker; more endpoints to fail over to come from WELCOME.
  std::string endpoint = "tcp://127.0.0.1:7400";
  std::vector<std::string> fallback;
  /// One topic token naming this node; generated when empty.
  std::string node_id;
  std::chrono::milliseconds connect_timeout{3000};
  /// Heartbeats as the broker's: PING after `heartbeat` of silence, the
  /// broker is dead after `liveness` silent intervals, then reconnect.
  std::chrono::milliseconds heartbeat{1000};
  std::uint32_t liveness = 3;
  /// Reconnect backoff doubles from min to max (ZeroMQ guide: 1 s -> 32 s;
  /// plexus starts lower for sub-second failover).
  std::chrono::milliseconds reconnect_min{100};
  std::chrono::milliseconds reconnect_max{5000};
  /// Envelopes queued for the I/O thread before publish() blocks.
  std::size_t outbox_limit = 65536;
  /// A zmq::context_t* to share (needed for inproc endpoints); own one if null.
  void* zmq_context = nullptr;
  wire::limits limits{};
};

struct publish_options {
  std::string_view reply_to{};
  std::uint64_t deadline_ns = 0; // unix epoch ns
  std::string_view traceparent{};
  wire::string_map_view headers{}; // see wire::pack_string_map
  std::string_view msg_id{};       // generated for confirmed publishes when empty
};

struct subscribe_options {
  std::string queue{};       // queue group; empty = plain fan-out
  bool acked = false;        // at-least-once: ack()/nack() every message
  std::uint32_t credit = 0;  // initial credit (queue groups receive only against credit)
  std::uint32_t ack_wait_ms = 0;  // 0 = the broker's default
  std::uint32_t max_deliver = 0;  // 0 = the broker's default
};

/// Outcome codes (CONFIRM and request results): 0 = ok; 100+ as in
/// brokers/PROTOCOL.md; these two are the client's own.
inline constexpr std::uint32_t status_timeout = 900;
inline constexpr std::uint32_t status_disconnected = 901;

/// A short name for any outcome code: "ok", "no responders", "timeout", a
/// wire decode error (codes below 100), ...
[[nodiscard]] const char* status_text(std::uint32_t code) noexcept;

struct reply {
  std::uint32_t code = 0;
  std::string payload;
  std::string text; // why, when code != 0
};

struct client_stats {
  std::uint64_t published = 0, received = 0, errors = 0, reconnects = 0, resent = 0;
};

class client {
public:
  using batch_handler = std::function<void(std::span<const message_view>)>;
  using message_handler = std::function<void(const message_view&)>;
  using confirm_handler = std::function<void(std::uint32_t code)>;
  using reply_handler = std::function<void(reply)>;
  using error_handler = std::function<void(std::uint32_t code, std::string_view text)>;

  /// Connects and waits for WELCOME; throws connect_error after the timeout.
  explicit client(client_options opts);
  /// Sends what is queued, says BYE, stops the I/O thread.
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Queues a PUB; blocks while the outbox is full. An invalid topic throws
  /// std::invalid_argument (as does an invalid pattern in subscribe).
  void publish(std::string_view topic, std::string_view payload, const publish_options& o = {});
  /// Queues a PUB unless the outbox is full.
  [[nodiscard]] bool try_publish(std::string_view topic, std::string_view payload,
                                 const publish_options& o = {});
  /// A PUB the broker confirms (end to end for at-least-once consumers).
  /// Kept until confirmed and re-sent after a reconnect; `done` runs on the
  /// I/O thread with the CONFIRM code.
  void publish_confirmed(std::string_view topic, std::string_view payload, confirm_handler done,
                         const publish_options& o = {});

  std::uint32_t subscribe(std::string_view pattern, message_handler h, subscribe_options o = {});
  /// Handlers of this kind get every run of consecutive messages in one call.
  std::uint32_t subscribe_batch(std::string_view pattern, batch_handler h, subscribe_options o = {});
  void unsubscribe(std::uint32_t sid);
  /// ACKs `count` consecutive deliveries from `seq` in one envelope (one
  /// per message cost the broker and the sender more than the message).
  void ack(std::uint32_t sid, std::uint64_t seq, std::uint32_t count = 1);
  void nack(std::uint32_t sid, std::uint64_t seq, wire::nack_action action,
            std::uint32_t delay_ms = 0, std::string_view reason = {});
  void grant_credit(std::uint32_t sid, std::uint32_t n);

  /// Request/reply: `done` gets the reply, or code no_responders (100) at
  /// once when nobody subscribes, or status_timeout.
  void request_async(std::string_view topic, std::string_view payload,
                     std::chrono::milliseconds timeout, reply_handler done,
                     const publish_options& o = {});
  /// Blocking form, for tools and tests (never from a handler).
  [[nodiscard]] reply request(std::string_view topic, std::string_view payload,
                              std::chrono::milliseconds timeout, const publish_options& o = {});

  /// Errors the broker reports that no request is waiting for.
  void on_error(error_handler h);

  /// Waits until everything queued so far is on the socket; false on timeout.
  bool flush(std::chrono::milliseconds timeout);

  [[nodiscard]] const std::string& node_id() const noexcept;
  /// The broker id from the last WELCOME.
  [[nodiscard]] std::string broker_id() const;
  [[nodiscard]] client_stats stats() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace plexus
