// SPDX-License-Identifier: Apache-2.0
#pragma once

// The core's private state, shared by core.cpp (connections, subscriptions,
// timers), liveness.cpp (heartbeats, slow-consumer notices), routing.cpp
// (publish, fan-out, queue groups, confirms), acks.cpp (at-least-once:
// acks, nacks, redelivery, dead letters) and ../cluster/peers.cpp (the peer
// mesh: admission, interest, forwarding, relays).

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core.hpp"
#include "dedup.hpp"
#include "pattern_trie.hpp"
#include "unacked.hpp"

namespace plexus::broker {

/// A published message, stored once and shared by every delivery. Its
/// bytes live in the same allocation, right after it: its MSG fields,
/// encoded once (the views point into them), then the payload (copy_of).
struct peer;
struct durable_queue;

struct message : std::enable_shared_from_this<message> {
  std::string_view topic, msg_id, reply_to, traceparent, payload;
  // Whose msg id this is (see dedup_key): the publishing connection's
  // scope, or the one a FWD carries. Travels in FWD, never in MSG.
  std::string_view publisher;
  // With auth: the user whose connection published it (or the one a FWD
  // names); FWD carries it so every broker checks it against its policy.
  std::string_view user;
  wire::string_map_view headers;
  std::uint64_t deadline_ns = 0;
  // The fields above as every MSG of it says them: each delivery's header
  // only adds its sid, seq and delivery count.
  wire::encoded_msg_fields encoded;
  // Publisher confirms: CONFIRM goes to `confirm_to` once every
  // at-least-once delivery is settled.
  conn_id confirm_to = 0;
  bool confirm = false;
  // A shared id's duplicates that came while it was in flight, each from
  // another publisher: their CONFIRMs say its outcome too.
  std::unique_ptr<std::vector<conn_id>> also_confirm;
  std::uint32_t unsettled = 0;
  status outcome = status::ok;
  // A message a peer forwarded (FWD): it goes to local clients only, and
  // with `relay` its outcome goes back as CONFIRM_RELAY(relay_seq).
  peer* from = nullptr;
  std::uint64_t relay_seq = 0;
  bool relay = false;
  // A durable queue's own copy (durable.cpp): kept in the store as
  // `store_id` since `kept_at`; its settling ACKs it there.
  durable_queue* durable = nullptr;
  std::uint64_t store_id = 0;
  time_point kept_at{};

  static std::shared_ptr<message> copy_of(const wire::header& h, std::string_view payload,
                                          std::string_view publisher = {},
                                          std::string_view user = {},
                                          std::string_view extra_headers = {},
                                          std::uint32_t extra_count = 0);
};
using message_ptr = std::shared_ptr<message>;

/// What MSG and FWD carry of a message (core.cpp).
void carry_message(const message& m, wire::header& h);

/// $SYS.queue.add or $SYS.queue.rm: a request the broker answers itself
/// (queue_admin.cpp).
[[nodiscard]] bool is_queue_admin(std::string_view topic) noexcept;
/// The store group that keeps run-time declarations of durable queues.
[[nodiscard]] bool is_declaration_group(std::string_view group) noexcept;

/// What an ERR or BYE says (the aux of its output).
struct control_text {
  std::string text, msg_id, reply_to;
  std::uint32_t count = 0; // ERR 112: how many messages were dropped
};

/// What an INTEREST+ or INTEREST- says (its aux).
struct interest_text {
  std::string pattern, queue;
  std::uint32_t credit = 0;
};

/// What every WELCOME says (the aux of its outputs), built once; also the
/// aux of PEER_HELLO and CONFIRM_RELAY, which need the broker's id.
struct welcome_info {
  std::string node;
  std::uint32_t heartbeat_ms = 0;
  std::uint64_t max_payload = 0;
  std::uint32_t flags = 0; // WELCOME only: wire::flag_flow_control
  std::string brokers_raw;
  wire::string_list_view brokers;
};

/// What a PEER_HELLO says (its aux): the broker's details and the proof
/// that it knows the cluster secret, made for this hello's number.
struct hello_info {
  std::shared_ptr<const welcome_info> welcome;
  std::string auth;
};

struct group;

/// What the trie stores: a local plain subscription, a queue group (local
/// and peer members), or a peer's plain interest in a pattern.
enum class route_kind : std::uint8_t { subscription, group, interest };
struct route {
  route_kind kind = route_kind::subscription;
};

/// A peer broker's interest in one pattern: some of its clients subscribe
/// (plainly) to it, so matching messages are forwarded there once.
struct interest : route {
  peer* owner = nullptr;
  std::string pattern;
};

/// A peer's share of a queue group: its members' aggregate capacity (what
/// it advertised) against which this broker forwards, and the forwards not
/// yet settled. Credit-based flow control, one hop away.
struct remote_member {
  peer* owner = nullptr;
  std::uint32_t capacity = 0;
  std::uint32_t outstanding = 0;
};

struct connection;

/// An unacked at-least-once delivery.
struct inflight {
  message_ptr msg;
  std::uint32_t delivery = 1;
  time_point deadline{};
};

struct subscription : route {
  connection* owner = nullptr; // owns this subscription
  conn_id conn = 0;
  std::uint32_t sid = 0;
  std::string pattern;
  group* grp = nullptr;
  wire::ack_mode ack = wire::ack_mode::none;
  milliseconds ack_wait{0};
  std::uint32_t max_deliver = 0;
  std::uint32_t credit = 0;       // group members only
  std::uint64_t delivered = 0;
  // Unacked deliveries by seq. Seqs grow with time and ack_wait is fixed
  // per subscription, so the first is the next to time out.
  seq_ring<inflight> unacked;
};

/// An undelivered message waiting in a group for a member with credit.
struct queued_msg {
  message_ptr msg;
  std::uint32_t delivery = 0; // deliveries so far
};

/// What a FWD for a group says besides the message (its aux), built once.
struct forward_info {
  std::string origin; // this broker's id
  std::string queue;  // the group's name; empty for plain interest
};

/// Members subscribed with the same (pattern, queue name). Each message
/// goes to one member, only against that member's credit: a local member
/// first, else a peer broker with capacity left (`remote`).
struct group : route {
  std::string key, pattern, name;
  std::vector<subscription*> members;
  std::size_t next = 0; // round robin
  std::vector<remote_member> remote;
  std::size_t next_remote = 0;
  std::deque<queued_msg> waiting;
  std::size_t waiting_bytes = 0;
  std::shared_ptr<const forward_info> fwd; // aux of this group's FWDs
  std::uint32_t advertised = 0;            // capacity last told to peers
  bool announced = false;                  // peers know this group here
  bool dirty = false;                      // listed in state::dirty_groups
  // A durable queue's group (durable.cpp): never erased, never shared with
  // peers, its queue bounded by the durable's limits instead.
  durable_queue* dur = nullptr;
  // Flow control (routing.cpp): publishers told PAUSE for this group, each
  // once, until RESUME; and what their PAUSE and RESUME say, made once.
  std::vector<connection*> paused;
  std::shared_ptr<const interest_text> flow_aux;
};

/// A durable queue group (config::durables): its group holds what waits
/// and its members; these count what it keeps, in memory and in the store.
struct durable_queue {
  durable_config cfg;
  group* grp = nullptr;
  std::size_t messages = 0, bytes = 0;
  std::uint64_t stored = 0, acked = 0, full = 0, aged_out = 0, restored = 0;
  std::uint64_t last_route = 0; // route_gen of its last capture: one per message
  // Declared at run time ($SYS.queue.add): its declaration's record in the
  // store (acked when it is removed). 0: from the configuration.
  std::uint64_t decl_id = 0;
};

/// A durable queue another broker keeps (durable_config::home).
struct remote_durable {
  std::string name, home;
};

/// The outbound queue of one connection: a vector with a moving head, so
/// the shell gets a contiguous span.
struct out_queue {
  std::vector<output> items;
  std::size_t head = 0;
  std::size_t bytes = 0;
  // Messages (MSG, FWD) and control frames, each against its own budget.
  std::size_t data_msgs = 0, data_bytes = 0, control_msgs = 0, control_bytes = 0;
  [[nodiscard]] std::size_t size() const noexcept { return items.size() - head; }
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }
  void clear() noexcept {
    items.clear(); // releases the messages now
    head = bytes = data_msgs = data_bytes = control_msgs = control_bytes = 0;
  }
};

/// A forward awaiting the peer's CONFIRM_RELAY.
struct forwarded {
  message_ptr msg;
  std::string group_key; // empty for plain interest
  std::uint32_t delivery = 0;
};

/// With auth: the requests delivered to a connection that it may answer
/// (allow_responses), by reply subject, each once and until its expiry;
/// at most config::max_open_replies, the oldest forgotten first.
struct open_replies {
  struct entry {
    time_point expires{};
    std::uint64_t gen = 0; // which `order` entry is this one's
  };
  std::unordered_map<std::string, entry> by_subject;
  std::deque<std::pair<std::uint64_t, std::string>> order; // oldest first; stale ones skipped
  std::uint64_t next_gen = 0;

  /// Returns how many were forgotten to make room (0 or 1).
  std::size_t open(std::string_view subject, time_point expires, std::size_t max);
  /// True (and forgets it) if `subject` is open and not expired at `now`.
  bool take(std::string_view subject, time_point now);
};

/// A connection is a client's, or one of the (at most two) links to a peer
/// broker: the one it dialed to us, or the one our server dialed to it.
enum class conn_role : std::uint8_t { client, peer_in, peer_out };

/// A peer broker, known by id for as long as this broker runs. It is up
/// while it has identified links; when one goes, all go (see unlink), its
/// interest goes and what was forwarded to it and not settled is routed
/// again. Every PEER_HELLO carries a number, higher each time its sender
/// says hello, and is followed by the sender's whole interest on that
/// link: a peer's interest is what followed its latest hello, plus the
/// updates after it on the same link (two links cannot reorder it).
struct peer {
  std::string id;
  std::uint64_t incarnation = 0; // from PEER_HELLO: a restart changes it
  std::vector<connection*> links; // identified links
  connection* send_link = nullptr; // where our latest hello went: we send here
  connection* recv_link = nullptr; // where its latest hello came: its interest
  std::uint32_t send_hello = 0, recv_hello = 0;
  std::unordered_map<std::string, std::unique_ptr<interest>> interests; // by pattern
  std::vector<std::string> groups; // keys of groups it is a remote member of
  std::vector<std::string> endpoints; // where its clients may fail over to
  seq_ring<forwarded> unsettled;
  std::uint64_t next_fwd = 1;
  std::uint64_t last_route = 0; // route_gen of its last FWD: one per message
  std::uint64_t fwd_out = 0, fwd_in = 0;
};

struct connection {
  conn_id id = 0;
  conn_role role = conn_role::client;
  peer* link_of = nullptr; // identified peer links
  std::uint32_t hello_no = 0; // the number of the PEER_HELLO we sent on it
  bool hello = false;
  bool closing = false; // closed: at most a BYE still goes out
  bool doomed = false;  // to be closed once the current input is handled
  std::string close_reason;
  std::string node;
  // Dedup scope of what it publishes (see on_hello): its node and lineage,
  // or, with no lineage, this very connection.
  std::string scope;
  time_point last_heard{}, last_sent{}, last_ping{};
  // Slow consumer drops: in all, and not yet told to the client (ERR 112).
  std::uint64_t drops = 0, unreported_drops = 0;
  time_point last_drop_notice{};
  std::unordered_map<std::uint32_t, std::unique_ptr<subscription>> subs;
  std::uint64_t next_seq = 1;
  out_queue out;
  bool ready = false; // listed in state::ready
  std::uint64_t msgs_in = 0, msgs_out = 0, bad_frames = 0;
  // Authentication: who the shell said it is (identify), its permissions
  // (null: unidentified or unknown, with auth on), its denials so far.
  std::string user;
  const user_permissions* perms = nullptr;
  std::uint64_t denied = 0;
  bool owns_node = false; // counted in state::node_owners
  // Flow control: its HELLO said wire::flag_flow_control; the groups it
  // was told PAUSE for (each lists it in group::paused); PAUSEs sent.
  bool flow_control = false;
  // Its HELLO said wire::flag_msg_runs: its MSGs may go as runs.
  bool msg_runs = false;
  std::vector<group*> paused_on;
  std::uint64_t pauses = 0;
  open_replies replies;
  // Delivery -> ACK of its deliveries; made at its first ACK (~7.5 KiB:
  // only consumers that ACK pay for it).
  std::unique_ptr<observe::latency_histogram> ack_latency;
};

/// A NACK with delay: redelivered when `due`.
struct delayed {
  message_ptr msg;
  conn_id conn = 0;      // the subscription it came from
  std::uint32_t sid = 0;
  std::string group_key; // empty for a plain subscription
  std::uint32_t delivery = 0;
};

struct core::state {
  state(config c, const core& self);

  const core* owner; // for stats_json
  config cfg;
  std::shared_ptr<const welcome_info> welcome;
  counters stats;
  observe::latency_histogram ack_latency; // every connection's, delivery -> ACK
  std::unordered_map<conn_id, std::unique_ptr<connection>> conns;
  /// The connection find() returned last: a batch's entries all come from
  /// one connection, one hash lookup for all. forget() clears it.
  connection* last_found = nullptr;
  std::unordered_map<std::string, std::unique_ptr<group>> groups;
  pattern_trie<route> trie;
  // The mesh (../cluster/peers.cpp).
  std::map<std::string, std::unique_ptr<peer>, std::less<>> peers;
  std::uint64_t incarnation = 0;
  std::shared_ptr<const forward_info> plain_fwd;
  /// Local plain subscriptions per pattern: a pattern is advertised to
  /// peers while its count is above zero.
  std::unordered_map<std::string, std::uint32_t> local_patterns;
  std::vector<group*> dirty_groups; // capacity changed: tell peers at flush
  std::vector<conn_id> self_links;  // links that reached this very broker
  std::uint64_t route_gen = 0;      // one per route_message: one FWD per peer
  std::uint32_t hellos = 0;         // PEER_HELLOs said: their numbers
  std::vector<connection*> dialing; // links we dialed, not yet answered
  dedup_window dedup;
  std::string key_scratch; // dedup keys are built here
  std::multimap<time_point, delayed> delayed_nacks;
  // Durable queues (durable.cpp): by name; what the store is asked, in
  // order; the publishes each waiting for its copy's append to be durable.
  std::map<std::string, std::unique_ptr<durable_queue>, std::less<>> durables;
  // Durables kept by another broker (`home`): their subjects, so a publish
  // this broker could not forward to the home is answered 116, not 101.
  std::map<std::string, std::unique_ptr<remote_durable>, std::less<>> durable_homes;
  pattern_trie<remote_durable> remote_trie;
  std::vector<store_op> store_ops;
  std::deque<std::pair<std::uint64_t, message_ptr>> awaiting_store; // by id
  std::deque<std::pair<std::uint64_t, std::string>> awaiting_decl;  // by id: reply-to of its "created"
  std::uint64_t next_store_id = 1;
  std::size_t restore_left = 0; // see core::restoring
  time_point next_age_check{};
  std::vector<conn_id> ready;
  std::vector<conn_id> closed;
  std::vector<conn_id> gone; // forgotten (see take_gone)
  std::vector<conn_id> doomed; // see request_close
  std::vector<route*> scratch; // reused by match
  std::vector<remote_durable*> remote_scratch;
  std::string shared_scope; // on_pub: a shared id's scope is built here
  time_point next_stats{};
  time_point now{};
  // Flow control: the publisher whose PUB is being routed, when it does
  // flow control (on_pub); the pause and resume marks of a group's queue.
  connection* publisher = nullptr;
  std::size_t pause_msgs = 0, pause_bytes = 0, resume_msgs = 0, resume_bytes = 0;
  // Authentication (config::auth): on or off for the core's life.
  bool auth = false;
  std::map<std::string, std::uint64_t> denied_by_user;
  /// Node ids of live client sessions: the user holding each, and how many
  /// of its connections say it. A node is one user's at a time.
  struct node_owner {
    std::string user;
    std::size_t conns = 0;
  };
  std::unordered_map<std::string, node_owner> node_owners;
  /// Client sessions (connections past HELLO), in all and by user: what
  /// max_connections and max_connections_per_user bound.
  std::size_t sessions = 0;
  std::unordered_map<std::string, std::size_t> sessions_by_user;
  /// Whether `c` may start a session (refused: answered, left without one).
  bool admit_session(connection& c, const wire::header& h);

  // core.cpp (heartbeats, holds_unacked and report_drops: liveness.cpp)
  /// The connection an input came from (opened on first sight), its
  /// liveness updated; null when it is already closed.
  connection* heard_from(conn_id c, time_point t);
  connection* find(conn_id c);
  connection& open(conn_id c);
  // Closing detaches subscriptions and redelivers, which must not happen
  // while a delivery loop holds pointers: code inside an input asks with
  // request_close(), and finish_closes() closes at the end of the input.
  void request_close(connection& c, std::string_view reason);
  void finish_closes();
  void close(connection& c, std::string_view reason); // may destroy c
  void forget(connection& c);
  void on_hello(connection& c, const wire::header& h);
  void on_sub(connection& c, const wire::header& h);
  void on_unsub(connection& c, const wire::header& h);
  void remove_subscription(connection& c, subscription& s);
  void on_credit(connection& c, const wire::header& h);
  void send_err(connection& c, status code, std::string_view text, const wire::header* about);
  void send_err(connection& c, std::uint32_t code, std::string text, const wire::header* about);
  bool enqueue(connection& c, output o, bool droppable);
  group& group_of(std::string_view pattern, std::string_view queue);
  void heartbeats();
  [[nodiscard]] static bool holds_unacked(const connection& c);
  void report_drops(connection& c);
  void publish_stats();
  /// An ERR 114 naming the user, counted (in all, per user, against the
  /// connection's error budget: past it the connection is closed).
  void deny(connection& c, std::string text, const wire::header* about);
  /// With auth: whether `c` may SUB as `h` asks (denied: answered).
  bool permit_sub(connection& c, const wire::header& h);
  void release_node(connection& c);

  // routing.cpp
  void on_pub(connection& c, const wire::entry& e);
  /// With auth: whether `c` may PUB as `h` asks (denied: answered).
  bool permit_pub(connection& c, const wire::header& h);
  std::size_t route_message(const message_ptr& m); // returns how many routes matched
  bool expired(const message& m) const;
  /// The group takes `q` (a new obligation): a member with credit gets it
  /// now, else it waits (at the front for a redelivery).
  void deliver_to_group(group& g, queued_msg q, const subscription* avoid, bool front);
  void drain_group(group& g);
  // Flow control (routing.cpp).
  [[nodiscard]] bool flow_on() const noexcept { return cfg.pause_percent != 0; }
  [[nodiscard]] bool past_pause_mark(const group& g) const noexcept;
  void pause(connection& c, group& g);
  /// RESUME to every publisher paused on `g`.
  void resume_all(group& g);
  /// RESUME when `g`'s queue is down to the resume mark.
  void maybe_resume(group& g);
  /// Forgets the pauses of `c` (closing, or a new session), saying nothing.
  void forget_pauses(connection& c);
  /// A group `topic` goes to whose queue is past its pause mark, or null.
  group* paused_route(std::string_view topic);
  bool deliver(subscription& s, const message_ptr& m, std::uint32_t delivery);
  void settle(message& m, status outcome);
  void note_outcome(message& m, status outcome); // settle() without letting go
  void send_confirm(const message_ptr& m);
  void send_confirm_to(conn_id to, const message_ptr& m);
  void publish_internal(std::string_view topic, std::string_view payload,
                        std::string_view headers = {}, std::uint32_t header_count = 0);

  // durable.cpp
  void setup_durables();
  /// Why `dc` cannot be a durable queue, or empty.
  [[nodiscard]] std::string durable_problem(const durable_config& dc) const;
  durable_queue& add_durable(const durable_config& dc);
  /// Drops a durable without members and what it keeps (acked in the store).
  void remove_durable(durable_queue& d);
  // queue_admin.cpp: $SYS.queue.add / $SYS.queue.rm requests, and the
  // declarations they keep in the store.
  void on_queue_admin(connection& c, const wire::header& h);
  void answer_admin(const wire::header& h, std::string_view reply, std::string_view failure);
  [[nodiscard]] bool restore_declaration(std::uint64_t id, std::string_view body, std::string& why);
  [[nodiscard]] durable_queue* durable_named(std::string_view name) const;
  /// `m` matched durable `d`: a copy is kept (appended, delivered to the
  /// group), `m` held until the append is durable; or, at a limit, 115.
  void capture(durable_queue& d, const message_ptr& m);
  /// A durable copy settled (ACKed, dead-lettered, expired): ACKed in the store.
  void release_durable(message& m);
  void age_out_durables();
  /// `m` was routed: a durable kept elsewhere that it matches, whose home
  /// did not get it forwarded (down, or no link yet), makes its outcome 116.
  void check_remote_durables(message& m);

  // ../cluster/peers.cpp
  void dial(connection& c);
  void on_peer_op(connection& c, const wire::entry& e);
  void on_peer_hello(connection& c, const wire::header& h);
  void on_interest(connection& c, const wire::header& h, bool add);
  void on_fwd(connection& c, const wire::entry& e);
  void on_relay(connection& c, const wire::header& h);
  void unlink(connection& c); // a closing link leaves its peer
  void peer_lost(peer& p);
  void say_peer_hello(connection& c);
  void forget_interest(peer& p);
  bool send_to_peer(peer& p, output o, bool droppable = false);
  void to_all_peers(const output& o); // interest updates
  void send_interest(connection& to); // our whole interest, after PEER_HELLO
  void advertise_pattern(std::string_view pattern, bool add);
  void advertise_group(group& g);
  void mark_dirty(group& g);
  void advertise_dirty();
  [[nodiscard]] std::uint32_t capacity(const group& g) const;
  void forward(peer& p, const message_ptr& m); // plain interest
  bool forward_to_group(group& g, const queued_msg& q);
  void route_from_peer(const message_ptr& m, std::string_view queue, std::uint32_t delivery);
  void send_relay(message& m);
  void send_relay(peer& p, std::uint64_t seq, status outcome);
  // With auth: may `user` (named by a peer's FWD) publish on `topic` here?
  [[nodiscard]] bool permit_forwarded(std::string_view user, std::string_view topic) const;
  void maybe_erase_group(group& g);
  void rebuild_welcome();

  // acks.cpp
  void on_ack(connection& c, const wire::header& h);
  void on_nack(connection& c, const wire::header& h);
  void ack_timeouts();
  void delayed_redeliveries();
  void retry(subscription& s, inflight f, std::string_view why);
  void redeliver(subscription* s, group* g, queued_msg q);
  void dead_letter(const message_ptr& m, std::uint32_t delivery, std::string_view why);
  void requeue_unacked(connection& c);
};

} // namespace plexus::broker
