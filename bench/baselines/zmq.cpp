// SPDX-License-Identifier: Apache-2.0
#include "baselines/zmq.hpp"

#include <cerrno>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>

#include <zmq.hpp>

namespace plexus::bench {

namespace {

constexpr int recv_timeout_ms = 20; // how often the receiver sees a stop request

/// HWM 0 = unlimited on every socket of the path. ZeroMQ's default (1000
/// messages) makes PUB and XPUB drop silently as soon as the subscriber
/// lags, which would measure loss, not throughput; unlimited queues instead
/// grow in memory (at most count x size, ~200 MB for 200k x 1 KiB).
void unlimited(zmq::socket_t& s) {
  s.set(zmq::sockopt::sndhwm, 0);
  s.set(zmq::sockopt::rcvhwm, 0);
  s.set(zmq::sockopt::linger, 0); // never block teardown on a lossy run's leftovers
}

zmq::socket_t bound_socket(zmq::context_t& ctx, zmq::socket_type type, std::string& endpoint) {
  zmq::socket_t s{ctx, type};
  unlimited(s);
  s.bind("tcp://127.0.0.1:*");
  endpoint = s.get(zmq::sockopt::last_endpoint);
  return s;
}

/// zmq_proxy(XSUB, XPUB) on its own thread, which owns both sockets.
/// Destruction shuts its context down (the proxy returns with ETERM), then
/// joins.
class proxy_thread {
public:
  proxy_thread(zmq::context_t& ctx, zmq::socket_t frontend, zmq::socket_t backend,
               message_sink& sink)
    : ctx_(ctx),
      thread_([f = std::move(frontend), b = std::move(backend), &sink]() mutable {
        try {
          zmq::proxy(f, b);
        } catch (const zmq::error_t& e) {
          if (e.num() != ETERM) sink.fail(std::current_exception());
        }
      }) {}
  ~proxy_thread() {
    ctx_.shutdown();
    thread_.join();
  }
  proxy_thread(const proxy_thread&) = delete;
  proxy_thread& operator=(const proxy_thread&) = delete;

private:
  zmq::context_t& ctx_;
  std::thread thread_;
};

void receive(std::stop_token stop, zmq::socket_t sub, message_sink& sink) noexcept {
  try {
    zmq::message_t msg;
    while (!stop.stop_requested()) {
      if (!sub.recv(msg, zmq::recv_flags::none)) continue; // timed out
      sink.on_message(0, msg.size() > 0 ? *msg.data<char>() : '\0');
    }
  } catch (...) {
    sink.fail(std::current_exception());
  }
}

} // namespace

run_result zmq_proxy_pubsub_once(std::size_t size, std::size_t count) {
  // One context (so one I/O thread) per role, as publisher, proxy and
  // subscriber would have in three processes; one shared I/O thread would
  // serialise all four sockets' TCP work. Declaration order is teardown
  // order, reversed: the publisher closes, the receiver is joined (closing
  // SUB), the proxy stops, then the contexts terminate.
  zmq::context_t proxy_ctx{1}, sub_ctx{1}, pub_ctx{1};
  message_sink sink{1, warmup_count(count), count};
  std::string in, out;
  auto xsub = bound_socket(proxy_ctx, zmq::socket_type::xsub, in);
  auto xpub = bound_socket(proxy_ctx, zmq::socket_type::xpub, out);
  proxy_thread proxy{proxy_ctx, std::move(xsub), std::move(xpub), sink};

  zmq::socket_t sub{sub_ctx, zmq::socket_type::sub};
  unlimited(sub);
  sub.set(zmq::sockopt::rcvtimeo, recv_timeout_ms);
  sub.set(zmq::sockopt::subscribe, "");
  sub.connect(out);
  std::jthread receiver{receive, std::move(sub), std::ref(sink)};

  zmq::socket_t pub{pub_ctx, zmq::socket_type::pub};
  unlimited(pub);
  pub.connect(in);

  auto result = drive(
    sink, size, count,
    [&pub](std::span<const char> m) {
      pub.send(zmq::const_buffer{m.data(), m.size()}, zmq::send_flags::none);
    },
    [] {}); // nothing to flush: ZeroMQ's I/O thread sends as soon as it can
  if (sink.malformed() != 0)
    throw std::runtime_error("zmq: " + std::to_string(sink.malformed()) +
                             " messages arrived with a payload not sent");
  return result;
}

} // namespace plexus::bench
