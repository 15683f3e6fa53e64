// SPDX-License-Identifier: Apache-2.0
#pragma once

// The client connector's session logic, sans-IO: the handshake, the
// subscriptions and unconfirmed publishes a new session restores, the
// confirm window's entries and open requests, failover between the
// endpoints a broker advertises, heartbeats both ways and the broker's
// liveness, and the delivery tags of an ended session.
//
// Inputs come with their time: envelopes from the outbox, what the broker
// sent (decoded), a lost link, a handler's return, clock ticks. Outputs:
// frames to write (next_frame/wrote) and commands for the shell (open or
// close the socket, run a confirm's or a request's handler, report).
// No socket, no thread, no clock: connector.cpp is its I/O shell, and the
// unit tests and a fuzzer drive it alone.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "envelope.hpp"
#include "plexus/client.hpp"

namespace plexus::detail {

/// Why a client cannot dial `endpoint`, as one line for a user
/// ("bad broker endpoint '...': expected tcp://HOST:PORT, ..."), or empty
/// when it can: the checks ZeroMQ's connect makes (and throws on), done
/// before any socket or thread exists.
[[nodiscard]] std::string endpoint_problem(std::string_view endpoint);

/// What the core needs of client_options, and who it is.
struct connector_config {
  std::string node_id;
  /// HELLO's seq: the scope of this client's msg ids at the broker, kept
  /// across reconnects and failovers.
  std::uint64_t lineage = 1;
  /// Where to connect: the first, then fallbacks; WELCOME adds more.
  std::vector<std::string> endpoints;
  std::string inbox_prefix; // "_INBOX.<node>.": replies to requests
  std::chrono::milliseconds heartbeat{250};
  std::uint32_t liveness = 3;
  std::chrono::milliseconds silence_timeout{3000};
  std::chrono::milliseconds reconnect_min{100}, reconnect_max{5000};
  /// Largest batch frame written (the envelopes of one frame are bounded
  /// by this and by max_batch_envelopes).
  std::size_t max_batch_bytes = 32 * 1024;
  std::size_t max_batch_envelopes = 256;
  /// CONFIRM 115 (`full`) or 116 (`unavailable`): sent again after min, doubling to max (see
  /// client_options::retry_unkept).
  bool retry_unkept = true;
  std::chrono::milliseconds unkept_retry_min{50}, unkept_retry_max{2000};
  /// Flow control (PROTOCOL.md "Flow control"): HELLO says so, and PUBs
  /// to a queue group the broker paused are held here until it resumes.
  bool flow_control = true;
  /// With flow control: PUBs written that the broker has not read yet, at
  /// most (envelopes, payload bytes; 0: no bound). The broker answers
  /// PINGs in order, so a PING written after PUB n is a marker: its PONG
  /// says the broker has read up to n (and any PAUSE they caused is here).
  /// A PING goes after every publish_window / 4 PUBs. This bounds what a
  /// PAUSE finds still on its way, whatever ZeroMQ and TCP buffer.
  std::size_t publish_window = 8192;
  std::size_t publish_window_bytes = 8u << 20;
  /// CONFIRM 103 (`overloaded`): sent again with the same backoff as
  /// unkept ones, at once when the broker resumes (see
  /// client_options::retry_overloaded).
  bool retry_overloaded = true;
};

/// Read by client::stats() on any thread.
struct connector_counters {
  std::atomic<std::uint64_t> errors{0}, reconnects{0}, failovers{0}, resent{0}, stale_acks{0},
    broker_dropped{0}, sessions_lost{0}, stalls{0}, unkept_retries{0}, pauses{0},
    overload_retries{0}, window_waits{0};
};

/// What the shell carries out, in order.
namespace connector_cmd {
/// Close the socket (if any) and open one to `endpoint`.
struct dial {
  std::string endpoint;
};
/// Close the socket; a later tick() dials again.
struct hang_up {};
/// WELCOME: a session with `broker`. The shell hands the subscriptions
/// to restore() before anything else and wakes whoever waits to connect.
struct began {
  std::string broker;
  /// The broker's payload limit (WELCOME's max_payload; 0: not said).
  std::uint64_t max_payload = 0;
};
/// A confirmed publish is settled: its window slot is free; run `done`.
struct confirmed {
  client::confirm_handler done;
  std::uint32_t code = 0;
};
/// A window slot is free (a publish merged into one with its msg id).
struct slot_freed {};
/// A request is answered (or timed out, or had no responders).
struct replied {
  client::reply_handler done;
  reply answer;
};
/// News for client::on_error.
struct report {
  std::uint32_t code = 0;
  std::string text;
};
/// Flow control: the patterns the broker has paused now (empty: none).
/// The shell makes publish() wait (or drop, or fail) on matching topics.
struct flow {
  std::vector<std::string> paused;
};
} // namespace connector_cmd

using connector_command =
  std::variant<connector_cmd::dial, connector_cmd::hang_up, connector_cmd::began,
               connector_cmd::confirmed, connector_cmd::slot_freed, connector_cmd::replied,
               connector_cmd::report, connector_cmd::flow>;

class connector_core {
public:
  using time_point = std::chrono::steady_clock::time_point;

  explicit connector_core(connector_config cfg);

  // ------------------------------------------------------------ inputs

  /// Dials the first endpoint.
  void start(time_point now);
  /// Envelopes from the outbox (left empty). Settlements of an ended
  /// session are dropped; confirmed publishes and requests are remembered.
  void take(std::vector<envelope>& in);
  /// A frame arrived from the broker.
  void heard(time_point now);
  /// A frame that did not decode.
  void bad_frame() { ++counts_.errors; }
  /// A non-MSG envelope from the broker (WELCOME, CONFIRM, ERR, PING, PONG, BYE).
  void control(const wire::header& h, time_point now);
  /// A delivery on the reply inbox.
  void reply_arrived(const message_view& v);
  /// The socket reported its connection closed.
  void link_lost();
  /// A handler call returned: one that kept the I/O thread longer than the
  /// broker's heartbeat is reported as a stall. True when a PING is due
  /// (the shell then writes, and with it what the handlers queued).
  bool handler_returned(std::uint32_t sid, time_point now);
  /// Between handler calls: queues a PING when the broker has heard
  /// nothing for a heartbeat. True when one was queued.
  bool between_handlers(time_point now);
  /// Timers: dialing again, heartbeats, liveness, request deadlines.
  void tick(time_point now);
  /// After began: these SUBs go first, then every unconfirmed publish again.
  void restore(std::vector<envelope> subs);
  /// The client is closing: what is queued goes out, then BYE.
  void close();
  /// After the last write: what did not go out is dropped, open requests
  /// fail with status_disconnected.
  void finish();

  // ------------------------------------------------------------ outputs

  /// One frame: one envelope (header, and payload when it has one) or a
  /// batch of several (in `first`).
  struct frame {
    std::string_view first, second;
    bool two_parts = false;
  };
  /// The next frame to write, if any; valid until the next call.
  [[nodiscard]] std::optional<frame> next_frame();
  /// The frame next_frame gave went out.
  void wrote(time_point now);

  /// Commands since the last call, for the shell to carry out and clear.
  [[nodiscard]] std::vector<connector_command>& commands() noexcept { return cmds_; }
  /// Outbox envelopes written or dropped since the last call (for flush()).
  [[nodiscard]] std::uint64_t take_finished() noexcept { return std::exchange(finished_, 0); }
  /// Buffers of written envelopes, for the outbox to hand out again.
  [[nodiscard]] std::vector<std::string>& spent_buffers() noexcept { return spent_; }

  // ------------------------------------------------------------ state

  /// The session number in delivery tags: 1 .. 65535, new on every
  /// connection and every session the broker forgot.
  [[nodiscard]] std::uint16_t session() const noexcept { return session_; }
  [[nodiscard]] bool in_session() const noexcept { return welcomed_; }
  /// The shell has (should have) a socket.
  [[nodiscard]] bool linked() const noexcept { return linked_; }
  /// HELLO is not out yet: the shell wakes when the socket can write.
  [[nodiscard]] bool saying_hello() const noexcept { return linked_ && !hello_sent_; }
  /// The session is ending: stop reading, the next tick() hangs up.
  [[nodiscard]] bool ending() const noexcept { return want_reconnect_; }
  /// Envelopes wait for the session (or for room in the socket).
  [[nodiscard]] bool backlog() const noexcept { return !pending_.empty(); }
  [[nodiscard]] std::size_t queued() const noexcept { return pending_.size(); }
  /// PUBs held back because the broker paused their queue group.
  [[nodiscard]] std::size_t held() const noexcept { return held_.size(); }
  /// The patterns the broker has paused (PAUSE, until RESUME or the session ends).
  [[nodiscard]] const std::vector<std::string>& paused() const noexcept { return paused_; }
  [[nodiscard]] const std::string& endpoint() const noexcept { return connected_to_; }
  [[nodiscard]] const connector_counters& counts() const noexcept { return counts_; }
  [[nodiscard]] std::size_t unconfirmed() const noexcept { return unconfirmed_.size(); }
  [[nodiscard]] std::size_t open_requests() const noexcept { return requests_.size(); }
  [[nodiscard]] std::chrono::milliseconds broker_heartbeat() const noexcept { return broker_heartbeat_; }

private:
  using unconfirmed_map = std::map<std::string, envelope, std::less<>>;

  void dial(time_point now);
  void begin_session();
  void hang_up(time_point now);
  void queue_control(const wire::header& h);
  void queue_ping();
  void remember_unconfirmed(envelope& e);
  void settle(unconfirmed_map::iterator it, std::uint32_t code);
  void retry_later(unconfirmed_map::iterator it, time_point now, bool overloaded);
  // Flow control.
  void on_pause(std::string_view pattern);
  void on_resume(std::string_view pattern, time_point now);
  void unpause(); // the session ended: nothing is paused, held PUBs go back to pending_
  [[nodiscard]] bool held_back(const envelope& e) const;
  void queue_pub(envelope e); // to held_ if paused, else pending_
  void announce_flow();
  [[nodiscard]] bool window_full(std::size_t more_msgs, std::size_t more_bytes) const noexcept;
  [[nodiscard]] bool marks() const noexcept { return cfg_.flow_control && cfg_.publish_window >= 4; }
  void resend_due(time_point now);
  void complete_request(std::string_view inbox, reply r);
  void keep_alive(time_point now);
  [[nodiscard]] bool broker_silent(time_point now) const;
  void expire_requests(time_point now);
  void report(std::uint32_t code, std::string text);

  connector_config cfg_;
  connector_counters counts_;
  std::vector<connector_command> cmds_;

  std::vector<std::string> endpoints_;
  std::size_t current_ = 0;
  std::string connected_to_, last_welcomed_;
  bool linked_ = false, welcomed_ = false, hello_sent_ = false, want_reconnect_ = false,
       closing_ = false, bye_written_ = false;
  std::uint16_t session_ = 0;
  std::chrono::milliseconds backoff_, broker_heartbeat_{1000};
  time_point next_attempt_{}, last_heard_{}, last_sent_{}, last_ping_{}, first_unanswered_ping_{},
    turn_started_{};

  // Control frames go before data: HELLO, PING, PONG (encoded), and BYE
  // after everything when closing.
  struct control_frame {
    wire::op kind;
    std::string bytes;
  };
  std::deque<control_frame> controls_;
  std::deque<envelope> pending_;
  unconfirmed_map unconfirmed_;
  // Msg ids to send again, when; true for 103 (overloaded), false for 115/116.
  std::multimap<time_point, std::pair<std::string, bool>> unkept_retries_;
  std::vector<std::string> paused_; // patterns the broker paused
  std::deque<envelope> held_;       // PUBs to them, in order
  // The publish window: PUBs (and their bytes) written in this session;
  // for each PING written and not answered yet, those counts when it went;
  // the counts the last PONG confirmed; PUBs written since the last PING.
  std::uint64_t pubs_written_ = 0, pub_bytes_written_ = 0, pubs_read_ = 0, pub_bytes_read_ = 0;
  std::deque<std::pair<std::uint64_t, std::uint64_t>> ping_marks_;
  std::size_t since_mark_ = 0;
  bool window_blocked_ = false; // counted once per wait
  std::unordered_map<std::uint64_t, std::pair<time_point, client::reply_handler>> requests_;

  // What next_frame gave: a control, one envelope, or a batch of `batched_`.
  enum class given { none, control, one, batch, bye } given_ = given::none;
  std::size_t batched_ = 0;
  std::string batch_, bye_;
  std::uint64_t finished_ = 0;
  std::vector<std::string> spent_;
};

} // namespace plexus::detail
