// SPDX-License-Identifier: Apache-2.0
// The client connector's I/O thread: the shell around connector_core, and
// the only code that touches its socket or runs subscription handlers.
#include "connector.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <type_traits>
#include <variant>

#include <zmq_addon.hpp>

namespace plexus {

void client::impl::run() {
  core.start(steady::now());
  carry_out();
  while (!stopping.load(std::memory_order_acquire)) {
    // Until HELLO is out, wake when the socket can send (with immediate
    // set, ZeroMQ takes no message before the connection is up): not at
    // the next 50 ms poll timeout, which every node start used to wait.
    short events = core.saying_hello() ? static_cast<short>(ZMQ_POLLIN | ZMQ_POLLOUT) : ZMQ_POLLIN;
    zmq::pollitem_t items[] = {{nullptr, box.fd(), ZMQ_POLLIN, 0},
                               {sock ? sock->handle() : nullptr, 0, events, 0},
                               {monitor ? monitor->handle() : nullptr, 0, ZMQ_POLLIN, 0}};
    long wait = core.backlog() && core.in_session() ? 1 : 50;
    try {
      zmq::poll(items, sock ? 3 : 1, std::chrono::milliseconds{wait});
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    // What is queued goes out before what arrived is handled: a pool's
    // CREDIT (the broker's go-ahead for more) waited behind the batches
    // of deliveries that came meanwhile.
    drain_outbox();
    write_frames();
    if (sock) receive_all(); // what arrived before a disconnect still counts
    if (sock && (items[2].revents & ZMQ_POLLIN)) read_monitor();
    core.tick(steady::now());
    carry_out();
    write_frames();
  }
  // Graceful: what is queued goes out, then BYE.
  drain_outbox();
  core.close();
  write_frames();
  core.finish();
  carry_out();
  box.mark_sent(core.take_finished());
  if (sock) sock->set(zmq::sockopt::linger, 1000);
  close_socket();
}

void client::impl::carry_out() {
  // Handlers may publish, which on this thread only queues to the outbox:
  // the core is not re-entered while its commands run.
  auto& cmds = core.commands();
  for (std::size_t k = 0; k < cmds.size(); ++k) {
    std::visit(
      [&](auto& c) {
        using C = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<C, detail::connector_cmd::dial>) {
          open_socket(c.endpoint);
        } else if constexpr (std::is_same_v<C, detail::connector_cmd::hang_up>) {
          close_socket();
        } else if constexpr (std::is_same_v<C, detail::connector_cmd::began>) {
          std::vector<envelope> again;
          {
            std::lock_guard lock{subs_mutex}; // set_credit() changes a record's credit
            for (auto& [sid, rec] : subs) again.push_back(sub_envelope(sid, *rec));
          }
          core.restore(std::move(again));
          max_payload.store(c.max_payload, std::memory_order_relaxed);
          {
            std::lock_guard lock{state_mutex};
            broker = std::move(c.broker);
            connected_once = true;
          }
          state_cv.notify_all();
        } else if constexpr (std::is_same_v<C, detail::connector_cmd::confirmed>) {
          window.release();
          c.done(c.code);
        } else if constexpr (std::is_same_v<C, detail::connector_cmd::slot_freed>) {
          window.release();
        } else if constexpr (std::is_same_v<C, detail::connector_cmd::replied>) {
          c.done(std::move(c.answer));
        } else if constexpr (std::is_same_v<C, detail::connector_cmd::report>) {
          report(c.code, c.text);
        } else if constexpr (std::is_same_v<C, detail::connector_cmd::flow>) {
          gate.set(std::move(c.paused));
        }
      },
      cmds[k]);
  }
  cmds.clear();
  if (auto n = core.take_finished()) box.mark_sent(n);
  box.set_backlog(core.in_session() ? core.queued() : 0);
  held.store(core.held(), std::memory_order_relaxed);
}

void client::impl::open_socket(const std::string& endpoint) {
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
  if (!opts.curve_secret_key.empty()) { // checked by the client: all three or none
    sock->set(zmq::sockopt::curve_serverkey, opts.curve_server_key);
    sock->set(zmq::sockopt::curve_publickey, opts.curve_public_key);
    sock->set(zmq::sockopt::curve_secretkey, opts.curve_secret_key);
  }
  watch_socket();
  try {
    sock->connect(endpoint); // endpoints are checked (endpoint_problem) before they get here
  } catch (const zmq::error_t& e) {
    // Never the end of this thread: the attempt fails as one that is not
    // answered does, and the next endpoint is tried.
    close_socket();
    report(static_cast<std::uint32_t>(wire::errc::value_out_of_range),
           "cannot connect to " + endpoint + ": " + e.what());
  }
}

void client::impl::watch_socket() {
  auto addr = "inproc://plexus-monitor." + id_prefix + "." + std::to_string(++monitors);
  int events = ZMQ_EVENT_DISCONNECTED;
  if (!opts.curve_secret_key.empty())
    events |= ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
              | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
  if (zmq_socket_monitor(sock->handle(), addr.c_str(), events) != 0)
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
    if (id == ZMQ_EVENT_DISCONNECTED) {
      core.link_lost();
    } else if (id & (ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)) {
      // The broker refused our key (ZAP), or its key is not the one we
      // were given (the handshake's crypto fails): say which to whoever
      // waits for the connection.
      std::lock_guard lock{state_mutex};
      handshake_failure = id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                            ? "the broker refused this client's CURVE key (not in its auth file)"
                            : "the CURVE handshake failed (is the broker key right? does the broker "
                              "use --auth?)";
    }
  }
}

void client::impl::close_socket() {
  if (!sock) return;
  zmq_socket_monitor(sock->handle(), nullptr, 0);
  monitor.reset();
  sock.reset();
}

void client::impl::drain_outbox() {
  box.take(taken, core.spent_buffers());
  core.take(taken);
  carry_out(); // window slots of merged confirms, dropped settlements
}

void client::impl::write_frames() {
  if (!sock) return;
  while (auto f = core.next_frame()) {
    auto flags = zmq::send_flags::dontwait;
    if (!sock->send(zmq::buffer(f->first.data(), f->first.size()),
                    f->two_parts ? flags | zmq::send_flags::sndmore : flags))
      break;
    if (f->two_parts) sock->send(zmq::buffer(f->second.data(), f->second.size()), flags);
    core.wrote(steady::now());
  }
  if (auto n = core.take_finished()) box.mark_sent(n);
  // What the core has not written yet counts against outbox_limit:
  // publish() waits rather than let it grow behind the publish window.
  // (What a PAUSE holds back is not counted: publish() waits, drops or
  // fails at the gate then, as when_paused says.)
  box.set_backlog(core.in_session() ? core.queued() : 0);
}

void client::impl::receive_all() {
  for (int i = 0; i < 4096 && !core.ending(); ++i) {
    parts.clear();
    if (!zmq::recv_multipart(*sock, std::back_inserter(parts), zmq::recv_flags::dontwait)) return;
    core.heard(steady::now());
    if (parts.empty()) continue;
    std::string_view first{static_cast<const char*>(parts[0].data()), parts[0].size()};
    entries.clear();
    if (parts.size() == 1 && wire::is_batch_frame(first)) {
      if (wire::decode_batch(first, opts.limits, entries)) {
        core.bad_frame();
        continue;
      }
    } else {
      frames.clear();
      for (auto& p : parts) frames.emplace_back(static_cast<const char*>(p.data()), p.size());
      entries.resize(1);
      if (wire::decode_message(frames, opts.limits, entries[0])) {
        core.bad_frame();
        continue;
      }
    }
    dispatch();
    // The heartbeat goes out even while a backlog is being handled, so the
    // broker hears from us however long that takes.
    if (core.between_handlers(steady::now())) {
      drain_outbox(); // ACKs and CREDITs the handlers queued meanwhile
      write_frames();
    }
  }
}

void client::impl::handler_returned(std::uint32_t sid) {
  bool ping = core.handler_returned(sid, steady::now());
  carry_out();
  if (ping) {
    drain_outbox();
    write_frames();
  }
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
  // Losses, and endpoints that cannot be dialled (value_out_of_range).
  if (code != status_slow_consumer && code != status_session_lost && code != status_handler_stall
      && code != static_cast<std::uint32_t>(wire::errc::value_out_of_range))
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
  v.seq = detail::delivery_tag(core.session(), e.h.seq);
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
    core.control(e.h, steady::now());
    carry_out();
    ++i;
  }
}

void client::impl::deliver(std::uint32_t sid, std::span<const message_view> batch_views) {
  if (sid == detail::inbox_sid) {
    for (auto& v : batch_views) core.reply_arrived(v);
    carry_out();
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

} // namespace plexus
