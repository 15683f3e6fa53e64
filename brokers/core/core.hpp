// SPDX-License-Identifier: Apache-2.0
#pragma once

// The broker's sans-IO state machine: every delivery rule lives here and
// nowhere else. Input: decoded envelopes from connections, bad-frame reports,
// disconnects and clock ticks, each with the time. Output: envelopes for
// connections (in per-connection bounded queues the I/O shell drains) and
// the connections the core decided to close. No sockets, no threads, no
// clock of its own: tests drive it with a fake clock.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "permissions.hpp"
#include "plexus/metrics.hpp"
#include "plexus/wire.hpp"

namespace plexus::broker {

using conn_id = std::uint64_t;
/// Time since the Unix epoch. Deadlines on the wire are in the same clock.
using time_point = std::chrono::nanoseconds;
using std::chrono::milliseconds;

enum class slow_consumer_policy { drop, disconnect };

/// Status codes the broker sends in ERR and CONFIRM (`code`): the one
/// table in plexus/wire.hpp. See brokers/PROTOCOL.md.
using plexus::status;


/// A durable queue group (issue #19, brokers/PROTOCOL.md "Durable queues"):
/// every message matching one of `subjects` is kept, whether or not a
/// member is connected, until a member ACKs it (or it dies: dead letter,
/// deadline, max_age). Members SUB with `queue` = `name`. Its messages are
/// in memory too (the store is for recovery), so max_bytes bounds both.
struct durable_config {
  std::string name;
  std::vector<std::string> subjects;
  std::uint64_t max_msgs = 1'000'000;
  std::uint64_t max_bytes = 256ull << 20; // payloads
  milliseconds max_age{0};                // 0: no limit
  /// In a cluster sharing one configuration: the id of the broker that
  /// keeps it (its home); the others forward its subjects there and refuse
  /// members of it (they connect to the home). Empty: this broker.
  std::string home;
};

/// What the core asks of the store, in order: the shell applies these to
/// its log before it commits. Ids are the store's: the core numbers
/// appends from the id store_ids_from() gave it, one by one.
struct store_op {
  enum class kind : std::uint8_t { append, ack } op = kind::append;
  std::uint64_t id = 0;
  std::string group; // append: the durable's name
  std::string body;  // append: encode_stored()
};

struct durable_stats {
  std::string name;
  durable_config cfg;
  bool declared = false; // at run time ($SYS.queue.add), not in the configuration
  std::size_t messages = 0, bytes = 0; // kept (waiting or in flight)
  std::size_t waiting = 0, members = 0;
  std::uint64_t stored = 0;    // appends asked of the store
  std::uint64_t acked = 0;     // settled: ACKed, dead-lettered, expired or aged out
  std::uint64_t full = 0;      // publishes refused: a limit was reached (code 115)
  std::uint64_t aged_out = 0;  // past max_age
  std::uint64_t restored = 0;  // recovered from the store at start
};

struct config {
  std::string id = "broker";
  /// Endpoints advertised in WELCOME for failover (this broker's first).
  std::vector<std::string> advertise;
  wire::limits limits{};
  /// Heartbeats as in the ZeroMQ guide's Paranoid Pirate: 1 s interval, a
  /// peer silent for `liveness` intervals is dead.
  milliseconds heartbeat{1000};
  std::uint32_t liveness = 3;
  /// A connection holding unacked deliveries is pinged this often while
  /// nothing else goes to it: a send to a process that died (its TCP
  /// connection closed) fails at once, so its work is redelivered within
  /// this, not a heartbeat. 0 = heartbeats only. (A hung process is still
  /// found by `liveness`.)
  milliseconds holder_probe{100};
  std::size_t max_subscriptions = 1024;          // per connection
  /// Per-connection outbound queue. NATS's per-client pending default is
  /// 64 MiB; past it a slow consumer is handled by `slow_consumer`. Control
  /// frames (PONG, CONFIRM, ERR, ...) have a budget of the same size of
  /// their own, so a full queue of messages never blocks them.
  std::size_t max_pending_msgs = 65536;
  std::size_t max_pending_bytes = 64u << 20;
  slow_consumer_policy slow_consumer = slow_consumer_policy::drop;
  /// Messages waiting in a queue group because no member has credit.
  std::size_t group_queue_msgs = 65536;
  std::size_t group_queue_bytes = 64u << 20;
  /// Flow control (PROTOCOL.md "Flow control"): a publisher whose HELLO
  /// says wire::flag_flow_control and whose message lands in a group whose
  /// queue holds `pause_percent` % of group_queue_msgs or _bytes is sent
  /// PAUSE for that group, and RESUME once the queue is down to
  /// `resume_percent` %. Its confirmed publishes to a group past the pause
  /// mark get CONFIRM 103 at once (nothing of them delivered: it sends
  /// again); its plain ones are still taken up to the group's limits (what
  /// was on the way when it was told). 0: no flow control (as before:
  /// past the limits, dropped and counted).
  std::uint32_t pause_percent = 50;
  std::uint32_t resume_percent = 25;
  /// At-least-once defaults (a SUB may override): JetStream's AckWait is
  /// 30 s; its MaxDeliver is unlimited, plexus dead-letters after 5.
  milliseconds ack_wait{30000};
  std::uint32_t max_deliver = 5;
  /// Dedup window by msg id, scoped to the publisher (JetStream: 2
  /// minutes). It keeps ids and outcomes, never payloads: at most
  /// `dedup_entries` ids and `dedup_bytes` of ids and bookkeeping
  /// (about 128 bytes an entry besides its id and publisher).
  milliseconds dedup_window{120000};
  std::size_t dedup_entries = 262144;
  std::size_t dedup_bytes = 64u << 20;
  /// Peer brokers are admitted only with a PEER_HELLO that proves this
  /// secret (HMAC-SHA256 of the hello under it; the secret itself never
  /// travels). Empty: no peer is admitted, every PEER_HELLO is refused.
  /// Every broker of a cluster has the same one.
  std::string cluster_secret;
  /// Bad frames a connection may send before it is dropped. With `auth`,
  /// permission denials (ERR 114) count against the same budget.
  std::size_t error_budget = 100;
  /// Per-identity permissions (brokers/PROTOCOL.md, "Authentication"). The
  /// shell admits connections and names their users with identify().
  /// nullopt: no authentication, every client may do everything.
  std::optional<auth_policy> auth;
  /// With `auth`: requests a connection was delivered and may answer once
  /// (allow_responses), at most this many per connection (the oldest go
  /// first, counted), each until its deadline or, without one, this long.
  std::size_t max_open_replies = 65536;
  milliseconds reply_window{120000};
  /// Client sessions (connections past HELLO; peer links aside) at once,
  /// and, with auth, per user (0: only the total applies). A HELLO past
  /// either is answered ERR 103 naming the limit; the connection gets no
  /// session (only HELLO again is heard) and costs no more than its socket.
  std::size_t max_connections = 65536;
  std::size_t max_connections_per_user = 0;
  milliseconds stats_interval{1000};
  /// Durable queue groups. The core asks the shell's store to keep their
  /// messages (take_store_ops) and confirms a publish they capture only
  /// once the store says it is durable (stored).
  std::vector<durable_config> durables;
  /// The shell keeps a store: durable queues may also be declared at run
  /// time ($SYS.queue.add), their declarations kept there.
  bool store = false;
};

struct message; // a published message, shared by all its deliveries

/// One envelope for one connection. Compact (64 bytes: queues hold many);
/// header() builds its wire header when it is sent, with views into `msg`
/// or `aux`, which keep what they point to alive.
struct output {
  conn_id to = 0;
  wire::op kind = wire::op::ping;
  std::uint32_t sid = 0;
  std::uint32_t delivery = 0;
  std::uint32_t code = 0;
  std::uint64_t seq = 0;
  std::shared_ptr<const message> msg; // MSG and CONFIRM
  std::shared_ptr<const void> aux;    // ERR and BYE texts, WELCOME details

  [[nodiscard]] wire::header header() const;
  [[nodiscard]] std::string_view payload() const noexcept;
  /// Appends the encoding of header() to `out`; a MSG's is built around
  /// the fields its message encoded once for all its deliveries.
  void encode_header(std::string& out) const;
  /// Adds header and payload to a batch frame, as encode_header does.
  void add_to(wire::batch_writer& w) const;
};

/// How many outputs from the front of `outs` can go as one MSG run
/// (PROTOCOL.md "MSG runs"): MSGs to one subscription with the same
/// message fields and delivery count, whose seqs follow one another (or
/// are all 0), at most `max` of them, their payloads within `bytes` (each
/// counted with its 5-byte bin header; the first is always taken). 1 when
/// the front is anything else or stands alone.
[[nodiscard]] std::size_t msg_run_length(std::span<const output> outs, std::size_t max,
                                         std::size_t bytes) noexcept;
/// Adds `run` (what msg_run_length counted) to a batch frame as one entry.
void add_msg_run(wire::batch_writer& w, std::span<const output> run);
/// Adds outputs from the front of `outs` to the batch frame `w` (begun,
/// not finished): at most `max`, within about `max_bytes` (the first
/// always), a subscription's consecutive MSGs as runs when `runs` (the
/// connection reads them). A run the bytes cut short ends the frame: it
/// goes on, as a run, in the next. Returns how many outputs it took.
std::size_t fill_batch(wire::batch_writer& w, std::span<const output> outs, std::size_t max,
                       std::size_t max_bytes, bool runs);

struct counters {
  std::uint64_t msgs_in = 0, bytes_in = 0;       // PUB payloads accepted
  std::uint64_t msgs_out = 0, bytes_out = 0;     // MSG payloads queued
  std::uint64_t bad_frames = 0;
  std::uint64_t slow_consumer_drops = 0;
  std::uint64_t slow_consumer_disconnects = 0;
  std::uint64_t group_queue_drops = 0;
  // Flow control: PAUSEs and RESUMEs sent; confirmed publishes refused
  // (103) before routing because a group they match is past its pause
  // mark; plain messages of a paused publisher dropped at the group's
  // limits (it sent on after PAUSE; also in group_queue_drops); the most
  // messages one group's queue ever held.
  std::uint64_t pauses = 0, resumes = 0, paused_refusals = 0, flow_overruns = 0;
  std::uint64_t group_queue_peak = 0;
  std::uint64_t expired = 0;
  std::uint64_t no_responders = 0;
  std::uint64_t no_interest = 0;
  std::uint64_t durable_unreachable = 0; // matched a durable whose home was out of reach: 116
  std::uint64_t queue_admin = 0; // $SYS.queue.add / rm requests answered
  std::uint64_t duplicates = 0;
  std::uint64_t dedup_evictions = 0; // ids forgotten before their window ended (a bound was hit)
  std::uint64_t acks = 0, nacks = 0;
  std::uint64_t late_acks = 0; // for a delivery already redelivered or acked
  std::uint64_t redeliveries = 0;
  std::uint64_t ack_timeouts = 0;
  std::uint64_t dead_letters = 0;
  std::uint64_t dead_letters_dropped = 0; // no subscriber on $DLQ.<topic>
  std::uint64_t confirms = 0;
  std::uint64_t connections_opened = 0, connections_closed = 0;
  std::uint64_t heartbeat_timeouts = 0;
  // The mesh.
  std::uint64_t forwarded = 0;     // FWDs sent to peers
  std::uint64_t forwards_in = 0;   // FWDs received from peers
  std::uint64_t forwards_denied = 0; // FWDs whose user this broker's policy refuses
  std::uint64_t relays = 0;        // CONFIRM_RELAYs sent
  std::uint64_t late_relays = 0;   // for a forward already settled or routed again
  std::uint64_t rerouted = 0;      // forwards routed again: the peer was lost or returned them
  std::uint64_t peer_links_lost = 0;
  std::uint64_t self_links = 0;    // a seed that was this broker
  std::uint64_t peers_refused = 0; // PEER_HELLOs without a valid proof of the cluster secret
  std::uint64_t connections_refused = 0; // HELLOs past max_connections (or the user's share)
  // Authentication (config::auth).
  std::uint64_t permission_denied = 0;    // ERR 114s: PUB, SUB, group joins, HELLOs refused
  std::uint64_t open_replies_dropped = 0; // answerable requests forgotten: a bound was hit
};

struct gauges {
  std::size_t connections = 0;
  std::size_t subscriptions = 0;
  std::size_t groups = 0;
  std::size_t pending_msgs = 0;   // all outbound queues
  std::size_t pending_bytes = 0;
  std::size_t group_queued = 0;   // waiting for credit
  std::size_t unacked = 0;
  std::size_t dedup_entries = 0;
  std::size_t dedup_bytes = 0;
  std::size_t peers = 0;           // peer brokers with a live link
  std::size_t peer_routes = 0;     // their interests and group shares
  std::size_t forwards_unsettled = 0;
};

struct peer_stats {
  std::string id;
  std::size_t links = 0, interests = 0, groups = 0, unsettled = 0;
  std::uint64_t fwd_out = 0, fwd_in = 0;
};

struct connection_stats {
  conn_id id = 0;
  std::string node;
  std::string user; // as identify() named it; empty when never identified
  std::uint64_t permission_denied = 0;
  std::uint64_t msgs_in = 0, msgs_out = 0, bad_frames = 0;
  std::size_t subscriptions = 0, pending_msgs = 0, pending_bytes = 0, unacked = 0;
  std::uint64_t drops = 0; // messages dropped because its queue was full
  bool flow_control = false;  // its HELLO said wire::flag_flow_control
  std::size_t paused = 0;     // groups it is paused on now
  std::uint64_t pauses = 0;   // PAUSEs sent to it
  /// Delivery -> ACK of its deliveries; null until it ACKs one. Valid
  /// until the core is next given an input.
  const observe::latency_histogram* ack_latency = nullptr;
};

class core {
public:
  explicit core(config cfg);
  ~core();
  core(const core&) = delete;
  core& operator=(const core&) = delete;

  /// A decoded envelope from a connection (a new id is a new connection).
  void receive(conn_id from, const wire::entry& e, time_point now);
  /// A frame from `from` that did not decode: answered with ERR, counted;
  /// past the error budget the connection is closed.
  void reject(conn_id from, const wire::decode_error& err, time_point now);
  /// With config::auth: the shell admitted connection `c` as `user` (call
  /// it before its first receive()). A user the policy does not know, like
  /// a connection never identified, may only say HELLO, PING and BYE.
  /// Without auth the name is only recorded (connection_stats::user).
  void identify(conn_id c, std::string_view user, time_point now);
  /// The transport lost the connection.
  void disconnected(conn_id c, time_point now);
  /// Timers: ack timeouts, delayed NACKs, heartbeats, dedup expiry, stats.
  void tick(time_point now);
  /// Says BYE to every connection (clean shutdown).
  void shutdown(time_point now);
  /// The shell connected a link to a peer broker (a seed) as `c`: the core
  /// says PEER_HELLO and its interest on it. Inbound links need no call:
  /// a connection whose first envelope is PEER_HELLO is one.
  void dial(conn_id c, time_point now);
  /// Links that turned out to reach this very broker (a seed naming
  /// itself) since the last call: the shell stops dialing them.
  [[nodiscard]] std::vector<conn_id> take_self_links();

  // ------------------------------------------------ durable queues (issue #19)
  /// At start, before any input: a message the store recovered. Kept in
  /// its durable, redelivered when members come; its msg id is remembered
  /// (a re-send is a duplicate). False, with `why` set, for a group no
  /// durable of this config has or a body that does not decode: the
  /// message stays in the store, untouched (the shell says so).
  bool restore(std::uint64_t id, std::string_view group, std::string_view body, time_point now,
               std::string& why);
  /// Before restore(): how many messages the store gives back. Only the
  /// last dedup_entries of them are remembered in the dedup window (the
  /// older ones would be evicted by them before any input; counted as
  /// evictions), which spares a million-message recovery most of its
  /// dedup work.
  void restoring(std::size_t count);
  /// After restore(): the id the store gives its next append.
  void store_ids_from(std::uint64_t next_id);
  /// Appends and acks for the store, in order, since the last call.
  [[nodiscard]] std::vector<store_op> take_store_ops();
  /// Every append up to `durable_id` is durable: their publishers' confirms
  /// may say 0 now.
  void stored(std::uint64_t durable_id, time_point now);
  [[nodiscard]] std::vector<durable_stats> durables() const;

  /// When tick() next has work to do.
  [[nodiscard]] time_point next_tick() const noexcept;

  /// Hands each connection's queued outputs to `send`, which returns how
  /// many it took (fewer when the transport would block: the rest stay
  /// queued for the next call).
  template <class Send>
  void flush(Send&& send) {
    for (auto c : ready_connections()) {
      auto pending = queued(c);
      if (!pending.empty()) consume(c, send(c, pending));
    }
  }

  /// True while some connection has outputs the transport has not taken.
  [[nodiscard]] bool has_output() const noexcept;
  /// Whether `c`'s HELLO said it reads MSG runs (wire::flag_msg_runs).
  [[nodiscard]] bool takes_msg_runs(conn_id c) const noexcept;

  /// Connections the core closed since the last call (BYE already queued).
  [[nodiscard]] std::vector<conn_id> take_closed();
  /// Connections the core has forgotten since the last call: closed, and
  /// their BYE sent (or given up on). The shell may forget their address
  /// now, not before: the BYE still needs it.
  [[nodiscard]] std::vector<conn_id> take_gone();

  [[nodiscard]] const counters& stats() const noexcept;
  /// Permission denials (ERR 114) by user, since the start; connections
  /// never identified count under "". For per-user metrics.
  [[nodiscard]] const std::map<std::string, std::uint64_t>& denied_by_user() const noexcept;
  /// Delivery -> ACK, every at-least-once delivery ACKed here.
  [[nodiscard]] const observe::latency_histogram& ack_latency() const noexcept;
  [[nodiscard]] gauges current() const;
  [[nodiscard]] std::vector<connection_stats> connections() const;
  [[nodiscard]] std::vector<peer_stats> peers() const;
  [[nodiscard]] const config& settings() const noexcept;

private:
  [[nodiscard]] std::vector<conn_id> ready_connections();
  [[nodiscard]] std::span<const output> queued(conn_id c);
  void consume(conn_id c, std::size_t n);

  struct state;
  std::unique_ptr<state> s_;
};

/// The `auth` of a PEER_HELLO: HMAC-SHA256 under the cluster secret over a
/// context string, the sender's id, incarnation and hello number (the
/// secret itself never travels). See brokers/PROTOCOL.md, "Cluster".
[[nodiscard]] std::string peer_hello_proof(std::string_view secret, std::string_view id,
                                           std::uint64_t incarnation, std::uint32_t hello_no);

/// Counters, gauges and the first connections as one JSON object: what the
/// core publishes on $SYS.broker.<id>.stats every stats_interval.
[[nodiscard]] std::string stats_json(const core& b, time_point now);

} // namespace plexus::broker
