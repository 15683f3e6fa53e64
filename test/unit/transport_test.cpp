// SPDX-License-Identifier: Apache-2.0
// The client connector against a broker server in the same process: over
// inproc (the node's embedded broker) and over loopback TCP.
#define BOOST_TEST_MODULE plexus_transport
#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <httplib.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "outbox.hpp"
#include "plexus/client.hpp"
#include "waiter.hpp"
#include "server.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using plexus::test::waiter;

namespace {

struct embedded {
  zmq::context_t ctx{1};
  broker::server srv;
  /// `tune` changes the server's options (a heartbeat, a liveness) first.
  explicit embedded(std::string endpoint = "inproc://plexus-test",
                    const std::function<void(broker::server_options&)>& tune = {})
    : srv(tuned(make_options(std::move(endpoint)), tune), &ctx) {
    srv.start();
  }
  ~embedded() { srv.stop(); }
  static broker::server_options tuned(broker::server_options o,
                                      const std::function<void(broker::server_options&)>& tune) {
    if (tune) tune(o);
    return o;
  }
  static broker::server_options make_options(std::string endpoint) {
    broker::server_options o;
    o.listen = std::move(endpoint);
    o.core.id = "embedded";
    o.quiet = true;
    return o;
  }
  client_options client_opts() {
    client_options o;
    o.endpoint = srv.endpoint();
    o.zmq_context = &ctx;
    return o;
  }
};

std::unique_ptr<broker::server> tcp_broker(zmq::context_t& ctx, std::string id) {
  auto o = embedded::make_options("tcp://127.0.0.1:*");
  o.core.id = std::move(id);
  auto s = std::make_unique<broker::server>(o, &ctx);
  s->start();
  return s;
}

client_options tcp_client(std::string endpoint, std::vector<std::string> fallback = {}) {
  client_options o;
  o.endpoint = std::move(endpoint);
  o.fallback = std::move(fallback);
  return o;
}

// What a handler keeps of a delivery (the view ends with the call).
struct held_message {
  std::uint32_t sid = 0;
  std::uint64_t seq = 0;
  std::string payload;
};

// Returns once every subscription `sub` made so far is live at the broker:
// one connection keeps its order, so when `pub`'s publish on a fresh
// subscription comes back, the earlier SUBs were handled.
void await_subscriptions(client& sub, client& pub) {
  auto ready = std::make_shared<std::atomic<bool>>(false); // outlives a late delivery
  auto sid = sub.subscribe("ready", [ready](const message_view&) { *ready = true; });
  waiter w;
  BOOST_TEST_REQUIRE(w.until([&] {
    pub.publish("ready", "?");
    return ready->load();
  }));
  sub.unsubscribe(sid);
}

// A broker, a member of "jobs" that ACKs only when told (so nothing is
// confirmed until then), and a publisher keeping at most `max_unconfirmed`.
struct unconfirmed_rig {
  waiter w;
  std::vector<held_message> held;
  std::vector<std::uint32_t> codes;
  embedded b;
  client holder{b.client_opts()};
  client pub;
  // A confirm handler that keeps each code, in order.
  client::confirm_handler record = [this](std::uint32_t code) {
    w.update([&] { codes.push_back(code); });
  };
  unconfirmed_rig(std::size_t max_unconfirmed, unconfirmed_full when_full)
    : pub{publisher_opts(b, max_unconfirmed, when_full)} {
    holder.subscribe("jobs", [this](const message_view& v) {
      w.update([&] { held.push_back({v.sid, v.seq, std::string{v.payload}}); });
    }, {.acked = true});
    await_subscriptions(holder, pub);
  }
  /// The codes so far, read under the waiter's lock.
  std::vector<std::uint32_t> codes_now() {
    std::vector<std::uint32_t> now;
    w.update([&] { now = codes; });
    return now;
  }
  /// The holder ACKs everything it holds.
  void ack_held() {
    std::vector<held_message> to_ack;
    w.update([&] { to_ack = held; });
    for (auto& m : to_ack) holder.ack(m.sid, m.seq);
  }
  static client_options publisher_opts(embedded& b, std::size_t max, unconfirmed_full when_full) {
    auto co = b.client_opts();
    co.max_unconfirmed = max;
    co.when_unconfirmed_full = when_full;
    return co;
  }
};

// A broker that welcomes and then says nothing: it answers a connection's
// first envelope (HELLO) with WELCOME and ignores the rest, PINGs
// included, while ZeroMQ still answers its heartbeats (a broker whose loop
// is stuck). vanish() closes its socket without BYE, as the kernel does
// for a process that was killed.
class mute_broker {
public:
  mute_broker() {
    router_.set(zmq::sockopt::linger, 0);
    router_.bind("tcp://127.0.0.1:*");
    endpoint_ = router_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread([this] { serve(); });
  }
  ~mute_broker() { vanish(); }
  [[nodiscard]] const std::string& endpoint() const { return endpoint_; }
  void vanish() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

private:
  void serve() {
    std::set<std::string> welcomed;
    std::vector<zmq::message_t> parts;
    while (!stop_) {
      zmq::pollitem_t items[] = {{router_.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 1, 10ms);
      while (zmq::recv_multipart(router_, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
        if (welcomed.insert(parts[0].to_string()).second) welcome(parts[0]);
        parts.clear();
      }
    }
    router_.close();
  }
  void welcome(zmq::message_t& routing) {
    wire::header h;
    h.kind = wire::op::welcome;
    h.node = "mute";
    h.heartbeat_ms = 1000;
    h.max_payload = wire::limits{}.max_payload_bytes;
    std::string bytes;
    wire::encode_header(h, bytes);
    router_.send(routing, zmq::send_flags::sndmore);
    router_.send(zmq::buffer(bytes));
  }

  zmq::context_t ctx_{1};
  zmq::socket_t router_{ctx_, zmq::socket_type::router};
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A TCP relay in front of a broker that can freeze: it stops moving bytes
// either way, and accepts nobody new, while its connections stay open.
// What a broker stopped with SIGSTOP looks like from outside.
class freezable_relay {
public:
  explicit freezable_relay(const std::string& upstream) : upstream_port_(port_of(upstream)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = loopback(0);
    BOOST_TEST_REQUIRE(::bind(listener_, address(a), sizeof a) == 0);
    BOOST_TEST_REQUIRE(::listen(listener_, 4) == 0);
    socklen_t len = sizeof a;
    ::getsockname(listener_, address(a), &len);
    endpoint_ = "tcp://127.0.0.1:" + std::to_string(ntohs(a.sin_port));
    thread_ = std::thread([this] { serve(); });
  }
  ~freezable_relay() {
    stop_ = true;
    thread_.join();
    for (int fd : {listener_, down_, up_})
      if (fd >= 0) ::close(fd);
  }
  [[nodiscard]] const std::string& endpoint() const { return endpoint_; }
  void freeze() { frozen_ = true; }

private:
  static sockaddr_in loopback(int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
  }
  static sockaddr* address(sockaddr_in& a) { return reinterpret_cast<sockaddr*>(&a); }
  static int port_of(const std::string& endpoint) {
    return std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  }
  // Moves what one side has to the other; false when either end closed.
  static bool pass(int from, int to) {
    char buf[64 * 1024];
    auto n = ::read(from, buf, sizeof buf);
    for (ssize_t off = 0; n > 0 && off < n;) {
      auto w = ::write(to, buf + off, static_cast<std::size_t>(n - off));
      if (w <= 0) return false;
      off += w;
    }
    return n > 0;
  }
  void serve() {
    while (!stop_) {
      if (frozen_) {
        std::this_thread::sleep_for(10ms); // frozen for good: only stop_ can change
        continue;
      }
      if (down_ < 0) {
        pollfd p{listener_, POLLIN, 0};
        if (::poll(&p, 1, 10) <= 0) continue;
        down_ = ::accept(listener_, nullptr, nullptr);
        up_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a = loopback(upstream_port_);
        if (::connect(up_, address(a), sizeof a) != 0) close_pair(); // the client retries
        continue;
      }
      pollfd p[] = {{down_, POLLIN, 0}, {up_, POLLIN, 0}};
      if (::poll(p, 2, 10) <= 0) continue;
      bool open = (!p[0].revents || pass(down_, up_)) && (!p[1].revents || pass(up_, down_));
      if (!open) close_pair();
    }
  }
  void close_pair() {
    ::close(down_);
    ::close(up_);
    down_ = up_ = -1;
  }

  int upstream_port_;
  int listener_ = -1, down_ = -1, up_ = -1;
  std::string endpoint_;
  std::atomic<bool> frozen_{false}, stop_{false};
  std::thread thread_;
};

} // namespace

BOOST_AUTO_TEST_SUITE(transport)

BOOST_AUTO_TEST_CASE(a_client_round_trips_through_an_embedded_inproc_broker) {
  embedded b;
  client c{b.client_opts()};
  BOOST_TEST(c.broker_id() == "embedded");
  waiter w;
  std::vector<std::string> got;
  c.subscribe("greet.*", [&](const message_view& v) {
    w.update([&] { got.emplace_back(v.payload); });
  });
  // The SUB and the PUB travel in order through the same queue.
  c.publish("greet.world", "hello");
  c.publish("other.topic", "not for us");
  c.publish("greet.you", "again");
  BOOST_TEST_REQUIRE(w.until([&] { return got.size() == 2; }));
  BOOST_TEST(got[0] == "hello");
  BOOST_TEST(got[1] == "again");
}

BOOST_AUTO_TEST_CASE(publishes_from_many_threads_all_arrive_in_per_thread_order) {
  embedded b;
  client sub{b.client_opts()};
  client pub{b.client_opts()};
  constexpr int threads = 4, each = 5000;
  waiter w;
  std::map<int, int> next; // per thread: the next sequence number expected
  int received = 0, out_of_order = 0;
  sub.subscribe_batch("load", [&](std::span<const message_view> batch) {
    w.update([&] {
      for (auto& v : batch) {
        auto text = std::string{v.payload};
        auto colon = text.find(':');
        int t = std::stoi(text.substr(0, colon)), seq = std::stoi(text.substr(colon + 1));
        if (next[t] != seq) ++out_of_order;
        next[t] = seq + 1;
        ++received;
      }
    });
  });
  // A round trip proves the subscription is live before the load starts.
  std::atomic<bool> ready{false};
  sub.subscribe("ready", [&](const message_view&) { ready = true; });
  BOOST_TEST_REQUIRE(w.until([&] {
    pub.publish("ready", "?");
    return ready.load();
  }));
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&pub, t] {
      for (int i = 0; i < each; ++i) pub.publish("load", std::to_string(t) + ":" + std::to_string(i));
    });
  for (auto& th : workers) th.join();
  BOOST_TEST_REQUIRE(w.until([&] { return received == threads * each; }, 30s));
  BOOST_TEST(out_of_order == 0);
}

BOOST_AUTO_TEST_CASE(a_request_is_answered_and_nobody_listening_is_no_responders_at_once) {
  embedded b;
  client svc{b.client_opts()};
  client caller{b.client_opts()};
  std::atomic<bool> up{false};
  svc.subscribe("math.double", [&](const message_view& v) {
    if (v.payload == "ping") {
      up = true;
      return;
    }
    svc.publish(v.reply_to, std::to_string(2 * std::stoi(std::string{v.payload})));
  });
  waiter w;
  BOOST_TEST_REQUIRE(w.until([&] {
    caller.publish("math.double", "ping");
    return up.load();
  }));
  auto r = caller.request("math.double", "21", 5s);
  BOOST_TEST(r.code == 0u);
  BOOST_TEST(r.payload == "42");
  auto start = std::chrono::steady_clock::now();
  auto none = caller.request("math.triple", "1", 5s);
  BOOST_TEST(none.code == 100u);
  BOOST_TEST((std::chrono::steady_clock::now() - start < 4s)); // not the timeout
  BOOST_TEST(std::string{status_text(none.code)} == "no responders");
}

BOOST_AUTO_TEST_CASE(a_request_with_a_silent_responder_times_out) {
  embedded b;
  client svc{b.client_opts()};
  client caller{b.client_opts()};
  std::atomic<int> asked{0};
  svc.subscribe("slow", [&](const message_view&) { ++asked; }); // never replies
  waiter w;
  BOOST_TEST_REQUIRE(w.until([&] {
    caller.publish("slow", "warm-up");
    return asked.load() > 0;
  }));
  auto r = caller.request("slow", "x", 200ms);
  BOOST_TEST(r.code == status_timeout);
}

BOOST_AUTO_TEST_CASE(confirmed_publishes_are_confirmed_after_the_consumer_acks) {
  embedded b;
  client worker{b.client_opts()};
  client pub{b.client_opts()};
  waiter w;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> to_ack;
  int confirms = 0, ok = 0;
  subscribe_options o;
  o.queue = "workers";
  o.acked = true;
  o.credit = 100;
  worker.subscribe("jobs", [&](const message_view& v) {
    w.update([&] { to_ack.emplace_back(v.sid, v.seq); });
  }, o);
  // One connection keeps its order: once "ready" arrives, "jobs" is live.
  std::atomic<bool> ready{false};
  worker.subscribe("ready", [&](const message_view&) { ready = true; });
  BOOST_TEST_REQUIRE(w.until([&] {
    pub.publish("ready", "?");
    return ready.load();
  }));
  for (int i = 0; i < 10; ++i)
    pub.publish_confirmed("jobs", std::to_string(i), [&](std::uint32_t code) {
      w.update([&] {
        ++confirms;
        ok += code == 0;
      });
    });
  BOOST_TEST_REQUIRE(w.until([&] { return to_ack.size() >= 10; }));
  BOOST_TEST(confirms == 0); // nothing confirmed before the ACKs
  std::vector<std::pair<std::uint32_t, std::uint64_t>> acks;
  w.update([&] { acks = to_ack; });
  for (auto& [sid, seq] : acks) worker.ack(sid, seq);
  BOOST_TEST_REQUIRE(w.until([&] { return confirms == 10; }));
  BOOST_TEST(ok == 10);
}

BOOST_AUTO_TEST_CASE(a_client_reconnects_resubscribes_and_resends_unconfirmed_publishes) {
  zmq::context_t ctx{1};
  auto opts = embedded::make_options("tcp://127.0.0.1:*");
  opts.core.heartbeat = 100ms;
  auto first = std::make_unique<broker::server>(opts, &ctx);
  auto endpoint = first->endpoint();
  first->start();
  client_options co;
  co.endpoint = endpoint;
  co.heartbeat = 100ms;
  co.reconnect_min = 20ms;
  client c{co};
  waiter w;
  std::set<std::string> got;
  c.subscribe("events", [&](const message_view& v) { w.update([&] { got.emplace(v.payload); }); });
  c.publish("events", "before");
  BOOST_TEST_REQUIRE(w.until([&] { return got.contains("before"); }));

  first.reset(); // the broker goes away (BYE to its clients)
  opts.listen = endpoint;
  // ZeroMQ releases the port on its I/O thread, a moment after the close.
  std::unique_ptr<broker::server> second;
  BOOST_TEST_REQUIRE(w.until([&] {
    try {
      second = std::make_unique<broker::server>(opts, &ctx);
      return true;
    } catch (const std::runtime_error&) {
      return false;
    }
  }));
  second->start();
  // Confirmed publishes survive the switch: kept until confirmed.
  std::atomic<int> confirmed{0};
  c.publish_confirmed("events", "after", [&](std::uint32_t code) {
    if (code == 0) ++confirmed;
  });
  bool done = w.until([&] { return got.contains("after") && confirmed == 1; });
  BOOST_TEST_MESSAGE("reconnects " << c.stats().reconnects << " got " << got.size() << " confirmed " << confirmed.load() << " errors " << c.stats().errors);
  BOOST_TEST_REQUIRE(done);
  BOOST_TEST(c.stats().reconnects >= 1u);
  second->stop();
}

// State the clients' handlers touch is declared before the clients in
// these tests, so it outlives a delivery that comes while a client closes.

BOOST_AUTO_TEST_CASE(a_client_fails_over_to_the_next_broker_resubscribes_and_resends_what_is_unconfirmed) {
  constexpr int n = 5;
  waiter w;
  int held = 0, confirmed = 0, ok = 0;
  std::set<std::string> got;
  zmq::context_t ctx{1};
  auto a = tcp_broker(ctx, "a");
  auto b = tcp_broker(ctx, "b");
  // On a, a consumer that never ACKs: what reaches it stays unconfirmed.
  client holder{tcp_client(a->endpoint())};
  holder.subscribe("jobs", [&](const message_view&) { w.update([&] { ++held; }); }, {.acked = true});
  // On b, one that ACKs everything.
  client acker{tcp_client(b->endpoint())};
  acker.subscribe("jobs", [&](const message_view& v) { acker.ack(v.sid, v.seq); }, {.acked = true});
  await_subscriptions(acker, acker);
  client c{tcp_client(a->endpoint(), {b->endpoint()})};
  await_subscriptions(holder, c);
  c.subscribe("events", [&](const message_view& v) { w.update([&] { got.emplace(v.payload); }); });
  for (int i = 0; i < n; ++i)
    c.publish_confirmed("jobs", std::to_string(i), [&](std::uint32_t code) {
      w.update([&] {
        ++confirmed;
        ok += code == 0;
      });
    });
  BOOST_TEST_REQUIRE(w.until([&] { return held == n; }));
  BOOST_TEST(confirmed == 0);

  auto t0 = std::chrono::steady_clock::now();
  a->stop(); // BYE to its clients
  BOOST_TEST_REQUIRE(w.until([&] { return c.broker_id() == "b"; }));
  BOOST_TEST((std::chrono::steady_clock::now() - t0 < 5s));
  // Re-sent on b (same msg ids), consumed and ACKed there, then confirmed.
  BOOST_TEST_REQUIRE(w.until([&] { return confirmed == n; }));
  BOOST_TEST(ok == n);
  // Re-subscribed: a publish on b reaches the subscription.
  BOOST_TEST_REQUIRE(w.until([&] {
    acker.publish("events", "on b");
    return got.contains("on b");
  }));
  auto st = c.stats();
  BOOST_TEST(st.reconnects >= 1u);
  BOOST_TEST(st.failovers == 1u);
  BOOST_TEST(st.resent == std::uint64_t{n});
}

BOOST_AUTO_TEST_CASE(a_broker_process_that_dies_is_left_at_once_not_after_the_heartbeat) {
  zmq::context_t ctx{1};
  auto next = tcp_broker(ctx, "next");
  mute_broker first;
  auto co = tcp_client(first.endpoint(), {next->endpoint()});
  co.heartbeat = 10s; // neither heartbeat, ZeroMQ's or a PING's, tells within 10 s
  client c{co};
  BOOST_TEST_REQUIRE(c.broker_id() == "mute");
  first.vanish(); // its TCP connection closes, no BYE: the socket monitor tells
  waiter w;
  BOOST_TEST(w.until([&] { return c.broker_id() == "next"; }, 5s));
  BOOST_TEST(c.stats().failovers == 1u);
}

BOOST_AUTO_TEST_CASE(a_stopped_broker_is_left_within_a_second_with_the_defaults) {
  client_options defaults;
  BOOST_TEST((defaults.heartbeat * defaults.liveness < 1s));
  zmq::context_t ctx{1};
  auto a = tcp_broker(ctx, "a");
  auto next = tcp_broker(ctx, "next");
  freezable_relay relay{a->endpoint()};
  client c{tcp_client(relay.endpoint(), {next->endpoint()})};
  BOOST_TEST_REQUIRE(c.broker_id() == "a");
  relay.freeze(); // a SIGSTOP: the connection stays, nothing moves
  auto t0 = std::chrono::steady_clock::now();
  waiter w;
  BOOST_TEST_REQUIRE(w.until([&] { return c.broker_id() == "next"; }, 5s));
  // Loose: the heartbeat of old (1 s x 3) took over 3 s; so does the
  // application-level silence timeout.
  BOOST_TEST((std::chrono::steady_clock::now() - t0 < 2s));
}

BOOST_AUTO_TEST_CASE(a_broker_that_stops_answering_pings_is_left_after_the_silence_timeout) {
  zmq::context_t ctx{1};
  auto next = tcp_broker(ctx, "next");
  mute_broker stuck; // its ZeroMQ answers heartbeats, its loop nothing
  auto co = tcp_client(stuck.endpoint(), {next->endpoint()});
  co.silence_timeout = 500ms;
  client c{co};
  BOOST_TEST_REQUIRE(c.broker_id() == "mute");
  waiter w;
  // Publishing all along: the client writes, yet it must PING to know.
  BOOST_TEST(w.until([&] {
    c.publish("nobody", "x");
    return c.broker_id() == "next";
  }, 5s));
}

BOOST_AUTO_TEST_CASE(a_client_that_only_publishes_keeps_a_healthy_broker_that_has_nothing_to_say) {
  // The broker writes nothing to a pure publisher and PINGs it only after
  // its own heartbeat (1 s), here longer than the client's silence
  // timeout: the client's PING, sent for the silence it hears, gets the
  // PONG that keeps the session.
  embedded b;
  auto co = b.client_opts();
  co.silence_timeout = 600ms;
  client c{co};
  auto end = std::chrono::steady_clock::now() + 2s;
  while (std::chrono::steady_clock::now() < end) {
    c.publish("nobody", "x");
    std::this_thread::sleep_for(10ms); // pacing, not synchronisation
  }
  BOOST_TEST(c.stats().reconnects == 0u);
}

BOOST_AUTO_TEST_CASE(a_slow_handler_is_not_mistaken_for_a_dead_broker) {
  waiter w;
  std::vector<std::string> got;
  embedded b{"inproc://plexus-slow-handler", [](broker::server_options& o) {
    o.core.heartbeat = 10s; // no PING from the broker while the handler runs
  }};
  auto co = b.client_opts();
  co.silence_timeout = 300ms;
  client c{co};
  c.subscribe("work", [&](const message_view& v) {
    // The behaviour under test: the I/O thread is away for three silence
    // timeouts, hearing nothing.
    if (v.payload == "slow") std::this_thread::sleep_for(3 * co.silence_timeout);
    w.update([&] { got.emplace_back(v.payload); });
  });
  c.publish("work", "slow");
  BOOST_TEST_REQUIRE(w.until([&] { return got.size() == 1; }));
  // A round trip after the stall: the I/O loop has judged the silence.
  c.publish("work", "after");
  BOOST_TEST_REQUIRE(w.until([&] { return got.size() == 2; }));
  BOOST_TEST(c.stats().reconnects == 0u);
}

BOOST_AUTO_TEST_CASE(an_ack_from_before_a_failover_settles_nothing_on_the_new_broker) {
  waiter w;
  std::vector<held_message> deliveries;
  int probes = 0, confirmed = 0, ok = 0;
  zmq::context_t ctx{1};
  auto a = tcp_broker(ctx, "a");
  auto b = tcp_broker(ctx, "b");
  client c{tcp_client(a->endpoint(), {b->endpoint()})};
  c.subscribe("work", [&](const message_view& v) {
    w.update([&] { deliveries.push_back({v.sid, v.seq, std::string{v.payload}}); });
  }, {.acked = true});
  c.subscribe("probe", [&](const message_view&) { w.update([&] { ++probes; }); });
  // Its own consumer: ACK, CONFIRM and probe share one connection, in order.
  c.publish_confirmed("work", "m1", [&](std::uint32_t code) {
    w.update([&] {
      ++confirmed;
      ok += code == 0;
    });
  });
  BOOST_TEST_REQUIRE(w.until([&] { return deliveries.size() == 1; }));
  a->stop();
  // On b the re-sent m1 is delivered again: the first delivery on a new
  // connection, broker seq 1 as on a.
  BOOST_TEST_REQUIRE(w.until([&] { return deliveries.size() == 2; }));
  held_message before, after;
  w.update([&] {
    before = deliveries[0];
    after = deliveries[1];
  });
  BOOST_TEST(before.seq != after.seq);
  c.ack(before.sid, before.seq); // say, a function that finished late
  c.publish("probe", "after the stale ack");
  BOOST_TEST_REQUIRE(w.until([&] { return probes == 1; }));
  // Had the ACK reached b, its CONFIRM would have come before the probe.
  BOOST_TEST(confirmed == 0);
  BOOST_TEST(c.stats().stale_acks == 1u);
  c.ack(after.sid, after.seq);
  BOOST_TEST_REQUIRE(w.until([&] { return confirmed == 1; }));
  BOOST_TEST(ok == 1);
}

BOOST_AUTO_TEST_CASE(a_full_unconfirmed_outbox_refuses_at_once_when_told_to_fail) {
  unconfirmed_rig r{3, unconfirmed_full::fail};
  auto published_before = r.pub.stats().published;
  for (int i = 0; i < 5; ++i) r.pub.publish_confirmed("jobs", std::to_string(i), r.record);
  // The two beyond the bound were answered before publish_confirmed returned.
  BOOST_TEST(r.codes_now() == (std::vector<std::uint32_t>{status_outbox_full, status_outbox_full}),
             boost::test_tools::per_element());
  BOOST_TEST(r.pub.stats().outbox_full == 2u);
  BOOST_TEST(r.pub.stats().published == published_before + 3);
  BOOST_TEST(std::string{status_text(status_outbox_full)} == "unconfirmed outbox full");
  BOOST_TEST_REQUIRE(r.w.until([&] { return r.held.size() == 3; }));
  r.ack_held();
  BOOST_TEST_REQUIRE(r.w.until([&] { return r.codes.size() == 5; }));
  BOOST_TEST(r.codes[2] == 0u);
  BOOST_TEST(r.codes[4] == 0u);
  // Room again, and the two refused never left: the next delivery is this.
  r.pub.publish_confirmed("jobs", "again", r.record);
  BOOST_TEST_REQUIRE(r.w.until([&] { return r.held.size() == 4; }));
  BOOST_TEST(r.held[3].payload == "again");
  BOOST_TEST(r.pub.stats().outbox_full == 2u);
}

BOOST_AUTO_TEST_CASE(a_full_unconfirmed_outbox_blocks_until_a_confirm_makes_room) {
  unconfirmed_rig r{2, unconfirmed_full::block};
  int confirmed = 0;
  bool returned = false;
  auto count = [&](std::uint32_t) { r.w.update([&] { ++confirmed; }); };
  r.pub.publish_confirmed("jobs", "1", count);
  r.pub.publish_confirmed("jobs", "2", count);
  BOOST_TEST_REQUIRE(r.w.until([&] { return r.held.size() == 2; }));
  std::thread third([&] {
    r.pub.publish_confirmed("jobs", "3", count);
    r.w.update([&] { returned = true; });
  });
  // Nothing confirms while the holder holds both: the third waits.
  BOOST_TEST(!r.w.until([&] { return returned; }, 300ms));
  held_message first;
  r.w.update([&] { first = r.held[0]; });
  r.holder.ack(first.sid, first.seq);
  // Not a REQUIRE: the thread is joined first (a test that hangs here fails
  // on ctest's timeout).
  BOOST_TEST(r.w.until([&] { return returned && r.held.size() == 3; }));
  third.join();
  BOOST_TEST_REQUIRE(r.held.size() == 3u);
  BOOST_TEST(r.held[2].payload == "3");
  BOOST_TEST(confirmed == 1);
  // Full again ("2" and "3"), but a handler on the I/O thread goes through:
  // it would wait for the very thread that reads CONFIRMs.
  r.pub.subscribe("kick", [&](const message_view&) {
    r.pub.publish_confirmed("jobs", "from a handler", count);
  });
  r.pub.publish("kick", "");
  BOOST_TEST_REQUIRE(r.w.until([&] { return r.held.size() == 4; }));
  BOOST_TEST(r.held[3].payload == "from a handler");
}

// A node's actor threads never wait (their waiting could starve the
// consumers whose ACKs would end it): under a paused_publish_scope of
// hold, drop or fail, a full window answers status_outbox_full at once,
// even with unconfirmed_full::block; block itself still waits.
BOOST_AUTO_TEST_CASE(a_thread_that_must_never_wait_gets_outbox_full_instead_of_blocking) {
  unconfirmed_rig r{2, unconfirmed_full::block};
  r.pub.publish_confirmed("jobs", "1", r.record);
  r.pub.publish_confirmed("jobs", "2", r.record);
  BOOST_TEST_REQUIRE(r.w.until([&] { return r.held.size() == 2; }));
  for (auto how : {paused_publish::hold, paused_publish::drop, paused_publish::fail}) {
    // On a thread of its own: were it to block, the ACKs let it go and the
    // test fails instead of hanging.
    auto done = std::async(std::launch::async, [&] {
      paused_publish_scope never{how, &r.pub};
      r.pub.publish_confirmed("jobs", "refused", r.record);
    });
    bool at_once = done.wait_for(10s) == std::future_status::ready;
    if (!at_once) r.ack_held();
    done.wait();
    BOOST_TEST_REQUIRE(at_once, "blocked under paused_publish " << static_cast<int>(how));
  }
  BOOST_TEST(r.codes_now() == (std::vector<std::uint32_t>(3, status_outbox_full)),
             boost::test_tools::per_element());
  BOOST_TEST(r.pub.stats().outbox_full == 3u);
  // Another client's scope is not this one's: that thread waits.
  client other{r.b.client_opts()};
  bool returned = false;
  std::thread waits([&] {
    paused_publish_scope theirs{paused_publish::hold, &other};
    r.pub.publish_confirmed("jobs", "3", r.record);
    r.w.update([&] { returned = true; });
  });
  BOOST_TEST(!r.w.until([&] { return returned; }, 300ms));
  r.ack_held();
  BOOST_TEST(r.w.until([&] { return returned; })); // not a REQUIRE: joined first
  waits.join();
  BOOST_TEST_REQUIRE(r.w.until([&] { return r.held.size() == 3; }));
  BOOST_TEST(r.held[2].payload == "3"); // the refused ones never left
}

BOOST_AUTO_TEST_CASE(a_confirmed_publish_the_broker_refuses_is_settled_by_its_err) {
  waiter w;
  std::vector<std::uint32_t> codes;
  int errors_reported = 0;
  embedded b;
  auto co = b.client_opts();
  co.max_unconfirmed = 1;
  co.when_unconfirmed_full = unconfirmed_full::fail;
  client c{co};
  c.on_error([&](std::uint32_t, std::string_view) { w.update([&] { ++errors_reported; }); });
  auto record = [&](std::uint32_t code) { w.update([&] { codes.push_back(code); }); };
  c.publish_confirmed("$SYS.broker.spoofed", "{}", record); // ERR 105, no CONFIRM
  BOOST_TEST_REQUIRE(w.until([&] { return codes.size() == 1; }));
  BOOST_TEST(codes[0] == 105u);
  // Its slot is free again, and the ERR had someone waiting for it.
  c.publish_confirmed("nobody", "x", record);
  BOOST_TEST_REQUIRE(w.until([&] { return codes.size() == 2; }));
  BOOST_TEST(codes[1] == 101u); // no interest, not status_outbox_full
  BOOST_TEST(errors_reported == 0);
}

BOOST_AUTO_TEST_CASE(two_publishes_with_one_msg_id_share_its_confirm_and_one_slot) {
  unconfirmed_rig r{2, unconfirmed_full::fail};
  r.pub.publish_confirmed("jobs", "once", r.record, {.msg_id = "job-1"});
  r.pub.publish_confirmed("jobs", "once", r.record, {.msg_id = "job-1"}); // a retry
  BOOST_TEST_REQUIRE(r.pub.flush(5s)); // both taken by the I/O thread
  // One entry awaits the CONFIRM: a second id still fits.
  r.pub.publish_confirmed("jobs", "other", r.record, {.msg_id = "job-2"});
  BOOST_TEST_REQUIRE(r.w.until([&] { return r.held.size() == 2; })); // the broker dropped the retry
  BOOST_TEST(r.codes.empty());
  r.ack_held();
  BOOST_TEST_REQUIRE(r.w.until([&] { return r.codes.size() == 3; }));
  BOOST_TEST(r.codes == (std::vector<std::uint32_t>{0, 0, 0}), boost::test_tools::per_element());
  BOOST_TEST(r.pub.stats().outbox_full == 0u);
}

BOOST_AUTO_TEST_CASE(connecting_to_nobody_fails_with_a_clear_error_after_the_timeout) {
  client_options o;
  o.endpoint = "tcp://127.0.0.1:1";
  o.connect_timeout = 200ms;
  try {
    client c{o};
    BOOST_FAIL("connected to nothing");
  } catch (const connect_error& e) {
    BOOST_TEST(std::string{e.what()}.find("no answer from broker at tcp://127.0.0.1:1") == 0u);
  }
}

BOOST_AUTO_TEST_CASE(a_bad_endpoint_is_refused_with_one_clear_line_before_anything_starts) {
  auto refused = [](client_options o) -> std::string {
    o.connect_timeout = 60s; // a check that waited for an answer would fail the test's timeout
    try {
      client c{o};
    } catch (const connect_error&) {
      return "connect_error";
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "connected";
  };
  BOOST_TEST(refused(tcp_client("nonsense"))
             == "bad broker endpoint 'nonsense': expected tcp://HOST:PORT, ipc://PATH or inproc://NAME");
  BOOST_TEST(refused(tcp_client("tcp://host:notaport")).starts_with("bad broker endpoint 'tcp://host:notaport': "));
  // A fallback is checked as well, though the first endpoint would answer.
  embedded b;
  auto o = b.client_opts();
  o.fallback = {"tcp://127.0.0.1:7400", "tcp//missing-colon:1"};
  BOOST_TEST(refused(o).starts_with("bad broker endpoint 'tcp//missing-colon:1': "));
}

BOOST_AUTO_TEST_CASE(a_payload_over_the_brokers_max_payload_is_refused_before_it_is_sent) {
  embedded b{"inproc://plexus-max-payload", [](broker::server_options& o) {
    o.core.limits.max_payload_bytes = 1024;
  }};
  client c{b.client_opts()};
  BOOST_TEST(c.max_payload() == 1024u); // from WELCOME
  const auto too_large = static_cast<std::uint32_t>(wire::errc::payload_too_large);
  std::string big(1025, 'x');
  try {
    c.publish("orders", big);
    BOOST_FAIL("a 1025-byte payload was published to a broker that takes 1024");
  } catch (const publish_error& e) {
    BOOST_TEST(e.code == too_large);
    BOOST_TEST(std::string{e.what()} == "payload is 1025 bytes; the broker's max_payload is 1024");
  }
  BOOST_CHECK_THROW(static_cast<void>(c.try_publish("orders", big)), publish_error);
  std::optional<std::uint32_t> code;
  c.publish_confirmed("orders", big, [&](std::uint32_t k) { code = k; });
  BOOST_TEST(code.value_or(0) == too_large); // at once, on this thread: no 30 s wait for nothing
  auto r = c.request("svc", big, 5s);
  BOOST_TEST(r.code == too_large);
  BOOST_TEST(c.stats().published == 0u);
  c.publish("orders", std::string(1024, 'x')); // at the limit: sent
  BOOST_TEST(c.flush(5s));
  BOOST_TEST(c.stats().published == 1u);
}

BOOST_AUTO_TEST_CASE(errors_nobody_waits_for_reach_the_error_handler) {
  embedded b;
  client c{b.client_opts()};
  waiter w;
  std::vector<std::uint32_t> codes;
  c.on_error([&](std::uint32_t code, std::string_view) { w.update([&] { codes.push_back(code); }); });
  BOOST_TEST(c.try_publish("$SYS.broker.spoofed", "{}")); // the broker's own namespace
  BOOST_TEST_REQUIRE(w.until([&] { return !codes.empty(); }));
  BOOST_TEST(codes.front() == 105u);
  BOOST_TEST(std::string{status_text(codes.front())} == "forbidden");
  BOOST_TEST(c.stats().errors == 1u);
}

BOOST_AUTO_TEST_CASE(a_slow_handler_working_through_a_backlog_keeps_its_session) {
  embedded b{"inproc://plexus-backlog", [](broker::server_options& o) {
    o.core.heartbeat = 200ms; // the broker ends a session it has not heard from for 600 ms
  }};
  auto co = b.client_opts();
  co.heartbeat = 100ms;
  waiter w; // before the clients: their I/O threads use it until they go
  std::set<std::string> got;
  client sub{co}, pub{co};
  sub.subscribe("work", [&](const message_view& v) {
    // The behaviour under test: a handler slower than the traffic, so the
    // I/O thread works through a backlog for far longer than the broker's
    // liveness window.
    std::this_thread::sleep_for(10ms);
    w.update([&] { got.emplace(v.payload); });
  });
  // Subscribed once a confirmed publish reaches it (101: not yet).
  BOOST_TEST_REQUIRE(w.until([&] {
    std::promise<std::uint32_t> code;
    pub.publish_confirmed("work", "first", [&code](std::uint32_t c) { code.set_value(c); });
    return code.get_future().get() == 0;
  }));
  BOOST_TEST_REQUIRE(w.until([&] { return got.size() == 1; }));
  for (int i = 0; i < 100; ++i) pub.publish("work", std::to_string(i)); // a 1 s backlog
  for (int i = 100; i < 200; ++i) { // and more while it lasts
    pub.publish("work", std::to_string(i));
    std::this_thread::sleep_for(5ms); // pacing, not synchronisation
  }
  BOOST_TEST(w.until([&] { return got.size() == 201; }), got.size() << " of 201 arrived");
  BOOST_TEST(sub.stats().sessions_lost == 0u);
  BOOST_TEST(sub.stats().reconnects == 0u);
  BOOST_TEST(sub.stats().stalls == 0u);
}

BOOST_AUTO_TEST_CASE(a_handler_that_keeps_the_io_thread_past_a_heartbeat_is_reported) {
  embedded b{"inproc://plexus-stall", [](broker::server_options& o) {
    o.core.heartbeat = 200ms;
    o.core.liveness = 10; // the session survives the stall: only the report is under test
  }};
  auto co = b.client_opts();
  waiter w; // before the client: its I/O thread uses it until it goes
  std::vector<std::pair<std::uint32_t, std::string>> reports;
  bool done = false;
  client c{co};
  c.on_error([&](std::uint32_t code, std::string_view text) {
    w.update([&] { reports.emplace_back(code, text); });
  });
  c.subscribe("work", [&](const message_view&) {
    std::this_thread::sleep_for(400ms); // the behaviour under test: a blocking handler
    w.update([&] { done = true; });
  });
  c.publish("work", "block");
  BOOST_TEST_REQUIRE(w.until([&] { return done && !reports.empty(); }));
  BOOST_TEST(reports[0].first == status_handler_stall);
  BOOST_TEST(reports[0].second.find("kept the I/O thread") != std::string::npos, reports[0].second);
  BOOST_TEST(c.stats().stalls == 1u);
}

BOOST_AUTO_TEST_CASE(the_application_hears_of_dropped_messages_and_of_a_session_the_broker_ended) {
  // A broker played by hand: WELCOME, then ERR 112 and BYE as a broker
  // sends them to a slow consumer.
  zmq::context_t ctx{1};
  zmq::socket_t router{ctx, zmq::socket_type::router};
  router.bind("inproc://plexus-fake-broker");
  client_options co;
  co.endpoint = "inproc://plexus-fake-broker";
  co.zmq_context = &ctx;
  co.connect_timeout = 5s;
  auto send = [&](const zmq::message_t& id, const wire::header& h) {
    std::string bytes;
    wire::encode_header(h, bytes);
    router.send(zmq::buffer(id.to_string_view()), zmq::send_flags::sndmore);
    router.send(zmq::buffer(bytes));
  };
  // Reads until a HELLO comes; returns the sender's routing id.
  auto await_hello = [&] {
    router.set(zmq::sockopt::rcvtimeo, 5000);
    for (;;) {
      std::vector<zmq::message_t> parts;
      auto got = zmq::recv_multipart(router, std::back_inserter(parts));
      BOOST_TEST_REQUIRE(got.has_value(), "no HELLO within 5 s");
      wire::header h;
      BOOST_TEST_REQUIRE(parts.size() >= 2u);
      if (wire::decode_header(parts[1].to_string_view(), {}, h).ok() && h.kind == wire::op::hello)
        return std::move(parts[0]);
    }
  };
  std::thread broker_side;
  zmq::message_t id;
  auto welcome = [&](const zmq::message_t& to) {
    wire::header w;
    w.kind = wire::op::welcome;
    w.node = "fake";
    w.heartbeat_ms = 1000;
    w.max_payload = 1 << 20;
    send(to, w);
  };
  broker_side = std::thread([&] {
    id = await_hello();
    welcome(id);
  });
  waiter w; // before the client: its I/O thread uses it until it goes
  std::vector<std::pair<std::uint32_t, std::string>> reports;
  client c{co};
  broker_side.join();
  c.on_error([&](std::uint32_t code, std::string_view text) {
    w.update([&] { reports.emplace_back(code, text); });
  });
  wire::header err;
  err.kind = wire::op::err;
  err.code = status_slow_consumer;
  err.count = 5;
  err.text = "slow consumer: 5 message(s) dropped, your queue was full";
  send(id, err);
  BOOST_TEST_REQUIRE(w.until([&] { return reports.size() == 1; }));
  BOOST_TEST(reports[0].first == status_slow_consumer);
  BOOST_TEST(c.stats().dropped == 5u);
  wire::header bye;
  bye.kind = wire::op::bye;
  bye.text = "slow consumer: its queue is full";
  send(id, bye);
  BOOST_TEST_REQUIRE(w.until([&] { return reports.size() == 2; }));
  BOOST_TEST(reports[1].first == status_session_lost);
  BOOST_TEST(reports[1].second.find("slow consumer: its queue is full") != std::string::npos,
             reports[1].second);
  BOOST_TEST(c.stats().sessions_lost == 1u);
  auto again = await_hello(); // it starts a new session by itself
  BOOST_TEST(again.size() > 0u);
  welcome(again);
  // A session the broker no longer knows (ERR 108 after WELCOME) is lost too.
  wire::header unknown;
  unknown.kind = wire::op::err;
  unknown.code = 108;
  unknown.text = "HELLO must come first";
  send(again, unknown);
  BOOST_TEST_REQUIRE(w.until([&] { return reports.size() == 3; }));
  BOOST_TEST(reports[2].first == status_session_lost);
  BOOST_TEST(c.stats().sessions_lost == 2u);
  (void)await_hello();
}

BOOST_AUTO_TEST_CASE(bad_topics_and_patterns_are_refused_before_they_leave_the_process) {
  embedded b;
  client c{b.client_opts()};
  BOOST_CHECK_THROW(c.publish("orders.*", "x"), std::invalid_argument);
  BOOST_CHECK_THROW(c.publish("", "x"), std::invalid_argument);
  BOOST_CHECK_THROW(c.subscribe("orders.>.x", [](const message_view&) {}), std::invalid_argument);
  try {
    c.publish("a..b", "x");
  } catch (const std::invalid_argument& e) {
    BOOST_TEST(std::string{e.what()} == "bad topic 'a..b': empty token");
  }
  BOOST_TEST(c.stats().published == 0u);
}

BOOST_AUTO_TEST_CASE(flush_returns_once_everything_queued_is_on_the_socket) {
  embedded b;
  client c{b.client_opts()};
  for (int i = 0; i < 1000; ++i) c.publish("nobody", "x");
  BOOST_TEST(c.flush(5s));
  BOOST_TEST(c.stats().published == 1000u);
}

BOOST_AUTO_TEST_CASE(a_broker_serves_its_counters_and_connections_as_prometheus_text) {
  zmq::context_t ctx{1};
  broker::server_options so;
  so.listen = "tcp://127.0.0.1:*";
  so.core.id = "b9";
  so.core.stats_interval = std::chrono::milliseconds{50}; // the text is rendered this often
  so.metrics_port = -1;
  so.quiet = true;
  broker::server srv{so, &ctx};
  srv.start();
  BOOST_TEST_REQUIRE(srv.metrics_port() > 0);
  client_options co;
  co.endpoint = srv.endpoint();
  co.node_id = "pubnode";
  client c{co};
  for (int i = 0; i < 4; ++i) c.publish("m.t", "x");
  BOOST_TEST_REQUIRE(c.flush(5s));
  httplib::Client http{"127.0.0.1", srv.metrics_port()};
  waiter w;
  std::string body;
  // Rendered on the broker's loop every stats interval: wait for this traffic in it.
  BOOST_TEST_REQUIRE(w.until([&] {
    auto res = http.Get("/metrics");
    body = res ? res->body : std::string{};
    return body.find("plexus_broker_messages_in_total{broker=\"b9\"} 4\n") != std::string::npos;
  }), body);
  BOOST_TEST(body.find("# TYPE plexus_broker_messages_in_total counter\n") != std::string::npos);
  BOOST_TEST(body.find("# TYPE plexus_broker_connections gauge\n") != std::string::npos);
  BOOST_TEST(body.find("# TYPE plexus_broker_flow_pauses_total counter\n") != std::string::npos);
  BOOST_TEST(body.find("plexus_broker_flow_overruns_total{broker=\"b9\"} 0\n") != std::string::npos);
  BOOST_TEST(body.find("# TYPE plexus_broker_group_queue_peak_messages gauge\n") != std::string::npos);
  BOOST_TEST(body.find("node=\"pubnode\"} 4\n") != std::string::npos, body); // its connection's count
  BOOST_TEST(body.find("# TYPE plexus_broker_ack_latency_seconds histogram\n") != std::string::npos);
  BOOST_TEST(body.find("plexus_broker_ack_latency_seconds_count{broker=\"b9\"} 0\n") != std::string::npos,
             body); // nothing was acked: no connection has one either
  BOOST_TEST(body.find("plexus_connection_ack_latency_seconds_count") == std::string::npos, body);
  // A consumer that ACKs: its connection gets a histogram of its own.
  client_options so2 = co;
  so2.node_id = "acknode";
  client consumer{so2};
  subscribe_options acked;
  acked.acked = true;
  consumer.subscribe("m.acked", [&](const message_view& v) { consumer.ack(v.sid, v.seq); }, acked);
  BOOST_TEST_REQUIRE(w.until([&] {
    c.publish("m.acked", "x"); // until the SUB is in: the first ones may find nobody
    auto res = http.Get("/metrics");
    body = res ? res->body : std::string{};
    return body.find("plexus_connection_ack_latency_seconds_count{broker=\"b9\",conn=") != std::string::npos;
  }), body);
  auto line = body.substr(body.find("plexus_connection_ack_latency_seconds_count{"));
  line = line.substr(0, line.find('\n'));
  BOOST_TEST(line.find("node=\"acknode\"}") != std::string::npos, line);
  BOOST_TEST(std::stoul(line.substr(line.rfind(' ') + 1)) >= 1u, line);
  BOOST_TEST(body.find("plexus_broker_ack_latency_seconds_count{broker=\"b9\"} 0\n") == std::string::npos);
  srv.stop();
}

BOOST_AUTO_TEST_CASE(a_sent_envelopes_buffer_goes_to_the_next_envelope_of_a_pushing_thread) {
  detail::outbox box{16};
  std::vector<detail::envelope> taken;
  std::vector<std::string> sent;
  auto push = [&](std::size_t bytes) {
    detail::envelope e;
    e.bytes = detail::envelope_buffer();
    e.bytes.assign(bytes, 'x');
    const auto* at = e.bytes.data();
    box.push(std::move(e), false);
    return at;
  };
  // The I/O thread takes an envelope, sends it and gives its buffer back.
  auto* first = push(100);
  box.take(taken, sent);
  sent.push_back(std::move(taken.front().bytes));
  taken.clear();
  box.take(taken, sent);
  BOOST_TEST(sent.empty());
  // The thread's next push takes it in hand; its next envelope is in it.
  push(100);
  auto reused = detail::envelope_buffer();
  BOOST_TEST(reused.empty());
  BOOST_TEST(reused.data() == first);
  BOOST_TEST(detail::envelope_buffer().capacity() < 100u); // one spare, now in use

  // A large buffer is freed, not kept for the next envelope.
  box.take(taken, sent);
  taken.clear();
  sent.push_back(std::string(std::size_t{1} << 20, 'x'));
  box.take(taken, sent);
  push(10);
  BOOST_TEST(detail::envelope_buffer().capacity() < std::size_t{1} << 20);
}

BOOST_AUTO_TEST_SUITE_END()
