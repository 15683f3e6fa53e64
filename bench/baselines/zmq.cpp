// SPDX-License-Identifier: Apache-2.0
#include "baselines/zmq.hpp"

#include <cstring>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include "scenarios/reqrep.hpp"

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

zmq::socket_t bound_socket(zmq::context_t& ctx, zmq::socket_type type, std::string& endpoint,
                           transport t = transport::tcp) {
  zmq::socket_t s{ctx, type};
  unlimited(s);
  s.bind(bind_endpoint(t));
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

void receive(std::stop_token stop, zmq::socket_t sub, message_sink& sink,
             std::size_t receiver) noexcept {
  try {
    zmq::message_t msg;
    while (!stop.stop_requested()) {
      if (!sub.recv(msg, zmq::recv_flags::none)) continue; // timed out
      sink.on_message(receiver, msg.size() > 0 ? *msg.data<char>() : '\0');
    }
  } catch (...) {
    sink.fail(std::current_exception());
  }
}

/// A SUB for everything at `endpoint`, read by its own thread into `sink`.
std::jthread subscriber(zmq::context_t& ctx, const std::string& endpoint, message_sink& sink,
                        std::size_t receiver) {
  zmq::socket_t sub{ctx, zmq::socket_type::sub};
  unlimited(sub);
  sub.set(zmq::sockopt::rcvtimeo, recv_timeout_ms);
  sub.set(zmq::sockopt::subscribe, "");
  sub.connect(endpoint);
  return std::jthread(receive, std::move(sub), std::ref(sink), receiver);
}

/// The timed run on `pub`, checking what arrived is what was sent.
run_result publish_all(zmq::socket_t& pub, message_sink& sink, std::size_t size,
                       std::size_t count) {
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

run_result zmq_proxy_run(std::size_t subscribers, std::size_t size, std::size_t count,
                         transport t) {
  // One context (so one I/O thread) per role, as publisher, proxy and
  // subscribers would have in separate processes; one shared I/O thread
  // would serialise all sockets' TCP work. Declaration order is teardown
  // order, reversed: the publisher closes, the receivers are joined
  // (closing SUBs), the proxy stops, then the contexts terminate.
  zmq::context_t proxy_ctx{1};
  std::vector<std::unique_ptr<zmq::context_t>> sub_ctxs;
  for (std::size_t i = 0; i < subscribers; ++i)
    sub_ctxs.push_back(std::make_unique<zmq::context_t>(1));
  zmq::context_t pub_ctx{1};
  message_sink sink{subscribers, warmup_count(count), count, message_sink::delivery::every};
  std::string in, out;
  auto xsub = bound_socket(proxy_ctx, zmq::socket_type::xsub, in, t);
  auto xpub = bound_socket(proxy_ctx, zmq::socket_type::xpub, out, t);
  // inproc endpoints are reachable from their own context only.
  auto ctx_of = [&](zmq::context_t& own) -> zmq::context_t& {
    return t == transport::inproc ? proxy_ctx : own;
  };
  proxy_thread proxy{proxy_ctx, std::move(xsub), std::move(xpub), sink};

  std::vector<std::jthread> receivers;
  for (std::size_t i = 0; i < subscribers; ++i)
    receivers.push_back(subscriber(ctx_of(*sub_ctxs[i]), out, sink, i));

  zmq::socket_t pub{ctx_of(pub_ctx), zmq::socket_type::pub};
  unlimited(pub);
  pub.connect(in);
  return publish_all(pub, sink, size, count);
}

} // namespace

run_result zmq_proxy_fanout_once(std::size_t subscribers, std::size_t size, std::size_t count) {
  return zmq_proxy_run(subscribers, size, count, transport::tcp);
}

namespace {

// ---------------------------------------------------------------- request/reply

/// The responder: PULL requests, PUSH each back unchanged.
void echo(std::stop_token stop, zmq::socket_t in, zmq::socket_t out, reply_log& log) noexcept {
  try {
    zmq::message_t msg;
    while (!stop.stop_requested()) {
      if (!in.recv(msg, zmq::recv_flags::none)) continue; // timed out
      (void)out.send(msg, zmq::send_flags::none);
    }
  } catch (const std::exception& e) {
    log.failed(std::string{"zmq responder: "} + e.what());
  }
}

/// The requester's receiving side: the first 8 bytes of a reply are its index.
void collect(std::stop_token stop, zmq::socket_t in, reply_log& log) noexcept {
  try {
    zmq::message_t msg;
    while (!stop.stop_requested()) {
      if (!in.recv(msg, zmq::recv_flags::none)) continue; // timed out
      std::uint64_t i = 0;
      if (msg.size() < sizeof i) {
        log.failed("zmq: a reply of " + std::to_string(msg.size()) + " bytes");
        continue;
      }
      std::memcpy(&i, msg.data(), sizeof i);
      log.answered(static_cast<std::size_t>(i));
    }
  } catch (const std::exception& e) {
    log.failed(std::string{"zmq requester: "} + e.what());
  }
}

zmq::socket_t pipe_end(zmq::context_t& ctx, zmq::socket_type type) {
  zmq::socket_t s{ctx, type};
  unlimited(s);
  s.set(zmq::sockopt::rcvtimeo, recv_timeout_ms);
  return s;
}

class zmq_reqrep final : public reqrep_system {
public:
  explicit zmq_reqrep(std::size_t size) : payload_(std::max(size, sizeof(std::uint64_t)), 'r') {
    std::string requests, replies;
    auto in = bound_socket(responder_ctx_, zmq::socket_type::pull, requests);
    in.set(zmq::sockopt::rcvtimeo, recv_timeout_ms);
    auto out = bound_socket(responder_ctx_, zmq::socket_type::push, replies);
    responder_ = std::jthread{echo, std::move(in), std::move(out), std::ref(log_)};
    auto back = pipe_end(requester_ctx_, zmq::socket_type::pull);
    back.connect(replies);
    receiver_ = std::jthread{collect, std::move(back), std::ref(log_)};
    push_.connect(requests);
  }

  void send(std::size_t i) override {
    auto index = static_cast<std::uint64_t>(i);
    std::memcpy(payload_.data(), &index, sizeof index);
    (void)push_.send(zmq::const_buffer{payload_.data(), payload_.size()}, zmq::send_flags::none);
  }

private:
  // One context per side, as two processes would have; the threads are
  // joined (closing their sockets) before the contexts terminate.
  zmq::context_t responder_ctx_{1}, requester_ctx_{1};
  zmq::socket_t push_ = pipe_end(requester_ctx_, zmq::socket_type::push);
  std::jthread responder_, receiver_;
  std::string payload_;
};

} // namespace

std::unique_ptr<reqrep_system> make_zmq_reqrep(std::size_t size) {
  return std::make_unique<zmq_reqrep>(size);
}

run_result zmq_proxy_pubsub_once(std::size_t size, std::size_t count, transport t) {
  return zmq_proxy_run(1, size, count, t);
}

run_result zmq_direct_pubsub_once(std::size_t size, std::size_t count, transport t) {
  // As above, a context per side (one for inproc), the receiver on its
  // own thread.
  zmq::context_t sub_ctx{1};
  zmq::context_t pub_ctx{1};
  message_sink sink{1, warmup_count(count), count};
  std::string endpoint;
  auto pub = bound_socket(pub_ctx, zmq::socket_type::pub, endpoint, t);
  auto receiver = subscriber(t == transport::inproc ? pub_ctx : sub_ctx, endpoint, sink, 0);
  return publish_all(pub, sink, size, count);
}

} // namespace plexus::bench
