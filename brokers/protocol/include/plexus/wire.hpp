// SPDX-License-Identifier: Apache-2.0
#pragma once

// The plexus wire: envelope headers for every client and peer op, their
// strict decoder and their encoder, and batches. Sans-IO: bytes in, bytes
// out; the socket code lives in the transport and the broker server.
// brokers/PROTOCOL.md is the normative description of these bytes.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "plexus/topic.hpp"

namespace plexus::wire {

inline constexpr std::uint32_t protocol_version = 1;

enum class op : std::uint8_t {
  // client <-> broker
  hello = 1,
  welcome = 2,
  sub = 3,
  unsub = 4,
  pub = 5,
  msg = 6,
  ack = 7,
  nack = 8,
  credit = 9,
  confirm = 10,
  ping = 11,
  pong = 12,
  err = 13,
  bye = 14,
  // broker -> client, only to a client whose HELLO says flag_flow_control
  // (PROTOCOL.md "Flow control"); 15 stays unassigned
  pause = 16,
  resume = 17,
  // broker <-> broker
  peer_hello = 32,
  interest_add = 33,
  interest_remove = 34,
  fwd = 35,
  confirm_relay = 36,
};

[[nodiscard]] const char* to_string(op o) noexcept;
/// True for the ops that carry a payload (PUB, MSG, FWD).
[[nodiscard]] constexpr bool carries_payload(op o) noexcept {
  return o == op::pub || o == op::msg || o == op::fwd; // inline: the broker asks per message
}

/// Header keys on the wire (small positive integers, one byte each).
enum class field : std::uint8_t {
  version = 0,
  op = 1,
  sid = 2,
  topic = 3, // a topic for PUB/MSG/FWD, a pattern for SUB/INTEREST
  queue = 4,
  msg_id = 5,
  reply_to = 6,
  headers = 7,
  deadline = 8,
  traceparent = 9,
  flags = 10,
  seq = 11,
  delivery = 12,
  credit = 13,
  ack_mode = 14,
  ack_wait = 15,
  max_deliver = 16,
  action = 17,
  delay = 18,
  code = 19,
  text = 20,
  node = 21,
  heartbeat = 22,
  brokers = 23,
  max_payload = 24,
  count = 25, // ACK: how many consecutive seqs from `seq`
  publisher = 26, // FWD: the publisher's dedup scope
  auth = 27,      // PEER_HELLO: proof that the sender knows the cluster secret
  user = 28,      // FWD: the user that published (brokers with auth)
  // not header keys: where an error was found
  none = 200,
  key = 201,     // a map key that is not a non-negative integer
  unknown = 202, // inside a field this version does not know
  payload = 203,
  frame = 204, // the frame as a whole
  batch = 205,
};
inline constexpr std::size_t field_count = 29; // keys 0 .. 28

[[nodiscard]] const char* to_string(field f) noexcept;

enum class ack_mode : std::uint8_t { none = 0, explicit_ack = 1 };
enum class nack_action : std::uint8_t { requeue = 0, delay = 1, dead_letter = 2 };

/// PUB flags.
inline constexpr std::uint32_t flag_confirm = 1u << 0;
/// The msg id names the event, not this publisher's attempt: the broker
/// deduplicates it against every publish on the same topic that carries
/// this flag, whoever sent it (as JetStream's Nats-Msg-Id within a
/// stream). For an event several processes publish alike: a schedule's
/// tick from the timer of every node. Without a msg id it means nothing.
inline constexpr std::uint32_t flag_shared_id = 1u << 1;
/// CREDIT flags: the subscription's credit becomes `credit` (else it grows
/// by `credit`).
inline constexpr std::uint32_t flag_credit_set = 1u << 0;
/// HELLO flags: this client understands PAUSE/RESUME (flow control);
/// WELCOME flags: this broker sends them to such clients.
inline constexpr std::uint32_t flag_flow_control = 1u << 0;
/// HELLO flags: this client reads MSG runs; WELCOME flags: this broker
/// sends them to such clients (PROTOCOL.md "MSG runs").
inline constexpr std::uint32_t flag_msg_runs = 1u << 1;
/// The op of a MSG run: one batch entry for consecutive MSGs to one
/// subscription that differ only in seq and payload. Only encoded here
/// (batch_writer::begin_msg_run): a broker sends runs and never reads one,
/// so decode() calls it unknown_op, and the C++ client never asks for them.
inline constexpr std::uint8_t msg_run_op = 18;

/// A msgpack map of str -> str kept as its encoded bytes: decoding validates
/// it once and allocates nothing; a broker forwards it byte for byte.
class string_map_view {
public:
  string_map_view() = default;
  /// `raw` must be a complete, valid encoded map (see pack_string_map).
  string_map_view(std::string_view raw, std::uint32_t count) noexcept
    : raw_(raw), count_(count) {}

  [[nodiscard]] std::string_view raw() const noexcept { return raw_; }
  [[nodiscard]] std::uint32_t size() const noexcept { return count_; }
  [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
  /// The pairs in wire order.
  [[nodiscard]] std::vector<std::pair<std::string_view, std::string_view>> items() const;
  /// The value of the first pair with this key, or empty.
  [[nodiscard]] std::string_view find(std::string_view key) const noexcept;

private:
  std::string_view raw_;
  std::uint32_t count_ = 0;
};

/// A msgpack array of str kept as its encoded bytes.
class string_list_view {
public:
  string_list_view() = default;
  string_list_view(std::string_view raw, std::uint32_t count) noexcept
    : raw_(raw), count_(count) {}

  [[nodiscard]] std::string_view raw() const noexcept { return raw_; }
  [[nodiscard]] std::uint32_t size() const noexcept { return count_; }
  [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
  [[nodiscard]] std::vector<std::string_view> items() const;

private:
  std::string_view raw_;
  std::uint32_t count_ = 0;
};

/// Appends an encoded map / array to `out` and returns a view of it (valid
/// while `out` is neither changed nor moved).
string_map_view pack_string_map(
  const std::vector<std::pair<std::string_view, std::string_view>>& items, std::string& out);
string_list_view pack_string_list(const std::vector<std::string_view>& items, std::string& out);

/// One envelope header. Every op uses a subset of the fields (see
/// PROTOCOL.md); the encoder writes only fields that differ from their
/// zero value. Views point into the decoded frame or into caller storage.
struct header {
  op kind = op::ping;
  std::uint32_t version = protocol_version;
  std::uint32_t sid = 0;
  std::string_view topic;
  std::string_view queue;
  std::string_view msg_id;
  std::string_view reply_to;
  string_map_view headers;
  std::uint64_t deadline_ns = 0; // unix epoch nanoseconds; 0 = none
  std::string_view traceparent;  // W3C trace context
  std::uint32_t flags = 0;
  std::uint64_t seq = 0;       // delivery tag, per connection
  std::uint32_t delivery = 0;  // 1 on first delivery
  std::uint32_t credit = 0;
  ack_mode ack = ack_mode::none;
  std::uint32_t ack_wait_ms = 0;
  std::uint32_t max_deliver = 0;
  nack_action action = nack_action::requeue;
  std::uint32_t delay_ms = 0;
  std::uint32_t code = 0; // error / status code (see errc in PROTOCOL.md)
  std::string_view text;
  std::string_view node;  // node / broker id; origin broker for FWD
  std::uint32_t heartbeat_ms = 0;
  string_list_view brokers;
  std::uint64_t max_payload = 0;
  std::uint32_t count = 0; // ACK: seqs seq .. seq+count-1; 0 = just seq
  /// FWD: the dedup scope of the client that published the message (its
  /// node and lineage, as its broker saw them in HELLO).
  std::string_view publisher;
  /// PEER_HELLO: HMAC-SHA256 of the hello under the cluster secret.
  std::string_view auth;
  /// FWD: the user its origin broker admitted the publisher as (with
  /// auth), so the receiving broker checks the publish against its own
  /// policy too. Clients never send it; a broker ignores it on PUB.
  std::string_view user;
};

/// Decoder limits. Defaults follow NATS where it has one (1 MiB payload).
struct limits {
  std::size_t max_header_bytes = 8 * 1024;
  std::size_t max_payload_bytes = 1024 * 1024;
  topic_limits topic{};
  std::size_t max_headers = 32;           // user header pairs
  std::size_t max_header_key_bytes = 64;
  std::size_t max_header_value_bytes = 1024;
  std::size_t max_msg_id_bytes = 64;
  std::size_t max_name_bytes = 128;       // queue group, node id, traceparent
  std::size_t max_text_bytes = 1024;      // error text, nack reason
  std::size_t max_map_size = 64;          // entries in any map
  std::size_t max_array_size = 64;        // elements in any array
  std::size_t max_depth = 4;              // nesting, the header map being 1
  std::size_t max_batch_count = 1024;
  std::size_t max_batch_bytes = 4 * 1024 * 1024;

  /// The largest ZeroMQ message this configuration accepts: what a socket's
  /// ZMQ_MAXMSGSIZE should be.
  [[nodiscard]] std::size_t max_message_bytes() const noexcept {
    auto single = max_header_bytes + max_payload_bytes;
    return single > max_batch_bytes ? single : max_batch_bytes;
  }
};

enum class errc : std::uint8_t {
  ok = 0,
  truncated = 1,         // input ends inside a value
  malformed = 2,         // not msgpack (e.g. byte 0xc1)
  trailing_bytes = 3,    // bytes after the header map
  not_a_map = 4,         // a header that is not a map
  wrong_type = 5,        // a field of the wrong msgpack type
  duplicate_field = 6,
  missing_field = 7,     // a field this op requires
  bad_version = 8,
  unknown_op = 9,
  value_out_of_range = 10,
  header_too_large = 11,
  payload_too_large = 12,
  unexpected_payload = 13, // a payload on an op that carries none
  missing_payload = 14,
  string_too_long = 15,
  too_many_headers = 16,
  map_too_large = 17,
  array_too_large = 18,
  too_deep = 19,
  bad_topic = 20,        // see topic_errc for the detail
  bad_pattern = 21,
  batch_too_large = 22,  // bytes
  batch_too_many = 23,   // entries
  bad_batch = 24,        // not a batch frame / entry count mismatch
  too_many_frames = 25,
};

[[nodiscard]] const char* to_string(errc e) noexcept;
[[nodiscard]] const std::error_category& wire_category() noexcept;
[[nodiscard]] std::error_code make_error_code(errc e) noexcept;

/// What went wrong and where. `topic` is set for bad_topic / bad_pattern.
struct decode_error {
  errc code = errc::ok;
  field where = field::none;
  topic_errc topic = topic_errc::ok;
  std::uint32_t index = 0; // the batch entry, when in_batch
  bool in_batch = false;

  [[nodiscard]] bool ok() const noexcept { return code == errc::ok; }
  explicit operator bool() const noexcept { return !ok(); } // true on error
};

/// "topic: bad topic (empty token)", "batch entry 3: msg_id: string too long".
[[nodiscard]] std::string to_string(const decode_error& e);

/// Decodes one header frame. Never throws, never reads outside `bytes`,
/// allocates nothing. On error `out` is unspecified.
[[nodiscard]] decode_error decode_header(std::string_view bytes, const limits& lim,
                                         header& out) noexcept;

/// A header with its payload (empty unless carries_payload(h.kind)).
struct entry {
  header h;
  std::string_view payload;
};

/// True if a frame is a batch (a msgpack array), false if it is a header
/// (a map). The first byte decides; see PROTOCOL.md.
[[nodiscard]] bool is_batch_frame(std::string_view frame) noexcept;

/// Decodes a single message: `frames` (without a ROUTER's routing id) is a
/// header frame and, for PUB/MSG/FWD only, exactly one payload frame.
[[nodiscard]] decode_error decode_message(std::span<const std::string_view> frames,
                                          const limits& lim, entry& out) noexcept;

/// Decodes a batch frame into `out` (cleared first; its capacity is reused).
/// All or nothing: on any error `out` is left empty.
[[nodiscard]] decode_error decode_batch(std::string_view frame, const limits& lim,
                                        std::vector<entry>& out) noexcept;

/// Appends the encoded header to `out`.
void encode_header(const header& h, std::string& out);

/// What every MSG of one message says besides its sid, seq and delivery
/// count. A broker sends a message to many subscribers, or again: it
/// encodes these once (encode_msg_fields), and each MSG header only adds
/// its own fields around them (encode_msg_header).
struct msg_fields {
  std::string_view topic, msg_id, reply_to, traceparent;
  string_map_view headers;
  std::uint64_t deadline_ns = 0;
};

/// msg_fields encoded, as they sit inside a MSG header.
struct encoded_msg_fields {
  std::string_view bytes;
  std::uint32_t count = 0; // header fields in `bytes`
};

/// The bytes encode_msg_fields writes for `f`.
[[nodiscard]] std::size_t encoded_size(const msg_fields& f) noexcept;
/// Encodes `f` at `out` (encoded_size(f) bytes of room) and points its
/// strings and headers at their copies there: who keeps the bytes needs
/// no other copy. The result views `out`.
encoded_msg_fields encode_msg_fields(msg_fields& f, char* out);
/// Appends a MSG header: byte for byte what encode_header writes for a MSG
/// with this sid, seq and delivery count, the fields encoded in `shared`,
/// and no other field.
void encode_msg_header(std::uint32_t sid, const encoded_msg_fields& shared, std::uint64_t seq,
                       std::uint32_t delivery, std::string& out);
/// Appends a MSG run's header (see flag_msg_runs): a MSG header's fields,
/// its op msg_run_op, seq always, and `count`.
void encode_msg_run_header(std::uint32_t sid, const encoded_msg_fields& shared,
                           std::uint64_t first_seq, std::uint32_t delivery, std::uint32_t count,
                           std::string& out);

/// Builds a batch frame in `out`: begin(), add() per entry, finish().
/// A lone message should go out as a plain header + payload instead: a
/// batch is for when a queue already holds several.
class batch_writer {
public:
  explicit batch_writer(std::string& out) noexcept : out_(out) {}
  void begin();
  void add(const header& h, std::string_view payload);
  /// The same for a MSG, its header written by encode_msg_header.
  void add_msg(std::uint32_t sid, const encoded_msg_fields& shared, std::uint64_t seq,
               std::uint32_t delivery, std::string_view payload);
  /// The same for a header already encoded (by encode_header) as `kind`.
  void add_encoded(std::string_view header_bytes, op kind, std::string_view payload);
  /// One MSG run entry of `count` (at least 1) MSGs to `sid` with these
  /// fields and delivery count, seqs `first_seq`, `first_seq + 1`, ... (all
  /// 0 when `first_seq` is 0): its header, then the payloads array, whose
  /// `count` payloads add_run_payload adds next.
  void begin_msg_run(std::uint32_t sid, const encoded_msg_fields& shared,
                     std::uint64_t first_seq, std::uint32_t delivery, std::uint32_t count);
  void add_run_payload(std::string_view payload);
  /// Patches the entry count; the frame is complete after this.
  void finish() noexcept;
  [[nodiscard]] std::size_t count() const noexcept { return count_; }
  [[nodiscard]] std::size_t bytes() const noexcept { return out_.size() - start_; }

private:
  void add_payload(op kind, std::string_view payload);
  std::string& out_;
  std::size_t start_ = 0;
  std::size_t count_ = 0;
};

} // namespace plexus::wire

namespace plexus {

/// Outcome codes, the one table of them: 0 and 100-199 travel on the wire
/// (ERR and CONFIRM `code`, brokers/PROTOCOL.md "Status codes"), 900 and up
/// are the client's own (a request that timed out, a session lost, ...).
/// Codes below 100 are wire decode errors (wire::errc).
enum class status : std::uint32_t {
  ok = 0,
  no_responders = 100,          // a request matched no subscriber
  no_interest = 101,            // CONFIRM: accepted, but nobody subscribes
  dead_lettered = 102,          // CONFIRM: a consumer gave up on it
  overloaded = 103,             // a bounded queue was full: the message was dropped
  expired = 104,                // past its deadline: dropped
  forbidden = 105,              // a topic clients may not publish on
  unknown_subscription = 106,
  too_many_subscriptions = 107,
  protocol_violation = 108,     // an op out of place (e.g. before HELLO)
  duplicate_sid = 109,
  peer_lost = 110,              // CONFIRM: a peer broker holding deliveries died
  returned = 111,               // CONFIRM_RELAY only: the peer has no member left
  slow_consumer = 112,          // ERR: messages to this connection were dropped (`count`)
  not_authorized = 113,         // ERR: a PEER_HELLO without a valid proof of the cluster secret
  permission_denied = 114,      // ERR: the connection's user may not do this (PUB, SUB, queue group, HELLO node)
  full = 115,                   // CONFIRM: a durable queue it matched is at a limit: not kept
  unavailable = 116,            // CONFIRM: a durable queue it matched is kept by a broker out of reach
  timeout = 900,                // a request's reply did not come in time
  disconnected = 901,           // the client closed with the request open
  outbox_full = 902,            // publish_confirmed refused: max_unconfirmed in flight
  failed = 903,                 // the responder failed and said so instead of replying
  session_lost = 904,           // the broker ended the client's session
  handler_stall = 905,          // a handler kept the client's I/O thread too long
  circuit_open = 906,           // the client's breaker for the topic is open: not sent
};

/// What the table says of one code. `retryable`: the same publish or
/// request may succeed if made again (later); the others will not.
struct status_info {
  status code;
  std::string_view name; // one word, as in metrics and logs: "no_responders"
  std::string_view text; // for people: "no responders"
  bool retryable;
};

/// A status as the number on the wire.
[[nodiscard]] constexpr std::uint32_t code_of(status s) noexcept {
  return static_cast<std::uint32_t>(s);
}

/// Every status, by code.
[[nodiscard]] std::span<const status_info> status_table() noexcept;
/// The entry of `code`, or null for a code the table does not have.
[[nodiscard]] const status_info* find_status(std::uint32_t code) noexcept;
/// A short text for any outcome code: the table's, a wire decode error's
/// (codes below 100), or "unknown status".
[[nodiscard]] const char* status_text(std::uint32_t code) noexcept;

} // namespace plexus

template <>
struct std::is_error_code_enum<plexus::wire::errc> : std::true_type {};
