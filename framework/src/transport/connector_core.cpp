// SPDX-License-Identifier: Apache-2.0
#include "connector_core.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <tuple>

namespace plexus::detail {

std::string endpoint_problem(std::string_view endpoint) {
  auto bad = [&](std::string_view why = {}) {
    std::string s = "bad broker endpoint '" + std::string{endpoint} + "': ";
    s += why.empty() ? "expected tcp://HOST:PORT, ipc://PATH or inproc://NAME" : why;
    return s;
  };
  auto rest = [&](std::string_view scheme) { return endpoint.substr(scheme.size()); };
  if (endpoint.starts_with("tcp://")) {
    auto hp = rest("tcp://");
    auto colon = hp.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return bad("expected tcp://HOST:PORT");
    // ZeroMQ's own check: these characters in the host (a name, IPv4,
    // [IPv6], an interface;source prefix), then a port.
    for (unsigned char ch : hp.substr(0, colon))
      if (!std::isalnum(ch) && std::string_view{".-:%;[]_*"}.find(static_cast<char>(ch)) == std::string_view::npos)
        return bad("expected tcp://HOST:PORT");
    auto port = hp.substr(colon + 1);
    unsigned n = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
    if (port.empty() || ec != std::errc{} || p != port.data() + port.size() || n == 0 || n > 65535)
      return bad("the port must be a number from 1 to 65535 (tcp://HOST:PORT)");
    return {};
  }
  if (endpoint.starts_with("ipc://")) {
    auto path = rest("ipc://");
    if (path.empty()) return bad("expected ipc://PATH");
    if (path.size() > 107) return bad("an ipc path has at most 107 bytes"); // sun_path
    return {};
  }
  if (endpoint.starts_with("inproc://")) {
    if (rest("inproc://").empty()) return bad("expected inproc://NAME");
    return {};
  }
  return bad();
}

connector_core::connector_core(connector_config cfg)
  : cfg_(std::move(cfg)), endpoints_(cfg_.endpoints), backoff_(cfg_.reconnect_min) {
  if (endpoints_.empty()) throw std::invalid_argument("connector: no endpoint");
  for (auto& e : endpoints_)
    if (auto why = endpoint_problem(e); !why.empty()) throw std::invalid_argument(why);
  cfg_.liveness = std::max(cfg_.liveness, 1u);
  cfg_.max_batch_envelopes = std::max<std::size_t>(cfg_.max_batch_envelopes, 1);
}

// ---------------------------------------------------------------- the link

void connector_core::start(time_point now) { dial(now); }

void connector_core::dial(time_point now) {
  connected_to_ = endpoints_[current_ % endpoints_.size()];
  linked_ = true;
  welcomed_ = false;
  want_reconnect_ = false;
  last_heard_ = now;
  last_ping_ = first_unanswered_ping_ = {};
  cmds_.emplace_back(connector_cmd::dial{connected_to_});
  begin_session();
}

void connector_core::begin_session() {
  session_ = static_cast<std::uint16_t>(session_ % 0xffff + 1); // 1 .. 65535: never 0
  // Deliveries of the ended session are unknown to the next one.
  std::uint64_t dropped = 0;
  std::erase_if(pending_, [&](const envelope& e) {
    if (!e.settles()) return false;
    ++counts_.stale_acks;
    dropped += e.counted;
    return true;
  });
  finished_ += dropped;
  controls_.clear();
  given_ = given::none;
  hello_sent_ = false;
  unpause(); // a new session starts unpaused, on both sides
  pubs_written_ = pub_bytes_written_ = pubs_read_ = pub_bytes_read_ = 0;
  ping_marks_.clear();
  since_mark_ = 0;
  wire::header h;
  h.kind = wire::op::hello;
  h.node = cfg_.node_id;
  h.heartbeat_ms = static_cast<std::uint32_t>(cfg_.heartbeat.count());
  h.seq = cfg_.lineage;
  if (cfg_.flow_control) h.flags = wire::flag_flow_control;
  queue_control(h);
}

void connector_core::hang_up(time_point now) {
  want_reconnect_ = false;
  ++counts_.reconnects;
  ++current_;
  // Unsent envelopes go: subscriptions and unconfirmed publishes are
  // restored after the next WELCOME; plain publishes are at most once,
  // and the broker redelivers what ACKs and NACKs would have settled.
  for (auto& e : pending_) {
    finished_ += e.counted;
    counts_.stale_acks += e.settles();
  }
  pending_.clear();
  for (auto& e : held_) finished_ += e.counted; // plain ones: at most once, as above
  held_.clear();
  unpause();
  controls_.clear();
  given_ = given::none;
  // A session that ends moves on to the next endpoint at once; only an
  // attempt that fails waits, longer each time.
  if (welcomed_) {
    backoff_ = cfg_.reconnect_min;
    next_attempt_ = now;
  } else {
    next_attempt_ = now + backoff_;
    backoff_ = std::min(backoff_ * 2, cfg_.reconnect_max);
  }
  linked_ = welcomed_ = hello_sent_ = false;
  cmds_.emplace_back(connector_cmd::hang_up{});
}

void connector_core::link_lost() {
  // Before WELCOME a broken attempt is the handshake timeout's to judge.
  if (welcomed_) want_reconnect_ = true;
}

// ---------------------------------------------------------------- from the outbox

void connector_core::take(std::vector<envelope>& in) {
  for (auto& e : in) {
    if (e.settles() && e.session != session_) {
      ++counts_.stale_acks;
      finished_ += e.counted;
      continue;
    }
    if (e.extras && e.extras->on_confirm) {
      remember_unconfirmed(e);
    } else if (e.extras && e.extras->on_reply) {
      requests_.emplace(e.extras->request_id,
                        std::make_pair(e.extras->request_deadline, std::move(e.extras->on_reply)));
    }
    queue_pub(std::move(e));
  }
  in.clear();
}

void connector_core::remember_unconfirmed(envelope& e) {
  auto [it, fresh] = unconfirmed_.try_emplace(e.extras->msg_id);
  if (fresh) {
    it->second = e.copy();
    it->second.extras = std::move(e.extras);
    return;
  }
  // A second publish with the same msg id gets the one CONFIRM the broker
  // sends for both.
  auto& done = it->second.extras->on_confirm;
  done = [first = std::move(done), second = std::move(e.extras->on_confirm)](std::uint32_t code) {
    first(code);
    second(code);
  };
  e.extras.reset();
  cmds_.emplace_back(connector_cmd::slot_freed{}); // one entry, one CONFIRM: one slot
}

void connector_core::settle(unconfirmed_map::iterator it, std::uint32_t code) {
  auto done = std::move(it->second.extras->on_confirm);
  unconfirmed_.erase(it);
  cmds_.emplace_back(connector_cmd::confirmed{std::move(done), code});
}

void connector_core::retry_later(unconfirmed_map::iterator it, time_point now, bool overloaded) {
  auto n = ++it->second.extras->unkept_retries; // 103s count here too: one backoff
  auto wait = cfg_.unkept_retry_min;
  for (std::uint32_t i = 1; i < n && wait < cfg_.unkept_retry_max; ++i) wait *= 2;
  unkept_retries_.emplace(now + std::min(wait, cfg_.unkept_retry_max),
                          std::make_pair(it->first, overloaded));
}

void connector_core::resend_due(time_point now) {
  while (!unkept_retries_.empty() && unkept_retries_.begin()->first <= now) {
    auto [id, overloaded] = std::move(unkept_retries_.begin()->second);
    unkept_retries_.erase(unkept_retries_.begin());
    // Settled meanwhile, or waiting for a session (which re-sends every
    // unconfirmed publish when it begins): nothing to do.
    auto it = unconfirmed_.find(id);
    if (it == unconfirmed_.end() || !welcomed_) continue;
    queue_pub(it->second.copy()); // held, if its group is still paused
    ++(overloaded ? counts_.overload_retries : counts_.unkept_retries);
  }
}

void connector_core::restore(std::vector<envelope> subs) {
  std::deque<envelope> again;
  for (auto& s : subs) again.push_back(std::move(s));
  for (auto& [id, e] : unconfirmed_) {
    again.push_back(e.copy());
    if (counts_.reconnects > 0) ++counts_.resent;
  }
  for (auto it = again.rbegin(); it != again.rend(); ++it) pending_.push_front(std::move(*it));
  given_ = given::none;
}

// ---------------------------------------------------------------- flow control

bool connector_core::held_back(const envelope& e) const {
  if (paused_.empty() || e.kind != wire::op::pub) return false;
  wire::header h;
  if (wire::decode_header(e.header(), wire::limits{}, h)) return false; // ours: never
  // A request is the broker's to answer (at once, when it cannot be taken).
  if (!h.reply_to.empty()) return false;
  for (auto& p : paused_)
    if (matches(p, h.topic)) return true;
  return false;
}

void connector_core::queue_pub(envelope e) {
  // Once one PUB of a topic is held, the later ones must be too (order).
  if (held_back(e)) held_.push_back(std::move(e));
  else pending_.push_back(std::move(e));
}

void connector_core::on_pause(std::string_view pattern) {
  if (std::find(paused_.begin(), paused_.end(), pattern) != paused_.end()) return;
  if (validate_pattern(pattern) != topic_errc::ok) return; // the decoder checked it
  ++counts_.pauses;
  paused_.emplace_back(pattern);
  // What waits to be written and goes to that group is held back now,
  // in order; the frame next_frame() gave (if any) is given again.
  std::deque<envelope> keep;
  for (auto& e : pending_) {
    if (held_back(e)) held_.push_back(std::move(e));
    else keep.push_back(std::move(e));
  }
  pending_.swap(keep);
  given_ = given::none;
  announce_flow();
}

void connector_core::on_resume(std::string_view pattern, time_point now) {
  auto it = std::find(paused_.begin(), paused_.end(), pattern);
  if (it == paused_.end()) return;
  paused_.erase(it);
  // What no paused pattern holds back goes first, in order: nothing of
  // its topics was written meanwhile.
  std::deque<envelope> still, go;
  for (auto& e : held_) {
    if (held_back(e)) still.push_back(std::move(e));
    else go.push_back(std::move(e));
  }
  held_.swap(still);
  for (auto r = go.rbegin(); r != go.rend(); ++r) pending_.push_front(std::move(*r));
  given_ = given::none;
  // Confirmed publishes refused with 103 need not wait out their backoff.
  std::vector<std::pair<std::string, bool>> due;
  for (auto r = unkept_retries_.begin(); r != unkept_retries_.end();) {
    if (r->second.second) {
      due.push_back(std::move(r->second));
      r = unkept_retries_.erase(r);
    } else {
      ++r;
    }
  }
  for (auto& d : due) unkept_retries_.emplace(now, std::move(d));
  resend_due(now);
  announce_flow();
}

void connector_core::unpause() {
  bool was = !paused_.empty();
  paused_.clear();
  for (auto r = held_.rbegin(); r != held_.rend(); ++r) pending_.push_front(std::move(*r));
  held_.clear();
  if (was) announce_flow();
}

void connector_core::announce_flow() { cmds_.emplace_back(connector_cmd::flow{paused_}); }

// ---------------------------------------------------------------- from the broker

void connector_core::heard(time_point now) {
  last_heard_ = now;
  turn_started_ = now; // the handlers' turn starts with the frame
}

void connector_core::control(const wire::header& h, time_point now) {
  switch (h.kind) {
    case wire::op::welcome: {
      if (welcomed_) break; // one per session
      welcomed_ = true;
      hello_sent_ = true;
      if (h.heartbeat_ms) broker_heartbeat_ = std::chrono::milliseconds{h.heartbeat_ms};
      if (!last_welcomed_.empty() && connected_to_ != last_welcomed_) ++counts_.failovers;
      last_welcomed_ = connected_to_;
      for (auto b : h.brokers.items()) {
        if (b.empty() || std::find(endpoints_.begin(), endpoints_.end(), b) != endpoints_.end())
          continue;
        // A broker's word is no reason to end this thread: a peer it
        // advertises that cannot be dialled is skipped, and said.
        if (auto why = endpoint_problem(b); !why.empty()) {
          ++counts_.errors;
          report(static_cast<std::uint32_t>(wire::errc::value_out_of_range),
                 "broker " + std::string{h.node} + " advertised a peer that is skipped: " + why);
          continue;
        }
        endpoints_.emplace_back(b);
      }
      backoff_ = cfg_.reconnect_min;
      cmds_.emplace_back(connector_cmd::began{std::string{h.node}, h.max_payload});
      break;
    }
    case wire::op::confirm: {
      auto it = unconfirmed_.find(h.msg_id);
      if (it == unconfirmed_.end()) break; // a duplicate's second confirm
      if ((h.code == code_of(status::full) || h.code == code_of(status::unavailable))
          && cfg_.retry_unkept)
        retry_later(it, now, false);
      else if (h.code == code_of(status::overloaded) && cfg_.retry_overloaded)
        retry_later(it, now, true);
      else settle(it, h.code);
      break;
    }
    case wire::op::pause:
      if (welcomed_ && cfg_.flow_control) on_pause(h.topic);
      break;
    case wire::op::resume:
      if (welcomed_ && cfg_.flow_control) on_resume(h.topic, now);
      break;
    case wire::op::err: {
      if (h.code == code_of(status::protocol_violation) && welcomed_) {
        // "HELLO must come first": the broker does not know this session
        // (it ended it, or ZeroMQ reconnected us underneath to a broker
        // that restarted on the same endpoint). Start again on this socket.
        welcomed_ = false;
        ++counts_.reconnects;
        ++counts_.sessions_lost;
        report(status_session_lost, "the broker no longer knew this session (" + std::string{h.text}
                                      + "); starting a new one");
        last_heard_ = now;
        begin_session();
        break;
      }
      if (h.code == status_slow_consumer) {
        ++counts_.errors;
        counts_.broker_dropped += h.count;
        report(h.code, std::string{h.text});
        break;
      }
      // A confirmed publish the broker refused (e.g. 105) gets no CONFIRM:
      // the ERR is its outcome.
      bool settled = false;
      if (!h.msg_id.empty()) {
        if (auto it = unconfirmed_.find(h.msg_id); it != unconfirmed_.end()) {
          settle(it, h.code);
          settled = true;
        }
      }
      if (h.reply_to.starts_with(cfg_.inbox_prefix)) {
        complete_request(h.reply_to, {h.code, {}, std::string{h.text}, {}, {}});
      } else {
        ++counts_.errors;
        if (!settled) report(h.code, std::string{h.text});
      }
      break;
    }
    case wire::op::ping: {
      if (!welcomed_) break; // nothing but HELLO goes out before WELCOME
      wire::header pong;
      pong.kind = wire::op::pong;
      queue_control(pong);
      break;
    }
    case wire::op::bye:
      if (welcomed_) { // a BYE to an attempt that never got WELCOME is no session lost
        ++counts_.sessions_lost;
        report(status_session_lost,
               "the broker ended the session: "
                 + (h.text.empty() ? std::string{"(no reason given)"} : std::string{h.text}));
      }
      want_reconnect_ = true;
      break;
    case wire::op::pong: // liveness, and the publish window's marker
      if (!ping_marks_.empty()) {
        std::tie(pubs_read_, pub_bytes_read_) = ping_marks_.front();
        ping_marks_.pop_front();
      }
      break;
    default: break;
  }
}

void connector_core::reply_arrived(const message_view& v) {
  if (auto failure = v.headers.find(failure_header); !failure.empty()) {
    complete_request(v.topic, {status_failed, std::string{v.payload},
                               std::string{v.headers.find(failure_cause_header)},
                               std::string{v.headers.find(failure_from_header)},
                               std::string{failure}});
    return;
  }
  complete_request(v.topic, {0, std::string{v.payload}, {}, {}, {}});
}

void connector_core::complete_request(std::string_view inbox, reply r) {
  if (!inbox.starts_with(cfg_.inbox_prefix)) return;
  std::uint64_t id = 0;
  auto tail = inbox.substr(cfg_.inbox_prefix.size());
  if (std::from_chars(tail.data(), tail.data() + tail.size(), id).ec != std::errc{}) return;
  auto it = requests_.find(id);
  if (it == requests_.end()) return; // late reply after a timeout
  auto done = std::move(it->second.second);
  requests_.erase(it);
  cmds_.emplace_back(connector_cmd::replied{std::move(done), std::move(r)});
}

void connector_core::report(std::uint32_t code, std::string text) {
  cmds_.emplace_back(connector_cmd::report{code, std::move(text)});
}

// ---------------------------------------------------------------- handlers

bool connector_core::handler_returned(std::uint32_t sid, time_point now) {
  if (auto took = now - turn_started_; took > broker_heartbeat_) {
    // Nothing can go out while a handler runs: past a few of the broker's
    // heartbeats it ends the session. Say so, loudly: this loses messages.
    ++counts_.stalls;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(took).count();
    report(status_handler_stall,
           "a handler of subscription " + std::to_string(sid) + " kept the I/O thread for "
             + std::to_string(ms) + " ms; the broker ends a session it does not hear from for a few "
             + std::to_string(broker_heartbeat_.count()) + " ms heartbeats");
  }
  turn_started_ = now;
  return between_handlers(now);
}

bool connector_core::between_handlers(time_point now) {
  if (!welcomed_ || want_reconnect_ || !linked_) return false;
  if (now - last_sent_ < cfg_.heartbeat) return false;
  // Only for the broker's sake: what it answers waits behind the backlog
  // we are in, so no answer is expected yet (see broker_silent).
  queue_ping();
  return true;
}

// ---------------------------------------------------------------- timers

void connector_core::tick(time_point now) {
  expire_requests(now);
  resend_due(now);
  if (!linked_) {
    if (now >= next_attempt_ && !closing_) dial(now);
    return;
  }
  if (want_reconnect_) {
    hang_up(now);
    return;
  }
  if (welcomed_) keep_alive(now);
  if (broker_silent(now)) hang_up(now);
}

void connector_core::keep_alive(time_point now) {
  // Silence either way calls for a PING: the broker's liveness of us, and
  // ours of it (its PONG is all an idle broker has to say).
  bool quiet_out = now - last_sent_ >= cfg_.heartbeat;
  bool quiet_in = now - last_heard_ >= cfg_.heartbeat && now - last_ping_ >= cfg_.heartbeat;
  if (!quiet_out && !quiet_in) return;
  // Asked, even if the PING cannot go out (a full socket): no answer is
  // coming either way.
  if (first_unanswered_ping_ <= last_heard_) first_unanswered_ping_ = now;
  queue_ping();
}

bool connector_core::broker_silent(time_point now) const {
  // With immediate set, HELLO goes out once the connection is up.
  if (!hello_sent_) return now - last_heard_ >= cfg_.heartbeat * cfg_.liveness;
  if (now - last_heard_ < cfg_.silence_timeout) return false;
  if (!welcomed_) return true;
  // And deaf to a PING for a heartbeat: after this thread stalled (a slow
  // handler), the broker gets a PING and the time to answer it first.
  return first_unanswered_ping_ > last_heard_ && now - first_unanswered_ping_ >= cfg_.heartbeat;
}

void connector_core::expire_requests(time_point now) {
  for (auto it = requests_.begin(); it != requests_.end();) {
    if (it->second.first <= now) {
      auto done = std::move(it->second.second);
      it = requests_.erase(it);
      cmds_.emplace_back(connector_cmd::replied{std::move(done),
                                                {status_timeout, {}, "request timed out", {}, {}}});
    } else {
      ++it;
    }
  }
}

// ---------------------------------------------------------------- closing

void connector_core::close() {
  closing_ = true;
  if (!welcomed_) controls_.clear(); // an unanswered HELLO need not go out
}

void connector_core::finish() {
  for (auto& e : pending_) finished_ += e.counted;
  pending_.clear();
  for (auto& e : held_) finished_ += e.counted;
  held_.clear();
  controls_.clear();
  given_ = given::none;
  for (auto& [id, r] : requests_)
    cmds_.emplace_back(connector_cmd::replied{std::move(r.second),
                                              {status_disconnected, {}, "client closed", {}, {}}});
  requests_.clear();
  linked_ = welcomed_ = false;
}

// ---------------------------------------------------------------- frames

void connector_core::queue_control(const wire::header& h) {
  control_frame f{h.kind, {}};
  wire::encode_header(h, f.bytes);
  controls_.push_back(std::move(f));
}

void connector_core::queue_ping() {
  for (auto& c : controls_)
    if (c.kind == wire::op::ping) return; // one is waiting for room already
  wire::header ping;
  ping.kind = wire::op::ping;
  queue_control(ping);
}

std::optional<connector_core::frame> connector_core::next_frame() {
  given_ = given::none;
  if (!linked_) return std::nullopt;
  if (!controls_.empty()) {
    given_ = given::control;
    return frame{controls_.front().bytes, {}, false};
  }
  if (!welcomed_) return std::nullopt; // nothing but HELLO before WELCOME
  if (pending_.empty()) {
    if (!closing_ || bye_written_) return std::nullopt;
    if (bye_.empty()) {
      wire::header bye;
      bye.kind = wire::op::bye;
      wire::encode_header(bye, bye_);
    }
    given_ = given::bye;
    return frame{bye_, {}, false};
  }
  // The publish window: PUBs wait for the broker to read what went before.
  if (pending_.front().kind == wire::op::pub
      && window_full(1, pending_.front().bytes.size())) {
    if (!window_blocked_) {
      window_blocked_ = true;
      ++counts_.window_waits;
    }
    if (since_mark_ == 0) return std::nullopt; // a PING after the last PUB is out
    queue_ping();
    given_ = given::control;
    return frame{controls_.front().bytes, {}, false};
  }
  window_blocked_ = false;
  if (pending_.size() == 1) {
    auto& e = pending_.front();
    given_ = given::one;
    bool two = wire::carries_payload(e.kind);
    return frame{e.header(), two ? e.payload() : std::string_view{}, two};
  }
  batch_.clear();
  wire::batch_writer w{batch_};
  w.begin();
  std::size_t n = 0, pubs = 0, pub_bytes = 0;
  for (auto& e : pending_) {
    if (n == cfg_.max_batch_envelopes || (n > 0 && w.bytes() + e.bytes.size() > cfg_.max_batch_bytes))
      break;
    if (e.kind == wire::op::pub) {
      // At most a quarter window between PINGs, within the window.
      if (n > 0 && (window_full(pubs + 1, pub_bytes + e.bytes.size())
                    || (marks() && since_mark_ + pubs >= cfg_.publish_window / 4)))
        break;
      ++pubs;
      pub_bytes += e.bytes.size();
    }
    w.add_encoded(e.header(), e.kind, e.payload());
    ++n;
  }
  w.finish();
  given_ = given::batch;
  batched_ = n;
  return frame{batch_, {}, false};
}

void connector_core::wrote(time_point now) {
  last_sent_ = now;
  switch (std::exchange(given_, given::none)) {
    case given::none: return;
    case given::control: {
      auto kind = controls_.front().kind;
      controls_.pop_front();
      if (kind == wire::op::hello) hello_sent_ = true;
      if (kind == wire::op::ping) {
        last_ping_ = now;
        if (welcomed_) ping_marks_.emplace_back(pubs_written_, pub_bytes_written_);
        since_mark_ = 0;
      }
      return;
    }
    case given::bye: bye_written_ = true; return;
    case given::one: batched_ = 1; break;
    case given::batch: break;
  }
  for (std::size_t i = 0; i < batched_; ++i) {
    finished_ += pending_[i].counted;
    if (pending_[i].kind == wire::op::pub) {
      ++pubs_written_;
      pub_bytes_written_ += pending_[i].bytes.size();
      ++since_mark_;
    }
    spent_.push_back(std::move(pending_[i].bytes));
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(batched_));
  // A marker every quarter window, so the window opens as the broker reads.
  if (marks() && since_mark_ >= std::max<std::size_t>(cfg_.publish_window / 4, 1)) queue_ping();
}

bool connector_core::window_full(std::size_t more_msgs, std::size_t more_bytes) const noexcept {
  if (!cfg_.flow_control) return false;
  auto unread = pubs_written_ - pubs_read_;
  if (unread == 0 && more_msgs <= 1) return false; // one always goes, however large
  auto msgs = unread + more_msgs;
  auto bytes = pub_bytes_written_ - pub_bytes_read_ + more_bytes;
  return (cfg_.publish_window != 0 && msgs > cfg_.publish_window)
         || (cfg_.publish_window_bytes != 0 && bytes > cfg_.publish_window_bytes);
}

} // namespace plexus::detail
