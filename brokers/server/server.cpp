// SPDX-License-Identifier: Apache-2.0
#include "server.hpp"

#include <malloc.h>
#include <pthread.h>

#include <chrono>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include <spdlog/spdlog.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

namespace plexus::broker {

namespace {

time_point wall_now() {
  return std::chrono::duration_cast<time_point>(
    std::chrono::system_clock::now().time_since_epoch());
}

} // namespace

struct server::impl {
  impl(server_options o, zmq::context_t* shared)
    : opts(std::move(o)), owned(shared ? nullptr : std::make_unique<zmq::context_t>(1)),
      ctx(shared ? *shared : *owned), router(ctx, zmq::socket_type::router), b(opts.core) {
    const auto& lim = opts.core.limits;
    router.set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(lim.max_message_bytes()));
    router.set(zmq::sockopt::router_mandatory, 1);
    router.set(zmq::sockopt::sndhwm, opts.sndhwm);
    router.set(zmq::sockopt::rcvhwm, opts.rcvhwm);
    router.set(zmq::sockopt::linger, 500);
    // ZMTP heartbeats find dead TCP peers the application would not hear
    // from (they are off by default in ZeroMQ).
    auto hb = static_cast<int>(opts.core.heartbeat.count());
    router.set(zmq::sockopt::heartbeat_ivl, hb);
    router.set(zmq::sockopt::heartbeat_timeout, hb * static_cast<int>(opts.core.liveness));
    try {
      router.bind(opts.listen);
    } catch (const zmq::error_t& e) {
      throw std::runtime_error("cannot listen on " + opts.listen + ": " + e.what());
    }
    bound = router.get(zmq::sockopt::last_endpoint);
    if (bound.empty()) bound = opts.listen; // inproc reports nothing
  }

  conn_id id_of(const zmq::message_t& routing) {
    // Consecutive messages mostly come from one peer: no string, no hash.
    if (last_conn && routing.to_string_view() == last_routing) return last_conn;
    auto key = routing.to_string();
    auto [it, fresh] = by_routing.try_emplace(key, 0);
    if (fresh) {
      it->second = next_conn++;
      routing_of.emplace(it->second, key);
    }
    last_routing = key;
    last_conn = it->second;
    return it->second;
  }

  void handle(std::vector<zmq::message_t>& parts, time_point now) {
    if (parts.size() < 2) return; // ROUTER always prepends the id
    auto c = id_of(parts[0]);
    std::string_view first{static_cast<const char*>(parts[1].data()), parts[1].size()};
    if (parts.size() == 2 && wire::is_batch_frame(first)) {
      auto err = wire::decode_batch(first, opts.core.limits, batch);
      if (err) {
        b.reject(c, err, now);
        return;
      }
      for (auto& e : batch) b.receive(c, e, now);
      return;
    }
    frames.clear();
    for (std::size_t i = 1; i < parts.size(); ++i)
      frames.emplace_back(static_cast<const char*>(parts[i].data()), parts[i].size());
    if (auto err = wire::decode_message(frames, opts.core.limits, entry)) {
      b.reject(c, err, now);
      return;
    }
    b.receive(c, entry, now);
  }

  // Sends as many of `outs` as the peer takes; a batch when there are
  // several, a plain message when there is one.
  std::size_t send(conn_id c, std::span<const output> outs) {
    auto r = routing_of.find(c);
    if (r == routing_of.end()) return outs.size();
    std::size_t sent = 0;
    try {
      while (sent < outs.size()) {
        auto n = outs.size() - sent;
        if (n == 1) {
          if (!send_single(r->second, outs[sent])) return sent;
          ++sent;
          continue;
        }
        auto taken = send_batch(r->second, outs.subspan(sent));
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

  bool send_single(const std::string& routing, const output& o) {
    scratch.clear();
    wire::encode_header(o.header(), scratch);
    bool with_payload = wire::carries_payload(o.kind);
    auto more = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
    if (!router.send(zmq::buffer(routing), more)) return false;
    // Once the id is accepted, the rest of the message cannot block.
    router.send(zmq::buffer(scratch), with_payload ? more : zmq::send_flags::dontwait);
    if (with_payload) router.send(zmq::buffer(o.payload().data(), o.payload().size()),
                                  zmq::send_flags::dontwait);
    return true;
  }

  std::size_t send_batch(const std::string& routing, std::span<const output> outs) {
    scratch.clear();
    wire::batch_writer w{scratch};
    w.begin();
    const auto max_bytes = std::min(opts.frame_bytes(), opts.core.limits.max_batch_bytes / 2);
    std::size_t n = 0;
    while (n < outs.size() && n < opts.batch_max
           && (n == 0 || w.bytes() + outs[n].payload().size() + 64 <= max_bytes)) {
      w.add(outs[n].header(), outs[n].payload());
      ++n;
    }
    w.finish();
    if (!router.send(zmq::buffer(routing), zmq::send_flags::sndmore | zmq::send_flags::dontwait))
      return 0;
    router.send(zmq::buffer(scratch), zmq::send_flags::dontwait);
    return n;
  }

  void flush(time_point now) {
    b.flush([&](conn_id c, std::span<const output> outs) { return send(c, outs); });
    blocked = b.has_output();
    for (auto c : unreachable) b.disconnected(c, now);
    unreachable.clear();
    for (auto c : b.take_closed()) {
      if (c == last_conn) last_conn = 0;
      if (auto r = routing_of.find(c); r != routing_of.end()) {
        by_routing.erase(r->second);
        routing_of.erase(r);
      }
    }
  }

  void run(const std::atomic<bool>& stop) {
    if (!opts.quiet) spdlog::info("plexus-broker {} listening on {}", opts.core.id, bound);
    auto next_tick = wall_now();
    std::vector<zmq::message_t> parts;
    while (!stop.load(std::memory_order_relaxed)) {
      auto now = wall_now();
      auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - now);
      long timeout = blocked ? 1 : std::clamp<long>(wait.count(), 0, 50);
      zmq::pollitem_t items[] = {{router.handle(), 0, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, 1, std::chrono::milliseconds{timeout});
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
      now = wall_now();
      // Read what is there (bounded, so timers and sends keep their turn).
      for (int i = 0; i < 4096; ++i) {
        parts.clear();
        auto got = zmq::recv_multipart(router, std::back_inserter(parts),
                                       zmq::recv_flags::dontwait);
        if (!got) break;
        handle(parts, now);
      }
      if (now >= next_tick) {
        b.tick(now);
        next_tick = b.next_tick();
      }
      flush(now);
    }
    auto now = wall_now();
    b.shutdown(now);
    flush(now);
    if (!opts.quiet) spdlog::info("plexus-broker {} stopped", opts.core.id);
  }

  server_options opts;
  std::unique_ptr<zmq::context_t> owned;
  zmq::context_t& ctx;
  zmq::socket_t router;
  core b;
  std::string bound;
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
};

void tune_allocator() {
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  mallopt(M_TOP_PAD, 64 << 20);
}

server::server(server_options opts, zmq::context_t* ctx)
  : impl_(std::make_unique<impl>(std::move(opts), ctx)) {}

server::~server() { stop(); }

const std::string& server::endpoint() const noexcept { return impl_->bound; }

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
