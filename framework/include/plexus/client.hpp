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
#include <optional>
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

/// A publish refused before anything was sent: `code` is its outcome as
/// in the status table (e.g. wire::errc::payload_too_large, 12, for a
/// payload over the broker's max_payload), what() says why and the limit.
struct publish_error : std::invalid_argument {
  publish_error(std::uint32_t c, const std::string& what, std::string t = {})
    : std::invalid_argument(what), code(c), topic(std::move(t)) {}
  std::uint32_t code;
  std::string topic; // 103 (overloaded): the topic whose queue group is paused
};

/// What a handler sees; views are valid for the duration of the call.
struct message_view {
  std::uint32_t sid = 0;
  std::string_view topic, payload, msg_id, reply_to, traceparent;
  wire::string_map_view headers;
  /// For ack()/nack() on acked subscriptions (0 otherwise). The broker
  /// numbers deliveries per connection, from 1 on each; this tag adds the
  /// client's session (high 16 bits, the broker's seq in the low 48), so a
  /// tag from before a reconnect never names a delivery of the next broker.
  /// Consecutive deliveries of one session have consecutive tags.
  std::uint64_t seq = 0;
  std::uint32_t delivery = 1;  // 1 on first delivery
  std::uint64_t deadline_ns = 0;
};

/// What publish_confirmed does when `max_unconfirmed` publishes await
/// their CONFIRM.
enum class unconfirmed_full {
  /// Wait for a CONFIRM to make room. The I/O thread is let through, and a
  /// thread whose paused_publish_scope says hold, drop or fail (a node's
  /// actor threads: they must never wait) gets status_outbox_full at once.
  block,
  fail,  // call `done` at once with status_outbox_full
};

/// A request breaker's state (docs/circuit-breakers.md).
enum class breaker_state : std::uint8_t {
  closed,    // requests go through; their outcomes fill the window
  open,      // requests fail at once with status_circuit_open (or the fallback answers)
  half_open, // `trials` requests go through; the others are refused as when open
};
[[nodiscard]] const char* to_string(breaker_state s) noexcept;

/// Circuit breakers on requests (request_async, request, and so a node's
/// ctx.request): one per callee topic. Off unless `enabled`. A breaker
/// opens when, over the last `window`, at least `min_requests` requests to
/// its topic ended and at least `failure_ratio` of them failed (defaults
/// as Moleculer's: 50% of >= 20 in 60 s). Open, it refuses every request
/// at once (status_circuit_open, or the topic's fallback answers) until
/// `half_open_after` has passed; the first `trials` requests after that go
/// through: all succeed, it closes (with an empty window); one fails, it
/// opens again for another `half_open_after`.
struct breaker_options {
  bool enabled = false;
  double failure_ratio = 0.5;
  std::uint32_t min_requests = 20;
  /// Sliding, in 10 steps: an outcome leaves it between 0.9 and 1 window later.
  std::chrono::milliseconds window{60000};
  std::chrono::milliseconds half_open_after{10000};
  std::uint32_t trials = 1;
  /// Which outcomes are failures; any other outcome of a request that
  /// reached its callee is a success. A request that never left (closed
  /// client, payload too large, session lost) counts as neither.
  bool count_timeouts = true;      // no reply in time, or the callee ran past its deadline
  bool count_no_responders = true; // 100: nobody subscribes to the topic
  bool count_crashes = true;       // status_failed: the callee threw
  bool count_errors = false;       // status_failed any other way (error, its own downstream, ...)
  bool count_overloaded = false;   // 103 overloaded, status_outbox_full
  /// Breakers kept at most; past it, a new topic goes without one until a
  /// closed breaker with an empty window can be forgotten.
  std::size_t max_topics = 4096;
};

/// What publish() does while the broker has paused the queue group its
/// topic goes to (flow control: its consumers have no credit left and its
/// queue is half full; brokers/PROTOCOL.md "Flow control").
enum class paused_publish {
  block, // wait until the broker resumes it (a handler on the I/O thread never waits)
  drop,  // drop the message here, counted in client_stats::paused_drops
  fail,  // throw publish_error with code 103 (overloaded)
  /// Return at once: the message waits in the client, in order, and goes
  /// on RESUME, as the I/O thread's own publishes do. Memory stays bounded:
  /// once the client holds twice outbox_limit PUBs for paused groups (what
  /// the PAUSE found queued, at most outbox_limit, counts), publish()
  /// throws publish_error 103 as `fail` does. For threads that must never
  /// wait: a node sets it for its actor system's threads.
  hold,
};

class client;

/// A thread's override of client_options::when_paused: what publish() on
/// that thread does while its topic is paused, for client `only` (null:
/// every client), whatever that client's own when_paused says. A node's
/// runtime sets `hold` for its connection on the actor system's threads
/// and `fail` around each handler call, so none of them ever waits for a
/// RESUME that only its own consumers could bring (docs/backpressure.md).
struct paused_override {
  paused_publish how = paused_publish::block;
  const client* only = nullptr;
};

/// Sets this thread's override (nullopt: none); returns the one it replaces.
std::optional<paused_override> thread_when_paused(std::optional<paused_override> o) noexcept;

/// thread_when_paused({how, only}) until the end of the scope, then the one before.
class paused_publish_scope {
public:
  explicit paused_publish_scope(paused_publish how, const client* only = nullptr) noexcept
    : before_(thread_when_paused(paused_override{how, only})) {}
  ~paused_publish_scope() { thread_when_paused(before_); }
  paused_publish_scope(const paused_publish_scope&) = delete;
  paused_publish_scope& operator=(const paused_publish_scope&) = delete;

private:
  std::optional<paused_override> before_;
};

struct client_options {
  /// The broker; more endpoints to fail over to come from WELCOME.
  std::string endpoint = "tcp://127.0.0.1:7400";
  std::vector<std::string> fallback;
  /// One topic token naming this node; generated when empty.
  std::string node_id;
  std::chrono::milliseconds connect_timeout{3000};
  /// ZeroMQ heartbeats: a PING every `heartbeat`, and a connection silent
  /// for `liveness` - 1 heartbeats after one is dropped: a broker that is
  /// stopped (SIGSTOP) or unreachable is left within `liveness` heartbeats,
  /// under a second with 250 ms x 3. ZeroMQ's own threads send these ahead
  /// of queued messages and answer them, so a broker busy with a backlog
  /// is not taken for dead. A broker process that dies is left at once (its
  /// connection closes). `heartbeat` x `liveness` is also the time an
  /// endpoint has to take the connection before the next one is tried.
  std::chrono::milliseconds heartbeat{250};
  std::uint32_t liveness = 3;
  /// Application heartbeats: PING after `heartbeat` without hearing from
  /// the broker (or writing to it), answered by PONG. A broker that says
  /// nothing, to HELLO or to PINGs, for `silence_timeout` is stuck (its
  /// loop, or an inproc broker, which has no ZeroMQ heartbeats): the client
  /// fails over. Seconds, not heartbeats: a PING waits behind everything
  /// the client queued before it (publishing 1 KiB messages flat out at a
  /// broker on two busy cores, PONGs came up to 0.9 s late).
  std::chrono::milliseconds silence_timeout{3000};
  /// After a lost session the next endpoint is tried at once; while
  /// attempts keep failing, the wait between them doubles from min to max
  /// (ZeroMQ guide: 1 s -> 32 s; plexus starts lower for sub-second
  /// failover).
  std::chrono::milliseconds reconnect_min{100};
  std::chrono::milliseconds reconnect_max{5000};
  /// Envelopes queued for the I/O thread, or taken by it and not written
  /// yet (the publish window holds them back), before publish() blocks.
  std::size_t outbox_limit = 65536;
  /// Confirmed publishes kept until their CONFIRM (and re-sent after a
  /// reconnect). 64 Ki, as outbox_limit and a broker's queue-group and
  /// per-connection queues: a window wide enough to keep consumers busy
  /// across round trips, while a stalled consumer costs the publisher at
  /// most 64 Ki messages (64 MiB at 1 KiB, the broker's pending-bytes cap).
  std::size_t max_unconfirmed = 65536;
  unconfirmed_full when_unconfirmed_full = unconfirmed_full::block;
  /// A CONFIRM saying a durable queue could not keep the message, `full`
  /// (115: at its limit) or `unavailable` (116: the broker that keeps it
  /// is out of reach), does not settle a publish: it stays in the
  /// unconfirmed window and is sent again after a wait that doubles from
  /// unkept_retry_min to unkept_retry_max, so a publisher slows to what the
  /// consumers take, or waits for the queue's home to return (its window
  /// fills, then publish_confirmed blocks or fails as when_unconfirmed_full
  /// says), and loses nothing. false: `done` hears 115 or 116.
  bool retry_unkept = true;
  std::chrono::milliseconds unkept_retry_min{50}, unkept_retry_max{2000};
  /// Flow control (brokers/PROTOCOL.md "Flow control"): HELLO tells the
  /// broker this client honours PAUSE/RESUME; the broker then pauses it
  /// per queue group instead of dropping what it publishes there. While
  /// paused, publishes to that group's topics are held in this client (in
  /// order, sent on RESUME), publish() does as `when_paused` says and
  /// try_publish() returns false. false: none of this (a broker drops what
  /// a full group cannot take, as before).
  bool flow_control = true;
  paused_publish when_paused = paused_publish::block;
  /// With flow control: PUBs written that the broker has not read yet, at
  /// most (envelopes, bytes; 0: no bound), learnt from the PONGs to PINGs
  /// it sends among them. It bounds what is still on its way when the
  /// broker says PAUSE (the broker takes that much past its pause mark:
  /// keep it well under half of the broker's group_queue_msgs / _bytes).
  std::size_t publish_window = 8192;
  std::size_t publish_window_bytes = 8u << 20;
  /// A CONFIRM saying 103 (`overloaded`: the group was paused or a bounded
  /// queue was full) does not settle a publish: it is sent again after the
  /// unkept_retry_min..max backoff, at once when the broker resumes, and
  /// publish_confirmed's `done` hears the final outcome. false: `done`
  /// hears 103.
  bool retry_overloaded = true;
  /// CurveZMQ, for a broker with --auth: this client's key pair and the
  /// broker's (the cluster's) public key, each 40 characters of Z85
  /// (plexus/creds.hpp reads them from a credentials file). All three or
  /// none: none is plaintext. A broker that refuses the key, or whose key
  /// is another, never answers: connect_error, saying so.
  std::string curve_public_key, curve_secret_key, curve_server_key;
  /// A zmq::context_t* to share (needed for inproc endpoints); own one if null.
  void* zmq_context = nullptr;
  wire::limits limits{};
  /// Circuit breakers on this client's requests (off by default).
  breaker_options breaker{};
};

/// A new CURVE key pair, Z85 (what `plexus keys` writes). Throws
/// std::runtime_error when this libzmq has no CURVE support.
struct curve_key_pair {
  std::string public_key, secret_key;
};
[[nodiscard]] curve_key_pair make_curve_key_pair();

struct publish_options {
  std::string_view reply_to{};
  std::uint64_t deadline_ns = 0; // unix epoch ns
  std::string_view traceparent{};
  wire::string_map_view headers{}; // see wire::pack_string_map
  std::string_view msg_id{};       // generated for confirmed publishes when empty
  /// The msg id names the event, whoever publishes it (wire::flag_shared_id):
  /// the broker keeps the first publish of that id on this topic from any
  /// client and drops the others as duplicates (their confirms say what
  /// the first one's did). For processes that publish the same event, each
  /// with the same id: timers on several nodes. Needs msg_id.
  bool shared_id = false;
};

struct subscribe_options {
  std::string queue{};       // queue group; empty = plain fan-out
  bool acked = false;        // at-least-once: ack()/nack() every message
  std::uint32_t credit = 0;  // initial credit (queue groups receive only against credit)
  std::uint32_t ack_wait_ms = 0;  // 0 = the broker's default
  std::uint32_t max_deliver = 0;  // 0 = the broker's default
};

/// Outcome codes (CONFIRM, ERR and request results) are plexus::status
/// (plexus/wire.hpp, one table with name, text and whether a retry may
/// help; status_text() names any code). The client's own, as numbers:
inline constexpr std::uint32_t status_timeout = static_cast<std::uint32_t>(status::timeout);
inline constexpr std::uint32_t status_disconnected = static_cast<std::uint32_t>(status::disconnected);
/// publish_confirmed with `max_unconfirmed` awaiting CONFIRM and
/// unconfirmed_full::fail: nothing was sent.
inline constexpr std::uint32_t status_outbox_full = static_cast<std::uint32_t>(status::outbox_full);
/// A request's responder failed (it answered with the failure instead of
/// a reply: see reply::from and reply::text).
inline constexpr std::uint32_t status_failed = static_cast<std::uint32_t>(status::failed);
/// on_error: the broker ended this client's session (its BYE, or it no
/// longer knew the session); the text says why. The client connects
/// again and restores its subscriptions by itself; what was sent to the
/// old session in between is lost for plain subscriptions.
inline constexpr std::uint32_t status_session_lost = static_cast<std::uint32_t>(status::session_lost);
/// on_error: a handler kept the I/O thread for longer than the broker's
/// heartbeat, and with it the heartbeats the session lives on. Handlers
/// must not block; hand long work to another thread.
inline constexpr std::uint32_t status_handler_stall = static_cast<std::uint32_t>(status::handler_stall);
/// on_error from the broker (ERR 112): it dropped messages for this
/// client because its queue was full; the text says how many.
inline constexpr std::uint32_t status_slow_consumer = static_cast<std::uint32_t>(status::slow_consumer);
/// A request refused at once, never sent: its topic's breaker is open (or
/// half-open with its trials in flight). Never sent by a broker.
inline constexpr std::uint32_t status_circuit_open = static_cast<std::uint32_t>(status::circuit_open);

struct reply {
  std::uint32_t code = 0;
  std::string payload;
  std::string text; // why, when code != 0
  /// status_failed: the responder ("service.function") and how it ended
  /// (a span_status name: "crash", "error", "timeout", ...).
  std::string from, failure;
  /// The topic's fallback answered (code as it said, usually 0): its
  /// breaker refused the request, which was never sent.
  bool fallback = false;
};

/// A request breaker as it is now (client::breakers()).
struct breaker_info {
  std::string topic;
  breaker_state state = breaker_state::closed;
  /// Requests ended in the window, and failures among them (closed); open
  /// or half-open: those that opened it.
  std::uint64_t requests = 0, failures = 0;
  /// Times it opened; requests it refused (a fallback's answers included).
  std::uint64_t opened = 0, refused = 0;
};

/// A breaker's change of state, published as a msgpack map on
/// `$SYS.breaker.<node id>` by the client (and so by a node).
struct breaker_event {
  std::string node, topic;
  std::string state; // "opened", "half_open" or "closed"
  /// opened: the window that opened it (requests, failures in it) or, from
  /// half-open, the trials and the one that failed; closed: the trials.
  std::uint64_t requests = 0, failures = 0;
  std::uint32_t trials = 0;
};
/// Reads a `$SYS.breaker.*` payload; throws std::runtime_error on anything else.
[[nodiscard]] breaker_event decode_breaker_event(std::string_view payload);

/// The headers of a failure answered instead of a reply (a plexus function
/// whose invocation for a request failed sends them on the reply-to).
inline constexpr std::string_view failure_header = "plexus-failure"; // how it ended
inline constexpr std::string_view failure_from_header = "plexus-from"; // service.function
inline constexpr std::string_view failure_cause_header = "plexus-cause"; // why

struct client_stats {
  std::uint64_t published = 0, received = 0, errors = 0;
  /// Connection attempts after the first; failovers: sessions welcomed by
  /// another endpoint than the last one; resent: unconfirmed publishes sent
  /// again after a reconnect.
  std::uint64_t reconnects = 0, failovers = 0, resent = 0;
  /// ACKs and NACKs dropped because their delivery belongs to a session
  /// that ended (the broker redelivers those messages itself).
  std::uint64_t stale_acks = 0;
  /// publish_confirmed calls refused with status_outbox_full.
  std::uint64_t outbox_full = 0;
  /// Messages the broker dropped for this client (slow consumer), as it
  /// told us (ERR 112); sessions the broker ended (BYE or a forgotten
  /// session); handler calls that blocked the I/O thread past the broker's
  /// heartbeat.
  std::uint64_t dropped = 0, sessions_lost = 0, stalls = 0;
  /// Confirmed publishes sent again because a durable queue could not keep
  /// them (115 full, 116 its home out of reach).
  std::uint64_t unkept_retries = 0;
  /// Flow control: PAUSEs heard; confirmed publishes sent again after a
  /// CONFIRM 103; publish() calls that waited, were dropped or threw while
  /// their topic was paused; try_publish() calls refused for it;
  /// publish() calls held in the client (paused_publish::hold).
  std::uint64_t pauses = 0, overload_retries = 0;
  std::uint64_t paused_waits = 0, paused_drops = 0, paused_failures = 0, paused_refusals = 0;
  std::uint64_t paused_holds = 0;
  /// Requests refused by an open breaker (status_circuit_open), and those
  /// of them a fallback answered.
  std::uint64_t circuit_open = 0, fallbacks = 0;
};

class client {
public:
  using batch_handler = std::function<void(std::span<const message_view>)>;
  using message_handler = std::function<void(const message_view&)>;
  using confirm_handler = std::function<void(std::uint32_t code)>;
  using reply_handler = std::function<void(reply)>;
  using error_handler = std::function<void(std::uint32_t code, std::string_view text)>;
  using fallback_handler = std::function<reply(std::string_view topic, std::string_view payload)>;

  /// Connects and waits for WELCOME; throws connect_error after the timeout.
  /// An endpoint (or fallback) that is not tcp://HOST:PORT, ipc://PATH or
  /// inproc://NAME throws std::invalid_argument first, before any thread
  /// or socket exists.
  explicit client(client_options opts);
  /// Sends what is queued, says BYE, stops the I/O thread.
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Queues a PUB; blocks while the outbox is full, and while the broker
  /// pauses the topic's queue group (client_options::when_paused, or this
  /// thread's paused_publish_scope: or drops, throws publish_error 103, or
  /// holds it and returns). An invalid topic throws
  /// std::invalid_argument (as does an invalid pattern in subscribe); a
  /// payload over the broker's max_payload throws publish_error (code
  /// payload_too_large), as the broker would drop it.
  void publish(std::string_view topic, std::string_view payload, const publish_options& o = {});
  /// Queues a PUB unless the outbox is full or the broker pauses the
  /// topic's queue group (flow control).
  [[nodiscard]] bool try_publish(std::string_view topic, std::string_view payload,
                                 const publish_options& o = {});
  /// Whether the broker pauses the queue group `topic` goes to, now (flow
  /// control): publish() there would wait, drop, fail or hold. Never blocks.
  [[nodiscard]] bool paused(std::string_view topic) const;
  /// A PUB the broker confirms (end to end for at-least-once consumers).
  /// Kept until confirmed and re-sent after a reconnect; `done` runs on the
  /// I/O thread with the CONFIRM code (or an ERR's, e.g. 105). With
  /// `max_unconfirmed` awaiting CONFIRM it blocks, or calls `done` at once
  /// on this thread with status_outbox_full (see client_options). A payload
  /// over the broker's max_payload is not sent: `done` runs at once on this
  /// thread with wire::errc::payload_too_large (12).
  void publish_confirmed(std::string_view topic, std::string_view payload, confirm_handler done,
                         const publish_options& o = {});

  std::uint32_t subscribe(std::string_view pattern, message_handler h, subscribe_options o = {});
  /// Handlers of this kind get every run of consecutive messages in one call.
  std::uint32_t subscribe_batch(std::string_view pattern, batch_handler h, subscribe_options o = {});
  void unsubscribe(std::uint32_t sid);
  /// ACKs `count` consecutive deliveries from `seq` in one envelope (one
  /// per message cost the broker and the sender more than the message).
  /// ACK and NACK of a delivery from before a reconnect do nothing but
  /// count in stats().stale_acks: that broker connection is gone.
  void ack(std::uint32_t sid, std::uint64_t seq, std::uint32_t count = 1);
  void nack(std::uint32_t sid, std::uint64_t seq, wire::nack_action action,
            std::uint32_t delay_ms = 0, std::string_view reason = {});
  void grant_credit(std::uint32_t sid, std::uint32_t n);
  /// The broker sends subscription `sid` nothing more: its credit becomes
  /// 0 (and a failover's re-SUB asks for none) until credit is granted
  /// again. Its unacked deliveries stay its own to ACK or NACK, and a
  /// requeue NACK then goes to another member of its queue group, or waits
  /// in the group; never back to it. A stopping consumer does this first.
  void withdraw_credit(std::uint32_t sid);
  /// The credit of subscription `sid` becomes `n` (CREDIT with the set
  /// flag), and a failover's re-SUB asks for `n`: how a member that
  /// withdrew comes back.
  void set_credit(std::uint32_t sid, std::uint32_t n);

  /// Request/reply: `done` gets the reply, or code no_responders (100) at
  /// once when nobody subscribes, or status_timeout.
  void request_async(std::string_view topic, std::string_view payload,
                     std::chrono::milliseconds timeout, reply_handler done,
                     const publish_options& o = {});
  /// Blocking form, for tools and tests (never from a handler).
  [[nodiscard]] reply request(std::string_view topic, std::string_view payload,
                              std::chrono::milliseconds timeout, const publish_options& o = {});

  /// While the breaker of a topic matching `pattern` refuses a request,
  /// `f` answers it instead of status_circuit_open: on the requesting
  /// thread, at once, its reply marked `fallback`. It must not block. One
  /// that throws leaves the request refused (the text says why). The first
  /// pattern registered that matches wins; registering one again replaces
  /// its function. Needs client_options::breaker.enabled.
  void fallback(std::string_view pattern, fallback_handler f);
  /// Every topic's breaker (those with requests in their window, open or
  /// half-open ones). An open breaker whose wait is over reads half_open.
  [[nodiscard]] std::vector<breaker_info> breakers() const;

  /// Errors the broker reports that no request is waiting for, and what
  /// the application must know of its session: status_slow_consumer
  /// (messages dropped), status_session_lost, status_handler_stall. Runs
  /// on the I/O thread. With no handler set, the last three are written to
  /// stderr (at most one line per kind every 10 s): they mean lost
  /// messages, and must not pass unnoticed. So is a failover endpoint that
  /// cannot be dialled (a broker's WELCOME advertised it): skipped, with
  /// wire::errc::value_out_of_range (10).
  void on_error(error_handler h);

  /// Waits until everything queued so far is on the socket; false on timeout.
  bool flush(std::chrono::milliseconds timeout);

  [[nodiscard]] const std::string& node_id() const noexcept;
  /// The broker id from the last WELCOME.
  [[nodiscard]] std::string broker_id() const;
  /// The largest payload the broker takes (its last WELCOME's max_payload;
  /// 0 from a broker that did not say).
  [[nodiscard]] std::uint64_t max_payload() const noexcept;
  [[nodiscard]] client_stats stats() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
  struct breaker_shell;
  std::unique_ptr<breaker_shell> breakers_;
};

} // namespace plexus
