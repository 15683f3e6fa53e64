// SPDX-License-Identifier: Apache-2.0
// The client connector's I/O thread: the only code that touches its socket.
#include "connector.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <random>

#include <zmq_addon.hpp>

namespace plexus {

std::string detail::random_hex(std::size_t bytes) {
  static constexpr char hex[] = "0123456789abcdef";
  std::random_device rd;
  std::mt19937_64 gen{(std::uint64_t{rd()} << 32) ^ rd()};
  std::string s;
  for (std::size_t i = 0; i < bytes; ++i) {
    auto b = static_cast<unsigned>(gen() & 0xff);
    s += hex[b >> 4];
    s += hex[b & 15];
  }
  return s;
}

client::impl::impl(client_options o)
  : opts(std::move(o)), box(opts.outbox_limit), window(opts.max_unconfirmed),
    owned_ctx(opts.zmq_context ? nullptr : std::make_unique<zmq::context_t>(1)),
    ctx(opts.zmq_context ? *static_cast<zmq::context_t*>(opts.zmq_context) : *owned_ctx) {
  if (opts.node_id.empty()) opts.node_id = "n" + detail::random_hex(8);
  if (validate_topic(opts.node_id) != topic_errc::ok || opts.node_id.find('.') != std::string::npos)
    throw std::invalid_argument("node id must be one topic token: '" + opts.node_id + "'");
  inbox_prefix = "_INBOX." + opts.node_id + ".";
  id_prefix = detail::random_hex(8);
  // The broker scopes msg ids to (node, lineage): this client's ids never
  // meet another's, and stay its own across reconnects and failovers.
  std::from_chars(id_prefix.data(), id_prefix.data() + id_prefix.size(), lineage, 16);
  if (lineage == 0) lineage = 1;
  endpoints.push_back(opts.endpoint);
  for (auto& f : opts.fallback) endpoints.push_back(f);
}

client::impl::envelope client::impl::make(const wire::header& h, std::string_view payload) {
  envelope e;
  e.kind = h.kind;
  e.bytes = detail::envelope_buffer();
  bool with_payload = wire::carries_payload(h.kind);
  e.bytes.reserve(64 + h.topic.size() + h.reply_to.size() + h.headers.raw().size()
                  + h.traceparent.size() + h.msg_id.size() + (with_payload ? payload.size() : 0));
  wire::encode_header(h, e.bytes);
  e.header_size = static_cast<std::uint32_t>(e.bytes.size());
  if (with_payload) e.bytes.append(payload);
  return e;
}

bool client::impl::enqueue(envelope e, bool wait, bool control) {
  return box.push(std::move(e), wait && !on_io_thread(), control || on_io_thread());
}

wire::header client::impl::pub_header(std::string_view topic, const publish_options& o) {
  // A bad topic is the caller's bug: say so here, not as a broker ERR later.
  if (auto e = validate_topic(topic, opts.limits.topic); e != topic_errc::ok)
    throw std::invalid_argument("bad topic '" + std::string{topic} + "': " + to_string(e));
  wire::header h;
  h.kind = wire::op::pub;
  h.topic = topic;
  h.reply_to = o.reply_to;
  h.deadline_ns = o.deadline_ns;
  h.traceparent = o.traceparent;
  h.headers = o.headers;
  h.msg_id = o.msg_id;
  return h;
}

std::string client::impl::next_msg_id() {
  return id_prefix + std::to_string(msg_counter.fetch_add(1, std::memory_order_relaxed));
}

void client::impl::connect_socket() {
  close_socket();
  sock = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::dealer);
  sock->set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(opts.limits.max_message_bytes()));
  sock->set(zmq::sockopt::linger, 0);
  sock->set(zmq::sockopt::sndhwm, 100000);
  sock->set(zmq::sockopt::rcvhwm, 100000);
  sock->set(zmq::sockopt::immediate, 1); // queue only on a live connection
  // ZeroMQ arms the timeout with a PING, itself sent up to a heartbeat
  // into a silence: dead within `liveness` heartbeats.
  auto hb = static_cast<int>(opts.heartbeat.count());
  sock->set(zmq::sockopt::heartbeat_ivl, hb);
  sock->set(zmq::sockopt::heartbeat_timeout, hb * static_cast<int>(std::max(opts.liveness, 2u) - 1));
  watch_socket();
  connected_to = endpoints[current % endpoints.size()];
  sock->connect(connected_to);
  welcomed = false;
  hello_sent = false;
  last_heard = steady::now();
  last_ping = first_unanswered_ping = {};
  begin_session();
}

void client::impl::watch_socket() {
  auto addr = "inproc://plexus-monitor." + id_prefix + "." + std::to_string(++monitors);
  if (zmq_socket_monitor(sock->handle(), addr.c_str(), ZMQ_EVENT_DISCONNECTED) != 0)
    throw zmq::error_t();
  monitor = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::pair);
  monitor->set(zmq::sockopt::linger, 0);
  monitor->connect(addr);
}

void client::impl::read_monitor() {
  zmq::message_t event, address;
  // Each event is two frames: a 16-bit event id and a 32-bit value, then
  // the endpoint.
  while (monitor->recv(event, zmq::recv_flags::dontwait)) {
    static_cast<void>(monitor->recv(address));
    std::uint16_t id = 0;
    std::memcpy(&id, event.data(), sizeof id);
    // Before WELCOME a broken attempt is the handshake timeout's to judge.
    if (id == ZMQ_EVENT_DISCONNECTED && welcomed) want_reconnect = true;
  }
}

void client::impl::close_socket() {
  if (!sock) return;
  zmq_socket_monitor(sock->handle(), nullptr, 0);
  monitor.reset();
  sock.reset();
}

void client::impl::begin_session() {
  session = static_cast<std::uint16_t>(session % 0xffff + 1); // 1 .. 65535: never 0
  std::uint64_t dropped = 0;
  std::erase_if(pending, [&](const envelope& e) {
    if (!e.settles()) return false;
    ++stale_acks;
    dropped += e.counted;
    return true;
  });
  if (dropped) box.mark_sent(dropped);
}

bool client::impl::send_frames(std::string_view header, std::string_view payload, bool with_payload) {
  auto flags = zmq::send_flags::dontwait;
  if (!sock->send(zmq::buffer(header.data(), header.size()),
                  with_payload ? flags | zmq::send_flags::sndmore : flags))
    return false;
  if (with_payload) sock->send(zmq::buffer(payload.data(), payload.size()), flags);
  last_sent = steady::now();
  return true;
}

bool client::impl::send_control(const wire::header& h) {
  std::string bytes;
  wire::encode_header(h, bytes);
  return send_frames(bytes, {}, false);
}

void client::impl::say_hello() {
  wire::header h;
  h.kind = wire::op::hello;
  h.node = opts.node_id;
  h.heartbeat_ms = static_cast<std::uint32_t>(opts.heartbeat.count());
  h.seq = lineage;
  // A DEALER with immediate=1 refuses until the TCP link is up: retry.
  std::string bytes;
  wire::encode_header(h, bytes);
  hello_sent = send_frames(bytes, {}, false);
}

void client::impl::restore_session() {
  std::deque<envelope> again;
  {
    std::lock_guard lock{subs_mutex}; // withdraw_credit() changes a record's credit
    for (auto& [sid, rec] : subs) again.push_back(sub_envelope(sid, *rec));
  }
  for (auto& [id, e] : unconfirmed) {
    again.push_back(e.copy());
    if (reconnects > 0) ++resent;
  }
  for (auto it = again.rbegin(); it != again.rend(); ++it) pending.push_front(std::move(*it));
}

client::impl::envelope client::impl::sub_envelope(std::uint32_t sid, const subscription_record& r) {
  wire::header h;
  h.kind = wire::op::sub;
  h.sid = sid;
  h.topic = r.pattern;
  h.queue = r.opts.queue;
  h.ack = r.opts.acked ? wire::ack_mode::explicit_ack : wire::ack_mode::none;
  h.credit = r.opts.credit;
  h.ack_wait_ms = r.opts.ack_wait_ms;
  h.max_deliver = r.opts.max_deliver;
  return make(h);
}

void client::impl::drain_outbox() {
  taken.clear();
  box.take(taken, sent_buffers);
  std::uint64_t stale = 0;
  for (auto& e : taken) {
    if (e.settles() && e.session != session) {
      ++stale;
      continue;
    }
    if (e.extras && e.extras->on_confirm) {
      remember_unconfirmed(e);
    } else if (e.extras && e.extras->on_reply) {
      requests.emplace(e.extras->request_id,
                       std::make_pair(e.extras->request_deadline, std::move(e.extras->on_reply)));
    }
    pending.push_back(std::move(e));
  }
  taken.clear();
  if (stale) {
    stale_acks += stale;
    box.mark_sent(stale);
  }
}

void client::impl::remember_unconfirmed(envelope& e) {
  auto [it, fresh] = unconfirmed.try_emplace(e.extras->msg_id);
  if (fresh) {
    it->second = e.copy();
    it->second.extras = std::move(e.extras);
    return;
  }
  auto& done = it->second.extras->on_confirm;
  done = [first = std::move(done), second = std::move(e.extras->on_confirm)](std::uint32_t code) {
    first(code);
    second(code);
  };
  window.release(); // one entry, one CONFIRM: one slot
}

void client::impl::settle(std::map<std::string, envelope, std::less<>>::iterator it,
                          std::uint32_t code) {
  auto done = std::move(it->second.extras->on_confirm);
  unconfirmed.erase(it);
  window.release();
  done(code);
}

void client::impl::send_pending() {
  if (!welcomed) return;
  std::uint64_t sent = 0;
  while (!pending.empty()) {
    if (pending.size() == 1) {
      auto& e = pending.front();
      if (!send_frames(e.header(), e.payload(), wire::carries_payload(e.kind))) break;
      sent += e.counted;
      sent_buffers.push_back(std::move(e.bytes));
      pending.pop_front();
      continue;
    }
    batch.clear();
    wire::batch_writer w{batch};
    w.begin();
    std::size_t n = 0;
    // Small enough that a broker's receive queue (rcvhwm frames) stays
    // bounded in bytes; large enough to amortise a frame over hundreds of
    // small envelopes.
    const auto max_bytes = std::min<std::size_t>(detail::batch_frame_bytes, opts.limits.max_batch_bytes / 2);
    std::uint64_t counted = 0;
    for (auto& e : pending) {
      if (n == 256 || (n > 0 && w.bytes() + e.bytes.size() > max_bytes)) break;
      w.add_encoded(e.header(), e.kind, e.payload());
      counted += e.counted;
      ++n;
    }
    w.finish();
    if (!sock->send(zmq::buffer(batch), zmq::send_flags::dontwait)) break;
    last_sent = steady::now();
    for (std::size_t i = 0; i < n; ++i) sent_buffers.push_back(std::move(pending[i].bytes));
    pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(n));
    sent += counted;
  }
  if (sent) box.mark_sent(sent);
}

void client::impl::receive_all() {
  for (int i = 0; i < 4096 && !want_reconnect; ++i) {
    parts.clear();
    if (!zmq::recv_multipart(*sock, std::back_inserter(parts), zmq::recv_flags::dontwait)) return;
    last_heard = steady::now();
    turn_started = last_heard; // the handlers' turn starts with the frame
    if (parts.empty()) continue;
    std::string_view first{static_cast<const char*>(parts[0].data()), parts[0].size()};
    entries.clear();
    if (parts.size() == 1 && wire::is_batch_frame(first)) {
      if (wire::decode_batch(first, opts.limits, entries)) {
        ++errors;
        continue;
      }
    } else {
      frames.clear();
      for (auto& p : parts) frames.emplace_back(static_cast<const char*>(p.data()), p.size());
      entries.resize(1);
      if (wire::decode_message(frames, opts.limits, entries[0])) {
        ++errors;
        continue;
      }
    }
    dispatch();
    keep_alive_between_handlers(turn_started); // set by the last handler's return, if any
  }
}

void client::impl::handler_returned(std::uint32_t sid) {
  auto now = steady::now();
  if (auto took = now - turn_started; took > broker_heartbeat) {
    // Nothing can go out while a handler runs: past a few of the broker's
    // heartbeats it ends the session. Say so, loudly: this loses messages.
    ++stalls;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(took).count();
    report(status_handler_stall,
           "a handler of subscription " + std::to_string(sid) + " kept the I/O thread for "
             + std::to_string(ms) + " ms; the broker ends a session it does not hear from for a few "
             + std::to_string(broker_heartbeat.count()) + " ms heartbeats");
  }
  turn_started = now;
  keep_alive_between_handlers(now);
}

void client::impl::keep_alive_between_handlers(steady::time_point now) {
  if (!welcomed || want_reconnect || !sock) return;
  if (now - last_sent < opts.heartbeat) return;
  // Only for the broker's sake: what it answers waits behind the backlog
  // we are in, so no answer is expected yet (see broker_silent).
  wire::header ping;
  ping.kind = wire::op::ping;
  send_control(ping);
  drain_outbox(); // ACKs and CREDITs the handlers queued meanwhile
  send_pending();
}

void client::impl::report(std::uint32_t code, std::string_view text) {
  error_handler cb;
  {
    std::lock_guard lock{state_mutex};
    cb = error_cb;
  }
  if (cb) {
    cb(code, text);
    return;
  }
  if (code != status_slow_consumer && code != status_session_lost && code != status_handler_stall)
    return;
  auto now = steady::now();
  auto& last = last_stderr[code];
  if (last != steady::time_point{} && now - last < std::chrono::seconds{10}) return;
  last = now;
  std::fprintf(stderr, "plexus client %s: %s (%.*s)\n", opts.node_id.c_str(), status_text(code),
               static_cast<int>(text.size()), text.data());
}

message_view client::impl::view_of(const wire::entry& e) const {
  message_view v;
  v.sid = e.h.sid;
  v.topic = e.h.topic;
  v.payload = e.payload;
  v.msg_id = e.h.msg_id;
  v.reply_to = e.h.reply_to;
  v.traceparent = e.h.traceparent;
  v.headers = e.h.headers;
  v.seq = detail::delivery_tag(session, e.h.seq);
  v.delivery = e.h.delivery;
  v.deadline_ns = e.h.deadline_ns;
  return v;
}

void client::impl::dispatch() {
  for (std::size_t i = 0; i < entries.size();) {
    auto& e = entries[i];
    if (e.h.kind == wire::op::msg) {
      // A run of consecutive MSGs for one subscription: one handler call.
      std::size_t j = i;
      views.clear();
      while (j < entries.size() && entries[j].h.kind == wire::op::msg
             && entries[j].h.sid == e.h.sid)
        views.push_back(view_of(entries[j++]));
      received += views.size();
      deliver(e.h.sid, views);
      i = j;
      continue;
    }
    control(e.h);
    ++i;
  }
}

void client::impl::deliver(std::uint32_t sid, std::span<const message_view> batch_views) {
  if (sid == detail::inbox_sid) {
    for (auto& v : batch_views) {
      if (auto failure = v.headers.find(failure_header); !failure.empty()) {
        reply r{status_failed, std::string{v.payload},
                std::string{v.headers.find(failure_cause_header)},
                std::string{v.headers.find(failure_from_header)}, std::string{failure}};
        complete_request(v.topic, std::move(r));
        continue;
      }
      complete_request(v.topic, {0, std::string{v.payload}, {}, {}, {}});
    }
    return;
  }
  std::shared_ptr<subscription_record> rec;
  {
    std::lock_guard lock{subs_mutex};
    if (auto it = subs.find(sid); it != subs.end()) rec = it->second;
  }
  if (!rec) return; // unsubscribed meanwhile
  rec->on_batch(batch_views);
  handler_returned(sid);
}

void client::impl::complete_request(std::string_view inbox, reply r) {
  if (!inbox.starts_with(inbox_prefix)) return;
  std::uint64_t id = 0;
  auto tail = inbox.substr(inbox_prefix.size());
  std::from_chars(tail.data(), tail.data() + tail.size(), id);
  auto it = requests.find(id);
  if (it == requests.end()) return; // late reply after a timeout
  auto done = std::move(it->second.second);
  requests.erase(it);
  done(std::move(r));
}

void client::impl::control(const wire::header& h) {
  switch (h.kind) {
    case wire::op::welcome: {
      welcomed = true;
      if (h.heartbeat_ms) broker_heartbeat = std::chrono::milliseconds{h.heartbeat_ms};
      if (!last_welcomed.empty() && connected_to != last_welcomed) ++failovers;
      last_welcomed = connected_to;
      {
        std::lock_guard lock{state_mutex};
        broker = std::string{h.node};
      }
      for (auto b : h.brokers.items())
        if (std::find(endpoints.begin(), endpoints.end(), b) == endpoints.end())
          endpoints.emplace_back(b);
      backoff = opts.reconnect_min;
      restore_session();
      {
        std::lock_guard lock{state_mutex};
        connected_once = true;
      }
      state_cv.notify_all();
      break;
    }
    case wire::op::confirm: {
      auto it = unconfirmed.find(h.msg_id);
      if (it != unconfirmed.end()) settle(it, h.code); // else a duplicate's second confirm
      break;
    }
    case wire::op::err: {
      if (h.code == code_of(status::protocol_violation) && welcomed) {
        // "HELLO must come first": the broker does not know this session
        // (it ended it, or ZeroMQ reconnected us underneath to a broker
        // that restarted on the same endpoint). Start again on this socket.
        welcomed = false;
        hello_sent = false;
        ++reconnects;
        ++sessions_lost;
        report(status_session_lost,
               "the broker no longer knew this session (" + std::string{h.text}
                 + "); starting a new one");
        begin_session();
        break;
      }
      if (h.code == status_slow_consumer) {
        ++errors;
        broker_dropped += h.count;
        report(h.code, h.text);
        break;
      }
      // A confirmed publish the broker refused (e.g. 105) gets no CONFIRM:
      // the ERR is its outcome.
      bool settled = false;
      if (!h.msg_id.empty()) {
        if (auto it = unconfirmed.find(h.msg_id); it != unconfirmed.end()) {
          settle(it, h.code);
          settled = true;
        }
      }
      if (h.reply_to.starts_with(inbox_prefix)) {
        complete_request(h.reply_to, {h.code, {}, std::string{h.text}, {}, {}});
      } else {
        ++errors;
        if (!settled) report(h.code, h.text);
      }
      break;
    }
    case wire::op::ping: {
      wire::header pong;
      pong.kind = wire::op::pong;
      send_control(pong);
      break;
    }
    case wire::op::bye:
      if (welcomed) { // a BYE to an attempt that never got WELCOME is no session lost
        ++sessions_lost;
        report(status_session_lost, "the broker ended the session: "
                                      + (h.text.empty() ? std::string{"(no reason given)"}
                                                        : std::string{h.text}));
      }
      want_reconnect = true;
      break;
    default: break; // PONG: liveness only
  }
}

void client::impl::reconnect() {
  want_reconnect = false;
  ++reconnects;
  ++current;
  // Unsent envelopes go: subscriptions and unconfirmed publishes are
  // restored after the next WELCOME; plain publishes are at most once,
  // and the broker redelivers what ACKs and NACKs would have settled.
  std::uint64_t dropped = 0;
  for (auto& e : pending) {
    dropped += e.counted;
    stale_acks += e.settles();
  }
  pending.clear();
  box.mark_sent(dropped);
  // A session that ends moves on to the next endpoint at once; only an
  // attempt that fails waits, longer each time.
  if (welcomed) {
    backoff = opts.reconnect_min;
    next_attempt = steady::now();
  } else {
    next_attempt = steady::now() + backoff;
    backoff = std::min(backoff * 2, opts.reconnect_max);
  }
  close_socket();
}

void client::impl::keep_alive(steady::time_point now) {
  // Silence either way calls for a PING: the broker's liveness of us, and
  // ours of it (its PONG is all an idle broker has to say).
  bool quiet_out = now - last_sent >= opts.heartbeat;
  bool quiet_in = now - last_heard >= opts.heartbeat && now - last_ping >= opts.heartbeat;
  if (!quiet_out && !quiet_in) return;
  // Asked, even if the PING cannot go out (a full socket): no answer is
  // coming either way.
  if (first_unanswered_ping <= last_heard) first_unanswered_ping = now;
  wire::header ping;
  ping.kind = wire::op::ping;
  if (send_control(ping)) last_ping = now;
}

bool client::impl::broker_silent(steady::time_point now) const {
  // With immediate set, HELLO goes out once the connection is up.
  if (!hello_sent) return now - last_heard >= opts.heartbeat * opts.liveness;
  if (now - last_heard < opts.silence_timeout) return false;
  if (!welcomed) return true;
  // And deaf to a PING for a heartbeat: after this thread stalled (a slow
  // handler), the broker gets a PING and the time to answer it first.
  return first_unanswered_ping > last_heard && now - first_unanswered_ping >= opts.heartbeat;
}

void client::impl::expire_requests(steady::time_point now) {
  for (auto it = requests.begin(); it != requests.end();) {
    if (it->second.first <= now) {
      auto done = std::move(it->second.second);
      it = requests.erase(it);
      done({status_timeout, {}, "request timed out", {}, {}});
    } else {
      ++it;
    }
  }
}

void client::impl::timers() {
  auto now = steady::now();
  if (!sock) {
    if (now >= next_attempt) connect_socket();
    return;
  }
  if (want_reconnect) {
    reconnect();
    return;
  }
  if (!hello_sent) say_hello();
  if (welcomed) keep_alive(now);
  if (broker_silent(now)) {
    reconnect();
    return;
  }
  expire_requests(now);
}

void client::impl::run() {
  connect_socket();
  while (!stopping.load(std::memory_order_acquire)) {
    // Until HELLO is out, wake when the socket can send (with immediate
    // set, ZeroMQ takes no message before the connection is up): not at
    // the next 50 ms poll timeout, which every node start used to wait.
    short events = hello_sent ? ZMQ_POLLIN : static_cast<short>(ZMQ_POLLIN | ZMQ_POLLOUT);
    zmq::pollitem_t items[] = {{nullptr, box.fd(), ZMQ_POLLIN, 0},
                               {sock ? sock->handle() : nullptr, 0, events, 0},
                               {monitor ? monitor->handle() : nullptr, 0, ZMQ_POLLIN, 0}};
    long wait = pending.empty() || !welcomed ? 50 : 1;
    try {
      zmq::poll(items, sock ? 3 : 1, std::chrono::milliseconds{wait});
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    drain_outbox();
    // What is queued goes out before what arrived is handled: a pool's
    // CREDIT (the broker's go-ahead for more) waited behind the batches
    // of deliveries that came meanwhile.
    if (sock) send_pending();
    if (sock) receive_all(); // what arrived before a disconnect still counts
    if (sock && (items[2].revents & ZMQ_POLLIN)) read_monitor();
    timers();
    if (sock) send_pending();
  }
  // Graceful: what is queued goes out, then BYE.
  drain_outbox();
  if (sock && welcomed) {
    send_pending();
    wire::header bye;
    bye.kind = wire::op::bye;
    send_control(bye);
    sock->set(zmq::sockopt::linger, 1000);
  }
  std::uint64_t left = 0;
  for (auto& e : pending) left += e.counted;
  box.mark_sent(left);
  for (auto& [id, r] : requests) r.second({status_disconnected, {}, "client closed", {}, {}});
  requests.clear();
  close_socket();
}

} // namespace plexus
