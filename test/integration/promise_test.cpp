// SPDX-License-Identifier: Apache-2.0
// A confirm with code 0 is a promise, against a real plexus-broker: two
// publishers that number their ids alike both get everything delivered; the
// broker keeps no payload once a message is settled; a connection that
// poses as a peer confirms nothing; a slow consumer hears what it missed.
#include <future>
#include <set>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "harness.hpp"
#include "plexus/wire.hpp"

using namespace plexus;
using namespace plexus::itest;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool rss_meaningful = false; // ASan's quarantine holds freed memory
#else
constexpr bool rss_meaningful = true;
#endif

/// A connection that speaks the wire by hand: what a third-party client,
/// or an attacker, sends.
class raw_connection {
public:
  raw_connection(zmq::context_t& ctx, const std::string& endpoint, int rcvhwm = 1000)
    : sock_(ctx, zmq::socket_type::dealer) {
    sock_.set(zmq::sockopt::rcvhwm, rcvhwm);
    sock_.set(zmq::sockopt::linger, 0);
    sock_.connect(endpoint);
  }

  void send(const wire::header& h, std::string_view payload = {}) {
    std::string bytes;
    wire::encode_header(h, bytes);
    bool more = wire::carries_payload(h.kind);
    sock_.send(zmq::buffer(bytes), more ? zmq::send_flags::sndmore : zmq::send_flags::none);
    if (more) sock_.send(zmq::buffer(payload.data(), payload.size()));
  }

  /// Every envelope that arrives within `timeout` of the last one, handed
  /// to `f` (header, payload) until it returns false.
  template <class F>
  void receive(milliseconds timeout, F&& f) {
    for (;;) {
      zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, timeout) <= 0) return;
      std::vector<zmq::message_t> parts;
      if (!zmq::recv_multipart(sock_, std::back_inserter(parts))) return;
      std::vector<std::string_view> frames;
      for (auto& p : parts) frames.push_back(p.to_string_view());
      std::vector<wire::entry> entries(1);
      if (frames.size() == 1 && wire::is_batch_frame(frames[0])) {
        BOOST_TEST_REQUIRE(wire::decode_batch(frames[0], {}, entries).ok());
      } else {
        BOOST_TEST_REQUIRE(wire::decode_message(frames, {}, entries[0]).ok());
      }
      for (auto& e : entries)
        if (!f(e.h, e.payload)) return;
    }
  }

  void hello(std::string node) {
    wire::header h;
    h.kind = wire::op::hello;
    h.node = node;
    send(h);
    bool welcomed = false;
    receive(default_wait, [&](const wire::header& got, std::string_view) {
      welcomed = got.kind == wire::op::welcome;
      return !welcomed;
    });
    BOOST_REQUIRE_MESSAGE(welcomed, "no WELCOME");
  }

  void subscribe(std::uint32_t sid, std::string pattern) {
    wire::header h;
    h.kind = wire::op::sub;
    h.sid = sid;
    h.topic = pattern;
    send(h);
  }

private:
  zmq::socket_t sock_;
};

/// Publishes probes with confirms until one is confirmed 0: `pattern` has
/// a live subscriber that took the probe.
void wait_subscribed(client& pub, const std::string& topic) {
  BOOST_REQUIRE_MESSAGE(poll_until([&] {
    std::promise<std::uint32_t> code;
    pub.publish_confirmed(topic, "probe", [&code](std::uint32_t c) { code.set_value(c); });
    return code.get_future().get() == 0;
  }), "nobody subscribed to " << topic);
}

/// Counts confirms by code, and waits for them.
class confirm_tally {
public:
  client::confirm_handler handler() {
    return [this](std::uint32_t code) { codes_.update([&](auto& m) { ++m[code]; }); };
  }
  [[nodiscard]] bool wait_total(std::size_t n, milliseconds timeout = 30s) const {
    return codes_.wait_until([n](const auto& m) {
      std::size_t t = 0;
      for (auto& [code, k] : m) t += k;
      return t >= n;
    }, timeout);
  }
  [[nodiscard]] std::size_t of(std::uint32_t code) const {
    return codes_.read([code](const auto& m) {
      auto it = m.find(code);
      return it == m.end() ? std::size_t{0} : it->second;
    });
  }

private:
  guarded<std::map<std::uint32_t, std::size_t>> codes_;
};

} // namespace

BOOST_AUTO_TEST_SUITE(promise)

BOOST_AUTO_TEST_CASE(two_publishers_numbering_their_ids_alike_both_get_everything_delivered) {
  broker_process broker;
  constexpr std::size_t per_publisher = 500;
  guarded<std::multiset<std::string>> got;
  confirm_tally confirms;
  auto sub = broker.connect("consumer");
  subscribe_options so;
  so.acked = true;
  sub->subscribe("promise.*", [&](const message_view& v) {
    if (v.payload != "probe") got.update([&](auto& s) { s.emplace(v.payload); });
    sub->ack(v.sid, v.seq);
  }, so);
  // Two processes' worth of publishers with the same node id, each
  // numbering its msg ids from 0, on one topic and on two.
  auto a = broker.connect("orders"), b = broker.connect("orders");
  wait_subscribed(*a, "promise.a");
  for (std::size_t i = 0; i < per_publisher; ++i) {
    publish_options o;
    auto id = "id" + std::to_string(i);
    o.msg_id = id;
    a->publish_confirmed("promise.a", "a" + std::to_string(i), confirms.handler(), o);
    b->publish_confirmed(i % 2 ? "promise.a" : "promise.b", "b" + std::to_string(i),
                         confirms.handler(), o);
  }
  BOOST_TEST_REQUIRE(confirms.wait_total(2 * per_publisher));
  BOOST_TEST(confirms.of(0) == 2 * per_publisher);
  BOOST_TEST_REQUIRE(got.wait_until([](const auto& s) { return s.size() >= 2 * per_publisher; }));
  auto all = got.snapshot();
  BOOST_TEST(all.size() == 2 * per_publisher);
  for (std::size_t i = 0; i < per_publisher; ++i) {
    BOOST_TEST(all.count("a" + std::to_string(i)) == 1u);
    BOOST_TEST(all.count("b" + std::to_string(i)) == 1u);
  }
}

BOOST_AUTO_TEST_CASE(settled_confirmed_megabyte_publishes_leave_the_broker_no_bigger) {
  broker_process broker{{"--max-payload", std::to_string(2 << 20)}};
  const std::string payload(1 << 20, 'm');
  std::atomic<std::size_t> consumed{0};
  auto sub = broker.connect("consumer");
  subscribe_options so;
  so.acked = true;
  sub->subscribe("promise.big", [&](const message_view& v) {
    sub->ack(v.sid, v.seq);
    ++consumed;
  }, so);
  auto pub = broker.connect("big-publisher");
  wait_subscribed(*pub, "promise.big");
  auto& bp = broker.process();
  auto start = bp.rss_bytes().value_or(0); // as it started
  BOOST_TEST_REQUIRE(start > 0u);
  // At most `window` in flight: the test measures what stays, not a peak.
  constexpr std::size_t window = 32;
  auto publish = [&](std::size_t n, std::size_t from) {
    confirm_tally confirms;
    for (std::size_t i = 0; i < n; ++i) {
      BOOST_TEST_REQUIRE(confirms.wait_total(i >= window ? i - window + 1 : 0));
      publish_options o;
      auto id = "big" + std::to_string(from + i);
      o.msg_id = id;
      pub->publish_confirmed("promise.big", payload, confirms.handler(), o);
    }
    BOOST_TEST_REQUIRE(confirms.wait_total(n));
    BOOST_TEST(confirms.of(0) == n);
  };
  publish(1200, 0);
  // The allocator keeps up to 64 MiB for the next burst while messages
  // flow, and gives it back after a quiet second (see tune_allocator).
  std::size_t end = 0;
  bool back = poll_until([&] {
    end = bp.rss_bytes().value_or(0);
    return end < start + (50u << 20);
  }, 5s, 50ms);
  BOOST_TEST_MESSAGE("broker RSS " << start / 1024 << " KiB before 1200 settled 1 MiB publishes, "
                     << end / 1024 << " KiB after");
  if (rss_meaningful) BOOST_TEST(back, "the broker grew by " << (end - start) / 1024 << " KiB");
}

BOOST_AUTO_TEST_CASE(a_connection_posing_as_a_peer_is_refused_and_confirms_nothing) {
  temp_file secret{"cluster-secret"};
  {
    std::ofstream{secret.path()} << "the integration suite's cluster secret\n";
  }
  broker_process broker{{"--id", "real", "--cluster-secret-file", secret.path(),
                         "--stats-interval-ms", "100"}};
  stats_watch stats{broker, "real"};
  zmq::context_t ctx{1};
  raw_connection fake{ctx, broker.endpoint()};
  wire::header hello;
  hello.kind = wire::op::peer_hello;
  hello.node = "impostor";
  hello.seq = 1;
  hello.delivery = 1;
  hello.auth = "not the proof the secret gives";
  fake.send(hello);
  wire::header interest;
  interest.kind = wire::op::interest_add;
  interest.topic = "promise.q";
  interest.queue = "workers";
  interest.credit = 1000;
  fake.send(interest);
  std::vector<std::uint32_t> errors;
  fake.receive(2s, [&](const wire::header& h, std::string_view) {
    if (h.kind == wire::op::err) errors.push_back(h.code);
    return errors.size() < 2;
  });
  BOOST_TEST_REQUIRE(errors.size() == 2u);
  BOOST_TEST(errors[0] == 113u); // not authorized
  BOOST_TEST(errors[1] == 108u); // peer ops from a client: a protocol violation
  auto pub = broker.connect("publisher");
  confirm_tally confirms;
  for (int i = 0; i < 100; ++i) pub->publish_confirmed("promise.q", "x", confirms.handler());
  // Whatever reaches the impostor, it answers "ok", as the attack did.
  std::size_t forwards = 0;
  fake.receive(500ms, [&](const wire::header& h, std::string_view) {
    if (h.kind == wire::op::fwd) {
      ++forwards;
      wire::header relay;
      relay.kind = wire::op::confirm_relay;
      relay.seq = h.seq;
      relay.node = "impostor";
      fake.send(relay);
    }
    return true;
  });
  BOOST_TEST_REQUIRE(confirms.wait_total(100));
  BOOST_TEST(forwards == 0u);
  BOOST_TEST(confirms.of(0) == 0u);
  BOOST_TEST(confirms.of(101) == 100u); // no interest: nobody real subscribes
  BOOST_TEST(stats.wait_for("peers_refused", [](auto n) { return n >= 1; }), stats.json());
}

namespace {

// A subscriber that reads nothing while `count` messages of 1 KiB come,
// then reads everything: the MSGs, ERR 112 (what was dropped), BYE.
struct slow_read {
  std::size_t msgs = 0, told = 0, pongs = 0;
  std::vector<std::string> byes;
  std::vector<std::uint32_t> errs;
};

slow_read flood_a_subscriber_that_does_not_read(broker_process& broker, std::size_t count) {
  zmq::context_t ctx{1};
  raw_connection slow{ctx, broker.endpoint(), 1};
  slow.hello("slow");
  slow.subscribe(1, "promise.flood");
  auto pub = broker.connect("flooder");
  wait_subscribed(*pub, "promise.flood");
  slow_read r;
  r.msgs = 0;
  // The probes that arrived so far are read and not counted.
  slow.receive(100ms, [](const wire::header&, std::string_view) { return true; });
  const std::string payload(1024, 'f');
  for (std::size_t i = 0; i < count; ++i) pub->publish("promise.flood", payload);
  sync_with_broker(*pub); // the broker has routed them all
  wire::header ping;
  ping.kind = wire::op::ping;
  slow.send(ping); // a full queue of messages must not keep its PONG away
  slow.receive(2s, [&](const wire::header& h, std::string_view p) {
    switch (h.kind) {
      case wire::op::msg: r.msgs += p == payload; break;
      case wire::op::err:
        r.errs.push_back(h.code);
        if (h.code == 112u) r.told += h.count;
        break;
      case wire::op::pong: ++r.pongs; break;
      case wire::op::bye: r.byes.emplace_back(h.text); break;
      case wire::op::ping: { // answered: it is alive
        wire::header pong;
        pong.kind = wire::op::pong;
        slow.send(pong);
        break;
      }
      default: break;
    }
    return r.msgs + r.told < count || (r.byes.empty() && r.pongs == 0);
  });
  return r;
}

} // namespace

BOOST_AUTO_TEST_CASE(a_slow_consumer_under_drop_is_told_every_message_it_missed) {
  broker_process broker{{"--id", "dropper", "--max-pending-msgs", "100", "--max-pending-bytes",
                         "262144", "--sndhwm", "1", "--stats-interval-ms", "100"}};
  stats_watch stats{broker, "dropper"};
  constexpr std::size_t count = 20000;
  auto r = flood_a_subscriber_that_does_not_read(broker, count);
  BOOST_TEST_MESSAGE("received " << r.msgs << ", told of " << r.told << " dropped");
  BOOST_TEST(r.told > 0u);
  BOOST_TEST(r.msgs + r.told == count); // every message: received, or counted to it
  BOOST_TEST(r.pongs == 1u);
  BOOST_TEST(r.byes.empty());
  for (auto code : r.errs) BOOST_TEST(code == 112u);
  BOOST_TEST(stats.wait_for("slow_consumer_drops", [&](auto n) { return n == r.told; }), stats.json());
}

BOOST_AUTO_TEST_CASE(a_slow_consumer_under_disconnect_gets_a_bye_that_says_why) {
  broker_process broker{{"--max-pending-msgs", "100", "--max-pending-bytes", "262144", "--sndhwm",
                         "1", "--slow-consumer", "disconnect"}};
  auto r = flood_a_subscriber_that_does_not_read(broker, 20000);
  BOOST_TEST_REQUIRE(r.byes.size() == 1u);
  BOOST_TEST(r.byes[0].starts_with("slow consumer"), r.byes[0]);
  BOOST_TEST(r.msgs < 20000u);
  // Its PING reached the broker after the BYE: a connection without a
  // session, which says so (ERR 108), as PROTOCOL.md has it.
  for (auto code : r.errs) BOOST_TEST(code == 108u);
}

BOOST_AUTO_TEST_SUITE_END()
