// SPDX-License-Identifier: Apache-2.0
#include "server.hpp"

#include "handshakes.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "metrics_http.hpp"

#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <set>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include <httplib.h>
#include <spdlog/spdlog.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

namespace plexus::broker {

namespace {

time_point wall_now() {
  return std::chrono::duration_cast<time_point>(
    std::chrono::system_clock::now().time_since_epoch());
}

using steady = std::chrono::steady_clock;

constexpr int handshake_failed = ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                                 | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;

/// A link this broker dials to a seed: a DEALER, and a monitor socket
/// that reports the TCP connection coming up (the core then says
/// PEER_HELLO) and going down (a killed peer is noticed at once, not after
/// the heartbeat window). A link that drops is dropped whole and dialed
/// again: ZeroMQ's silent reconnect would hide a restarted peer.
struct link {
  std::string endpoint;
  std::unique_ptr<zmq::socket_t> sock, monitor;
  conn_id conn = 0; // while connected
  bool self = false; // the seed turned out to be this broker
  steady::time_point next_attempt{};
  std::chrono::milliseconds backoff{0};
  bool said_refused = false; // a failed CURVE handshake was logged (once until it works)
};

} // namespace

struct server::impl {
  impl(server_options o, zmq::context_t* shared)
    : opts(checked(std::move(o))), log(open_store()),
      owned(shared ? nullptr : std::make_unique<zmq::context_t>(1)),
      ctx(shared ? *shared : *owned), router(ctx, zmq::socket_type::router),
      gate(opts.max_handshakes, opts.handshake_timeout), bound(bind_router()),
      b(advertised(opts.core, bound)) {
    if (!opts.peers.empty() && opts.core.cluster_secret.empty())
      throw std::runtime_error("peers need a cluster secret (config::cluster_secret), the same on "
                               "every broker of the cluster: without one no peer is admitted");
    if (opts.metrics_port != 0) bind_metrics();
    for (auto& ep : opts.peers) {
      if (ep == bound || ep == opts.listen) continue; // ourselves
      links.push_back(std::make_unique<link>());
      links.back()->endpoint = ep;
    }
  }

  static server_options checked(server_options o) {
    if (kept_here(o.core) > 0 && o.store.empty())
      throw std::invalid_argument("durable queues need a store (--store DIR)");
    o.core.store = !o.store.empty(); // then queues may be declared at run time too
    return o;
  }

  // ---------------------------------------------------------------- the store

  // Opened (and recovered) before the socket is bound: a directory another
  // broker holds stops this one before any client can reach it.
  std::unique_ptr<store::log> open_store() {
    if (opts.store.empty()) return nullptr;
    store::options so;
    so.dir = opts.store;
    so.segment_bytes = opts.store_segment_bytes;
    // Any message the broker takes fits: its header (with the publisher
    // and user the core adds), its payload, the durable's name.
    const auto& lim = opts.core.limits;
    so.max_record_bytes = std::max<std::uint64_t>(so.max_record_bytes,
                                                  lim.max_header_bytes + lim.max_payload_bytes + 65536);
    return std::make_unique<store::log>(std::move(so));
  }

  // What the store recovered (said when run() starts: the log comes after
  // the `listening on` line tools wait for) goes back to its durables,
  // before any input. A message no durable takes (its queue left the
  // configuration, or a body the core cannot read) stays on disk,
  // untouched: said once per group.
  void restore_durables() {
    if (!log || restored_once) return;
    restored_once = true;
    const auto& r = log->report();
    auto now = wall_now();
    std::set<std::string, std::less<>> warned;
    std::size_t restored = 0;
    b.restoring(r.live);
    auto started = steady::now();
    std::string why;
    // Straight from the files into the core: no copy of each message between.
    log->for_each_recovered([&](std::uint64_t id, std::string_view group, std::string_view body) {
      if (b.restore(id, group, body, now, why)) {
        ++restored;
        return;
      }
      ++store_orphans;
      if (warned.emplace(group).second)
        spdlog::warn("plexus-broker {}: store: message {} of '{}' not restored ({}); it stays on "
                     "disk, as do the group's others not restored", opts.core.id, id, group, why);
    });
    if (!opts.quiet)
      spdlog::info("plexus-broker {}: store {}: {} segment(s), {} record(s), {} live message(s), "
                   "{} torn byte(s) cut", opts.core.id, opts.store, r.segments, r.records, r.live,
                   r.torn_bytes);
    for (auto& p : r.problems) spdlog::warn("plexus-broker {}: store: {}", opts.core.id, p);
    last_commit = steady::now();
    next_maintain = last_commit + std::chrono::seconds{1};
    b.store_ids_from(log->next_id());
    if (!opts.quiet && restored > 0)
      spdlog::info("plexus-broker {}: restored {} message(s) to durable queues in {} ms",
                   opts.core.id, restored,
                   std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - started).count());
    if (store_orphans > 0)
      spdlog::warn("plexus-broker {}: store: {} recovered message(s) not restored, left on disk",
                   opts.core.id, store_orphans);
  }

  // Each loop pass, after inputs and timers and before the outputs go:
  // what the core asked of the store is written, committed as the policy
  // says, and the publishes it made durable are confirmed (in this pass).
  // A store that fails to write or sync stops the broker: after a failed
  // fdatasync nothing more can be promised (see brokers/store/README.md);
  // a restart recovers what the disk holds.
  void sync_store(time_point now, bool final_pass = false) {
    if (!log) return;
    try {
      const bool always = opts.store_sync_policy == store_sync::always;
      for (auto& op : b.take_store_ops()) {
        if (op.op == store_op::kind::ack) {
          log->ack(op.id);
          continue;
        }
        auto id = log->append(op.group, op.body);
        if (id != op.id)
          throw std::logic_error("store: the core numbered an append " + std::to_string(op.id)
                                 + ", the store gave it " + std::to_string(id));
        if (always) commit_store();
      }
      auto t = steady::now();
      if (log->pending()
          && (final_pass || opts.store_sync_policy != store_sync::interval
              || t - last_commit >= opts.store_sync_interval))
        commit_store();
      // After the commit: reclaiming works on what is written (what it
      // deletes or moves is made durable by the next commit).
      if (t >= next_maintain) {
        log->maintain();
        next_maintain = t + std::chrono::seconds{1};
      }
    } catch (const std::exception& e) {
      spdlog::critical("plexus-broker {}: store {} failed: {}; stopping (a restart recovers what "
                       "the disk holds)", opts.core.id, opts.store, e.what());
      throw;
    }
    b.stored(log->durable_id(), now);
  }

  void commit_store() {
    if (!log->pending()) return;
    log->commit();
    ++store_commits;
    last_commit = steady::now();
  }

  // How long the loop may sleep before the store wants a commit (interval).
  long store_wait(long timeout) const {
    if (!log || opts.store_sync_policy != store_sync::interval || !log->pending()) return timeout;
    auto left = std::chrono::ceil<std::chrono::milliseconds>(last_commit + opts.store_sync_interval
                                                             - steady::now());
    return std::clamp<long>(left.count(), 0, timeout);
  }

  // /metrics serves the last text the loop rendered (the core is the loop's).
  void bind_metrics() {
    http = std::make_unique<httplib::Server>();
    http->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      std::lock_guard lock{metrics_m};
      res.set_content(metrics_text, "text/plain; version=0.0.4; charset=utf-8");
    });
    metrics_port = bind_metrics_port(*http, opts.metrics_port);
  }

  void render_metrics(time_point now) {
    if (!http || now < next_metrics) return;
    next_metrics = now + opts.core.stats_interval;
    shell_figures f;
    f.handshakes_in_progress = gate.in_progress(steady::now());
    f.handshakes_refused = gate.refused();
    f.handshakes_failed = gate.failed();
    if (log) {
      f.store = true;
      f.store_disk_bytes = log->disk_bytes();
      f.store_live_bytes = log->live_bytes();
      f.store_live_messages = log->live_messages();
      f.store_segments = log->segments();
      f.store_fsyncs = log->fsyncs();
      f.store_commits = store_commits;
      f.store_torn_tails_cut = log->torn_tails_cut();
      f.store_orphans = store_orphans;
    }
    auto text = prometheus_metrics(b, f);
    std::lock_guard lock{metrics_m};
    metrics_text = std::move(text);
  }

  // Clients fail over to what WELCOME lists: with nothing configured, the
  // endpoint actually bound (a port picked for `:*` included).
  static config advertised(config c, const std::string& bound) {
    if (c.advertise.empty() && !bound.starts_with("inproc://")) c.advertise.push_back(bound);
    return c;
  }

  // With a secret key: the ROUTER is a CURVE server, and the ZAP handler
  // (bound first, so no handshake ever goes unchecked) admits the listed
  // keys. Our links default to the broker's own key pair.
  void secure_router() {
    if (opts.curve_secret_key.empty()) return;
    if (!zmq_has("curve"))
      throw std::runtime_error("--auth needs CurveZMQ, and this libzmq was built without it");
    char pub[41] = {};
    if (zmq_curve_public(pub, opts.curve_secret_key.c_str()) != 0)
      throw std::runtime_error("the broker's secret key is not a CURVE key (40 characters of Z85)");
    if (opts.link_secret_key.empty()) {
      opts.link_public_key = pub;
      opts.link_secret_key = opts.curve_secret_key;
      opts.link_server_key = pub;
    }
    // Whoever holds this broker's secret key could be it anyway: brokers
    // sharing a key pair (as a cluster's clients need) link unlisted.
    (void)opts.admitted.admit(pub, std::string{peer_user_id});
    zap = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::rep);
    zap->set(zmq::sockopt::linger, 0);
    try {
      zap->bind(zap_endpoint);
    } catch (const zmq::error_t& e) {
      throw std::runtime_error(std::string{"cannot start the ZAP handler on "} + zap_endpoint
                               + " (one per ZeroMQ context): " + e.what());
    }
    router.set(zmq::sockopt::zap_domain, "plexus");
    router.set(zmq::sockopt::curve_server, 1);
    router.set(zmq::sockopt::curve_secretkey, opts.curve_secret_key);
  }

  // --insecure: a broker anyone may reach and use says so, now and then.
  void warn_if_insecure(time_point now) {
    if (!opts.insecure || now < next_insecure_warning) return;
    next_insecure_warning = now + opts.insecure_warning_every;
    spdlog::warn("plexus-broker {}: --insecure: {} takes anyone without authentication "
                 "(see --auth)", opts.core.id, bound);
  }

  // A refused handshake is worth a line, but one who keeps knocking must
  // not fill the log: at most a line every 10 s, with the count.
  void note_refusal(const std::string& why) {
    ++refusals;
    auto t = steady::now();
    if (opts.quiet || (last_refusal_line != steady::time_point{} && t - last_refusal_line < std::chrono::seconds{10}))
      return;
    spdlog::warn("plexus-broker {}: refused {} connection(s) in their handshake; the last: {}",
                 opts.core.id, refusals, why);
    refusals = 0;
    last_refusal_line = t;
  }

  // Answers the ZAP requests libzmq has queued (one per handshake).
  void serve_zap() {
    for (int i = 0; i < 256; ++i) {
      zap_parts.clear();
      if (!zmq::recv_multipart(*zap, std::back_inserter(zap_parts), zmq::recv_flags::dontwait))
        return;
      zap_frames.clear();
      for (auto& p : zap_parts) zap_frames.emplace_back(static_cast<const char*>(p.data()), p.size());
      auto answer = zap_reply(zap_frames, opts.admitted);
      if (answer[2] != "200") note_refusal(answer[3]);
      for (std::size_t k = 0; k < answer.size(); ++k)
        zap->send(zmq::buffer(answer[k]),
                  k + 1 < answer.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }

  std::string bind_router() {
    secure_router();
    const auto& lim = opts.core.limits;
    router.set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(lim.max_message_bytes()));
    router.set(zmq::sockopt::router_mandatory, 1);
    router.set(zmq::sockopt::handshake_ivl, static_cast<int>(opts.handshake_timeout.count()));
    router.set(zmq::sockopt::sndhwm, opts.sndhwm);
    router.set(zmq::sockopt::rcvhwm, opts.rcvhwm);
    router.set(zmq::sockopt::linger, 500);
    // ZMTP heartbeats find dead TCP peers the application would not hear
    // from (they are off by default in ZeroMQ).
    auto hb = static_cast<int>(opts.core.heartbeat.count());
    router.set(zmq::sockopt::heartbeat_ivl, hb);
    router.set(zmq::sockopt::heartbeat_timeout, hb * static_cast<int>(opts.core.liveness));
    if (!opts.listen.starts_with("inproc://")) watch_handshakes();
    try {
      router.bind(opts.listen);
    } catch (const zmq::error_t& e) {
      throw std::runtime_error("cannot listen on " + opts.listen + ": " + e.what());
    }
    auto at = router.get(zmq::sockopt::last_endpoint);
    if (at.starts_with("tcp://")) listen_port = std::stoi(at.substr(at.rfind(':') + 1));
    return at.empty() ? opts.listen : at; // inproc reports nothing
  }

  // ---------------------------------------------------------------- handshakes

  // The ROUTER's monitor, set before it binds: no accepted connection
  // goes uncounted. Its queue is deep, and the gate forgets what it
  // misses after the handshake timeout anyway.
  void watch_handshakes() {
    auto addr = "inproc://plexus-router-" + std::to_string(reinterpret_cast<std::uintptr_t>(this));
    if (zmq_socket_monitor(router.handle(), addr.c_str(),
                           ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED | handshake_failed)
        != 0)
      throw std::runtime_error("cannot monitor the broker's socket");
    router_monitor = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::pair);
    router_monitor->set(zmq::sockopt::rcvhwm, 100'000);
    router_monitor->connect(addr);
  }

  void handshake_events() {
    for (int i = 0; i < 4096 && router_monitor; ++i) {
      zmq::message_t event, where;
      if (!router_monitor->recv(event, zmq::recv_flags::dontwait)) return;
      if (event.more()) (void)router_monitor->recv(where, zmq::recv_flags::dontwait);
      std::uint16_t id = 0;
      std::int32_t value = 0;
      if (event.size() < sizeof id + sizeof value) continue;
      std::memcpy(&id, event.data(), sizeof id);
      std::memcpy(&value, static_cast<const char*>(event.data()) + sizeof id, sizeof value);
      auto t = steady::now();
      if (id == ZMQ_EVENT_ACCEPTED) {
        if (!gate.accepted(t)) refuse_handshake(value);
      } else {
        gate.finished(id != ZMQ_EVENT_HANDSHAKE_SUCCEEDED, t);
      }
    }
  }

  // Ends a connection libzmq just accepted: shutdown(2), not close (the fd
  // stays libzmq's, which sees the hang-up and cleans up as for any).
  // Only a TCP socket on our port: a fd number libzmq has already closed
  // and reused for something else is left alone.
  void refuse_handshake(int fd) {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return;
    int port = a.ss_family == AF_INET    ? ntohs(reinterpret_cast<sockaddr_in&>(a).sin_port)
               : a.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6&>(a).sin6_port)
                                         : -1;
    if (port != listen_port) return;
    ::shutdown(fd, SHUT_RDWR);
    note_refusal(std::to_string(opts.max_handshakes)
                 + " connections were in their handshake (--max-handshakes)");
  }

  // ---------------------------------------------------------------- links

  void open_link(link& l) {
    const auto& lim = opts.core.limits;
    l.sock = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::dealer);
    l.sock->set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(lim.max_message_bytes()));
    l.sock->set(zmq::sockopt::linger, 0);
    l.sock->set(zmq::sockopt::sndhwm, opts.sndhwm);
    l.sock->set(zmq::sockopt::rcvhwm, opts.rcvhwm);
    l.sock->set(zmq::sockopt::immediate, 1);
    if (!opts.link_secret_key.empty()) {
      l.sock->set(zmq::sockopt::curve_serverkey, opts.link_server_key);
      l.sock->set(zmq::sockopt::curve_publickey, opts.link_public_key);
      l.sock->set(zmq::sockopt::curve_secretkey, opts.link_secret_key);
    }
    auto addr = "inproc://plexus-link-" + std::to_string(reinterpret_cast<std::uintptr_t>(&l)) + "-"
                + std::to_string(++monitors);
    // A CURVE link is up once its handshake is (a peer that refuses our
    // key accepts the TCP connection first).
    int events = ZMQ_EVENT_DISCONNECTED
                 | (opts.link_secret_key.empty()
                      ? ZMQ_EVENT_CONNECTED
                      : ZMQ_EVENT_HANDSHAKE_SUCCEEDED | handshake_failed);
    if (zmq_socket_monitor(l.sock->handle(), addr.c_str(), events) != 0)
      throw std::runtime_error("cannot monitor the link to " + l.endpoint);
    l.monitor = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::pair);
    l.monitor->connect(addr);
    try {
      l.sock->connect(l.endpoint);
    } catch (const zmq::error_t& e) {
      spdlog::error("plexus-broker {}: cannot dial peer {}: {}", opts.core.id, l.endpoint, e.what());
      l.self = true; // a malformed seed: never again
      close_link(l, wall_now());
    }
  }

  void close_link(link& l, time_point now) {
    if (l.conn) {
      conn_of_link.erase(l.conn);
      b.disconnected(l.conn, now);
      l.conn = 0;
    }
    if (l.sock) zmq_socket_monitor(l.sock->handle(), nullptr, 0);
    l.monitor.reset();
    l.sock.reset();
    l.backoff = l.backoff.count() == 0
                  ? opts.peer_retry_min
                  : std::min(l.backoff * 2, opts.peer_retry_max);
    l.next_attempt = steady::now() + l.backoff;
  }

  // Connection events of one link's socket.
  void link_events(link& l, time_point now) {
    while (l.monitor) {
      zmq::message_t event, where;
      if (!l.monitor->recv(event, zmq::recv_flags::dontwait)) return;
      if (event.more()) (void)l.monitor->recv(where, zmq::recv_flags::dontwait);
      std::uint16_t id = 0;
      if (event.size() >= sizeof id) std::memcpy(&id, event.data(), sizeof id);
      auto up = opts.link_secret_key.empty() ? ZMQ_EVENT_CONNECTED : ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
      if (id & handshake_failed) {
        if (!opts.quiet && !l.said_refused)
          spdlog::warn("plexus-broker {}: link to peer {} refused: {}", opts.core.id, l.endpoint,
                       id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                         ? "the peer does not list our key in its auth file's [[peers]]"
                         : "the CURVE handshake failed (is --creds' broker_key the peer's key?)");
        l.said_refused = true;
        close_link(l, now);
      } else if (id == up && !l.conn) {
        l.said_refused = false;
        l.conn = next_conn++;
        conn_of_link.emplace(l.conn, &l);
        l.backoff = {};
        b.dial(l.conn, now);
        if (zap) b.identify(l.conn, peer_user_id, now); // it proved the cluster's key
      } else if (id == ZMQ_EVENT_DISCONNECTED) {
        if (!opts.quiet && l.conn)
          spdlog::warn("plexus-broker {}: link to peer {} lost", opts.core.id, l.endpoint);
        close_link(l, now);
      }
    }
  }

  void tend_links(time_point now) {
    auto t = steady::now();
    for (auto& l : links) {
      if (l->self) continue;
      if (!l->sock && t >= l->next_attempt) open_link(*l);
      link_events(*l, now);
    }
  }

  void receive_link(link& l, std::vector<zmq::message_t>& parts, time_point now) {
    for (int i = 0; i < 4096 && l.sock; ++i) {
      parts.clear();
      if (!zmq::recv_multipart(*l.sock, std::back_inserter(parts), zmq::recv_flags::dontwait))
        return;
      if (l.conn) handle(l.conn, parts, 0, now);
    }
  }

  // `first` is the message's first frame after the routing id: libzmq puts
  // the user id the ZAP handler gave on every message of a connection.
  conn_id id_of(const zmq::message_t& routing, zmq::message_t& first, time_point now) {
    // Consecutive messages mostly come from one peer: no string, no hash.
    if (last_conn && routing.to_string_view() == last_routing) return last_conn;
    auto key = routing.to_string();
    auto [it, fresh] = by_routing.try_emplace(key, 0);
    if (fresh) {
      it->second = next_conn++;
      routing_of.emplace(it->second, key);
      if (zap) {
        const char* user = zmq_msg_gets(first.handle(), "User-Id");
        b.identify(it->second, user ? user : "", now);
      }
    }
    last_routing = key;
    last_conn = it->second;
    return it->second;
  }

  // A message from a client or a peer's link (through the ROUTER, which
  // prepends the routing id) or from one of our links (`skip` 0). Returns
  // how many envelopes it carried (a bad frame counts as one).
  std::size_t handle(conn_id c, std::vector<zmq::message_t>& parts, std::size_t skip,
                     time_point now) {
    if (parts.size() <= skip) return 1;
    std::string_view first{static_cast<const char*>(parts[skip].data()), parts[skip].size()};
    if (parts.size() == skip + 1 && wire::is_batch_frame(first)) {
      auto err = wire::decode_batch(first, opts.core.limits, batch);
      if (err) {
        b.reject(c, err, now);
        return 1;
      }
      for (auto& e : batch) b.receive(c, e, now);
      return batch.size();
    }
    frames.clear();
    for (std::size_t i = skip; i < parts.size(); ++i)
      frames.emplace_back(static_cast<const char*>(parts[i].data()), parts[i].size());
    if (auto err = wire::decode_message(frames, opts.core.limits, entry)) {
      b.reject(c, err, now);
      return 1;
    }
    b.receive(c, entry, now);
    return 1;
  }

  // tune_allocator keeps up to 64 MiB of freed heap for the next burst;
  // once no message has come in or gone out for a second (heartbeats do
  // not count), it goes back to the kernel, once per quiet spell, so a
  // burst does not leave the broker big.
  void give_back_idle_memory(time_point now) {
    const auto& c = b.stats();
    auto traffic = c.msgs_in + c.msgs_out + c.forwards_in;
    if (traffic != last_traffic) {
      last_traffic = traffic;
      last_busy = now;
      trimmed = false;
      return;
    }
    if (trimmed || now - last_busy < std::chrono::seconds{1} || b.has_output()) return;
    trimmed = true;
    malloc_trim(0);
  }

  // Sends as many of `outs` as the peer takes; a batch when there are
  // several, a plain message when there is one.
  std::size_t send(conn_id c, std::span<const output> outs) {
    zmq::socket_t* sock = &router;
    const std::string* routing = nullptr;
    if (auto l = conn_of_link.find(c); l != conn_of_link.end()) {
      sock = l->second->sock.get();
    } else if (auto r = routing_of.find(c); r != routing_of.end()) {
      routing = &r->second;
    } else {
      return outs.size(); // gone
    }
    // A client that reads MSG runs gets consecutive MSGs of one
    // subscription as one entry (peers never ask for them).
    const bool runs = routing != nullptr && b.takes_msg_runs(c);
    std::size_t sent = 0;
    try {
      while (sent < outs.size()) {
        auto n = outs.size() - sent;
        if (n == 1) {
          if (!send_single(*sock, routing, outs[sent])) return sent;
          ++sent;
          continue;
        }
        auto taken = send_batch(*sock, routing, outs.subspan(sent), runs);
        if (taken == 0) return sent;
        sent += taken;
      }
    } catch (const zmq::error_t& e) {
      if (e.num() != EHOSTUNREACH) throw;
      unreachable.push_back(c); // the peer is gone
      return outs.size();
    }
    return sent;
  }

  // `routing` is the ROUTER's id for the peer; null on a link's DEALER.
  bool send_single(zmq::socket_t& sock, const std::string* routing, const output& o) {
    scratch.clear();
    o.encode_header(scratch);
    bool with_payload = wire::carries_payload(o.kind);
    auto more = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
    if (routing && !sock.send(zmq::buffer(*routing), more)) return false;
    // Once the first frame is accepted, the rest of the message cannot block.
    auto last = with_payload ? more : zmq::send_flags::dontwait;
    if (!sock.send(zmq::buffer(scratch), last)) return false; // a DEALER that would block
    if (with_payload) sock.send(zmq::buffer(o.payload().data(), o.payload().size()),
                                zmq::send_flags::dontwait);
    return true;
  }

  std::size_t send_batch(zmq::socket_t& sock, const std::string* routing,
                         std::span<const output> outs, bool runs) {
    scratch.clear();
    wire::batch_writer w{scratch};
    w.begin();
    const auto max_bytes = std::min(opts.frame_bytes(), opts.core.limits.max_batch_bytes / 2);
    const auto n = fill_batch(w, outs, opts.batch_max, max_bytes, runs);
    w.finish();
    if (routing
        && !sock.send(zmq::buffer(*routing), zmq::send_flags::sndmore | zmq::send_flags::dontwait))
      return 0;
    if (!sock.send(zmq::buffer(scratch), zmq::send_flags::dontwait)) return 0;
    return n;
  }

  void flush(time_point now) {
    b.flush([&](conn_id c, std::span<const output> outs) { return send(c, outs); });
    blocked = b.has_output();
    for (auto c : unreachable) b.disconnected(c, now);
    unreachable.clear();
    for (auto c : b.take_self_links())
      if (auto l = conn_of_link.find(c); l != conn_of_link.end()) {
        if (!opts.quiet)
          spdlog::info("plexus-broker {}: seed {} is this broker; not dialing it",
                       opts.core.id, l->second->endpoint);
        l->second->self = true;
      }
    for (auto c : b.take_closed()) {
      if (auto l = conn_of_link.find(c); l != conn_of_link.end()) {
        // The core gave up on this link (silence, BYE, a peer lost): dial anew.
        auto& dead = *l->second;
        conn_of_link.erase(l);
        dead.conn = 0;
        close_link(dead, now);
      }
    }
    // A client's routing id is kept until the core is done with it: its
    // BYE (why the broker closed it) still has to go out.
    for (auto c : b.take_gone()) {
      if (c == last_conn) last_conn = 0;
      if (auto r = routing_of.find(c); r != routing_of.end()) {
        by_routing.erase(r->second);
        routing_of.erase(r);
      }
    }
  }

  void run(const std::atomic<bool>& stop) {
    if (!opts.quiet) spdlog::info("plexus-broker {} listening on {}", opts.core.id, bound);
    restore_durables();
    if (!opts.quiet && !links.empty())
      spdlog::info("plexus-broker {}: linking with {} peer(s)", opts.core.id, links.size());
    std::thread http_thread;
    // However run() ends (a failing store throws out of the loop), the
    // HTTP thread is stopped and joined first.
    struct http_joiner {
      httplib::Server* http;
      std::thread& t;
      ~http_joiner() {
        if (!t.joinable()) return;
        http->stop();
        t.join();
      }
    } join_http{http.get(), http_thread};
    if (http) {
      render_metrics(wall_now());
      http_thread = std::thread([this] { http->listen_after_bind(); });
      if (!opts.quiet)
        spdlog::info("plexus-broker {}: metrics on http://127.0.0.1:{}/metrics", opts.core.id, metrics_port);
    }
    auto next_tick = wall_now();
    std::vector<zmq::message_t> parts;
    std::vector<zmq::pollitem_t> items;
    while (!stop.load(std::memory_order_relaxed)) {
      auto now = wall_now();
      tend_links(now);
      auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - now);
      long timeout = store_wait(blocked ? 1 : std::clamp<long>(wait.count(), 0, 50));
      items.assign(1, {router.handle(), 0, ZMQ_POLLIN, 0});
      if (zap) items.push_back({zap->handle(), 0, ZMQ_POLLIN, 0});
      if (router_monitor) items.push_back({router_monitor->handle(), 0, ZMQ_POLLIN, 0});
      for (auto& l : links) {
        if (!l->sock) continue;
        items.push_back({l->sock->handle(), 0, ZMQ_POLLIN, 0});
        items.push_back({l->monitor->handle(), 0, ZMQ_POLLIN, 0});
      }
      try {
        zmq::poll(items.data(), items.size(), std::chrono::milliseconds{timeout});
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
      now = wall_now();
      handshake_events();
      if (zap) serve_zap(); // before the ROUTER: a handshake waits on it
      // Read what is there, bounded in envelopes (a batch frame holds
      // hundreds), so timers keep their turn. What an input gives a
      // connection goes out at once, not once the rest is read: behind a
      // publisher's flood, a CREDIT's deliveries waited for thousands of
      // PUBs while the subscriber's pool ran dry. (While a connection's
      // queue is blocked, once a turn: its batch would be built in vain.)
      for (std::size_t envelopes = 0; envelopes < 4096;) {
        parts.clear();
        auto got = zmq::recv_multipart(router, std::back_inserter(parts),
                                       zmq::recv_flags::dontwait);
        if (!got) break;
        // The routing id comes first.
        envelopes += parts.size() >= 2 ? handle(id_of(parts[0], parts[1], now), parts, 1, now) : 1;
        if (!blocked && b.has_output()) flush(now);
      }
      for (auto& l : links) receive_link(*l, parts, now);
      if (now >= next_tick) {
        b.tick(now);
        next_tick = b.next_tick();
        render_metrics(now);
        give_back_idle_memory(now);
        warn_if_insecure(now);
      }
      sync_store(now);
      flush(now);
    }
    if (http) {
      http->stop();
      http_thread.join();
    }
    if (router_monitor) {
      zmq_socket_monitor(router.handle(), nullptr, 0);
      router_monitor.reset();
    }
    auto now = wall_now();
    sync_store(now, true); // what is acked stays acked
    b.shutdown(now);
    flush(now);
    for (auto& l : links) { // the BYEs on our links get a moment to leave
      if (!l->sock) continue;
      l->sock->set(zmq::sockopt::linger, 200);
      zmq_socket_monitor(l->sock->handle(), nullptr, 0);
      l->monitor.reset();
      l->sock.reset();
    }
    if (!opts.quiet) spdlog::info("plexus-broker {} stopped", opts.core.id);
  }

  server_options opts;
  std::unique_ptr<store::log> log; // with a store: opened before anything else
  steady::time_point last_commit{}, next_maintain{};
  std::uint64_t store_commits = 0, store_orphans = 0;
  bool restored_once = false; // run() may be called again (start, stop, start)
  std::unique_ptr<zmq::context_t> owned;
  zmq::context_t& ctx;
  zmq::socket_t router;
  std::unique_ptr<zmq::socket_t> zap; // before `bound`: bind_router() sets it
  std::vector<zmq::message_t> zap_parts;
  std::vector<std::string_view> zap_frames;
  std::uint64_t refusals = 0; // since the last line about them
  handshake_gate gate;
  std::unique_ptr<zmq::socket_t> router_monitor; // accepted connections, handshake outcomes
  int listen_port = -1; // tcp
  time_point next_insecure_warning{};
  steady::time_point last_refusal_line{};
  std::string bound; // before `b`, which is built with it
  core b;
  std::unordered_map<std::string, conn_id> by_routing;
  std::unordered_map<conn_id, std::string> routing_of;
  conn_id next_conn = 1;
  std::string last_routing; // id_of's last answer (0: none)
  conn_id last_conn = 0;
  std::vector<wire::entry> batch;
  std::vector<std::string_view> frames;
  wire::entry entry;
  std::string scratch;
  std::vector<conn_id> unreachable;
  bool blocked = false;
  std::vector<std::unique_ptr<link>> links;
  std::unique_ptr<httplib::Server> http; // metrics
  int metrics_port = 0;
  std::mutex metrics_m;
  std::string metrics_text;
  time_point next_metrics{};
  std::unordered_map<conn_id, link*> conn_of_link;
  std::uint64_t monitors = 0;
  std::uint64_t last_traffic = 0;
  time_point last_busy{};
  bool trimmed = false;
};

void tune_allocator() {
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  mallopt(M_TOP_PAD, 64 << 20);
}

server::server(server_options opts, zmq::context_t* ctx)
  : impl_(std::make_unique<impl>(std::move(opts), ctx)) {}

server::~server() { stop(); }

const std::string& server::endpoint() const noexcept { return impl_->bound; }

int server::metrics_port() const noexcept { return impl_->metrics_port; }

void server::run(const std::atomic<bool>& stop) { impl_->run(stop); }

void server::start() {
  stop_ = false;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "plexus-broker"); // for top -H, perf, gdb
    impl_->run(stop_);
  });
}

void server::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

} // namespace plexus::broker
