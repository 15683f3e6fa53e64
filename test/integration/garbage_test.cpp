// SPDX-License-Identifier: Apache-2.0
// Bad input from the network: a raw ZeroMQ DEALER sends garbage; the broker
// answers each decodable frame with ERR and the codec's error code, drops a
// connection that sends an oversized frame, and keeps serving good clients.
#include <random>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "harness.hpp"

using namespace plexus::itest;
namespace wire = plexus::wire;

namespace {

struct reply_header {
  wire::op kind = wire::op::ping;
  std::uint32_t code = 0;
  std::string text;
};

// What the broker sent, decoded (a batch gives several); empty on timeout.
std::vector<reply_header> receive(zmq::socket_t& s, milliseconds timeout) {
  zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, timeout) == 0) return {};
  std::vector<zmq::message_t> parts;
  BOOST_REQUIRE(zmq::recv_multipart(s, std::back_inserter(parts)));
  std::vector<std::string_view> frames;
  for (auto& p : parts) frames.emplace_back(static_cast<const char*>(p.data()), p.size());
  std::vector<wire::entry> entries(1);
  wire::decode_error err;
  if (frames.size() == 1 && wire::is_batch_frame(frames[0]))
    err = wire::decode_batch(frames[0], wire::limits{}, entries);
  else
    err = wire::decode_message(frames, wire::limits{}, entries[0]);
  BOOST_REQUIRE_MESSAGE(!err, "the broker sent a frame that does not decode: " << wire::to_string(err));
  std::vector<reply_header> out;
  for (auto& e : entries) out.push_back({e.h.kind, e.h.code, std::string{e.h.text}});
  return out;
}

void send_header(zmq::socket_t& s, const wire::header& h) {
  std::string bytes;
  wire::encode_header(h, bytes);
  s.send(zmq::buffer(bytes), zmq::send_flags::none);
}

// Waits for the next ERR (answering PINGs meanwhile); its code, or nothing.
std::optional<reply_header> next_err(zmq::socket_t& s) {
  auto deadline = std::chrono::steady_clock::now() + default_wait;
  while (std::chrono::steady_clock::now() < deadline) {
    for (auto& r : receive(s, 100ms)) {
      if (r.kind == wire::op::err) return r;
      if (r.kind == wire::op::ping) {
        wire::header pong;
        pong.kind = wire::op::pong;
        send_header(s, pong);
      }
    }
  }
  return std::nullopt;
}

// The code the broker should answer `frames` with: what the codec says.
std::uint32_t expected_code(const std::vector<std::string>& frames) {
  std::vector<std::string_view> views(frames.begin(), frames.end());
  if (views.size() == 1 && wire::is_batch_frame(views[0])) {
    std::vector<wire::entry> entries;
    return static_cast<std::uint32_t>(wire::decode_batch(views[0], wire::limits{}, entries).code);
  }
  wire::entry e;
  return static_cast<std::uint32_t>(wire::decode_message(views, wire::limits{}, e).code);
}

void send_frames(zmq::socket_t& s, const std::vector<std::string>& frames) {
  for (std::size_t i = 0; i < frames.size(); ++i)
    s.send(zmq::buffer(frames[i]), i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
}

struct connection_events : zmq::monitor_t {
  std::size_t connected = 0, disconnected = 0;
  void on_event_connected(const zmq_event_t&, const char*) override { ++connected; }
  void on_event_disconnected(const zmq_event_t&, const char*) override { ++disconnected; }
  template <class Pred>
  bool wait(Pred&& pred) {
    auto deadline = std::chrono::steady_clock::now() + default_wait;
    while (!pred()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      check_event(100);
    }
    return true;
  }
};

// A good client's round trip through the broker.
class round_trips {
public:
  explicit round_trips(const broker_process& b) : sub_(b.connect("good-sub")), pub_(b.connect("good-pub")) {
    sub_->subscribe("good.check", got_.handler());
    sync_with_broker(*sub_);
  }
  ~round_trips() { sub_.reset(); }
  void check(const std::string& when) {
    auto payload = "rt-" + std::to_string(++sent_);
    pub_->publish("good.check", payload);
    BOOST_REQUIRE_MESSAGE(got_.wait_count(sent_), "a good round trip failed " << when);
    BOOST_TEST(got_.payloads().back() == payload);
  }

private:
  collector got_;
  std::unique_ptr<plexus::client> sub_, pub_;
  std::size_t sent_ = 0;
};

} // namespace

BOOST_AUTO_TEST_SUITE(garbage)

BOOST_AUTO_TEST_CASE(garbage_frames_get_err_replies_and_good_clients_keep_working) {
  broker_process broker{{"--id", "gb", "--stats-interval-ms", "200"}};
  stats_watch stats{broker, "gb"};
  round_trips good{broker};
  good.check("before any garbage");

  zmq::context_t ctx{1};
  zmq::socket_t bad{ctx, zmq::socket_type::dealer};
  bad.set(zmq::sockopt::linger, 0);
  bad.connect(broker.endpoint());
  wire::header hello;
  hello.kind = wire::op::hello;
  hello.node = "garbage";
  send_header(bad, hello);
  bool welcomed = false;
  for (auto& r : receive(bad, default_wait)) welcomed |= r.kind == wire::op::welcome;
  BOOST_REQUIRE_MESSAGE(welcomed, "no WELCOME for the raw DEALER's HELLO");

  std::size_t bad_frames = 0;
  auto expect = [&](const std::string& what, const std::vector<std::string>& frames, wire::errc code) {
    send_frames(bad, frames);
    ++bad_frames;
    auto err = next_err(bad);
    BOOST_REQUIRE_MESSAGE(err, "no ERR for " << what);
    BOOST_TEST(err->code == static_cast<std::uint32_t>(code),
               what << ": ERR " << err->code << " (" << err->text << "), expected "
                    << static_cast<unsigned>(code) << " (" << wire::to_string(code) << ")");
    good.check("after " + what);
  };

  std::mt19937 rng{20240601};
  auto random_bytes = [&](std::size_t n) {
    std::string s(n, '\0');
    for (auto& ch : s) ch = static_cast<char>(rng() & 0xff);
    return s;
  };
  expect("random bytes after 0xc1", {"\xc1" + random_bytes(63)}, wire::errc::malformed);
  expect("an array of ints", {std::string{"\x93\x01\x02\x03", 4}}, wire::errc::bad_batch);
  expect("an array of two ints", {std::string{"\x92\x01\x02", 3}}, wire::errc::not_a_map);
  expect("a map with string keys", {std::string{"\x81\xa1" "a\x01", 4}}, wire::errc::wrong_type);
  expect("an empty frame", {std::string{}}, wire::errc::truncated);
  wire::header v2;
  v2.kind = wire::op::ping;
  v2.version = 2;
  std::string v2_bytes;
  wire::encode_header(v2, v2_bytes);
  expect("a version 2 header", {v2_bytes}, wire::errc::bad_version);
  wire::header ping;
  ping.kind = wire::op::ping;
  std::string ping_bytes;
  wire::encode_header(ping, ping_bytes);
  expect("three frames", {ping_bytes, "a", "b"}, wire::errc::too_many_frames);

  // Random frames: whatever the codec says about them, the broker answers.
  for (int i = 0; i < 20; ++i) {
    std::vector<std::string> frames{random_bytes(1 + rng() % 200)};
    auto code = expected_code(frames);
    if (code == 0) continue; // decodes (vanishingly unlikely): not garbage
    expect("random frame " + std::to_string(i), frames, static_cast<wire::errc>(code));
  }

  // Larger than ZMQ_MAXMSGSIZE: ZeroMQ drops that connection before the
  // broker sees a byte of it.
  zmq::socket_t big{ctx, zmq::socket_type::dealer};
  big.set(zmq::sockopt::linger, 0);
  big.set(zmq::sockopt::reconnect_ivl, 10000); // stays down once dropped
  connection_events events;
  events.init(big, "inproc://itest-big-monitor", ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED);
  big.connect(broker.endpoint());
  BOOST_REQUIRE(events.wait([&] { return events.connected > 0; }));
  std::string huge(9u << 20, 'x');
  big.send(zmq::buffer(huge), zmq::send_flags::none);
  BOOST_TEST(events.wait([&] { return events.disconnected > 0; }),
             "the broker did not drop the connection that sent 9 MiB");
  good.check("after a 9 MiB frame");

  // The garbage connection itself still works after its errors.
  send_header(bad, ping);
  bool pong = false;
  auto deadline = std::chrono::steady_clock::now() + default_wait;
  while (!pong && std::chrono::steady_clock::now() < deadline)
    for (auto& r : receive(bad, 100ms)) pong |= r.kind == wire::op::pong;
  BOOST_TEST(pong, "no PONG on the garbage connection after its errors");

  BOOST_TEST(broker.process().running());
  BOOST_REQUIRE_MESSAGE(stats.wait_for("bad_frames", [&](auto v) { return v >= bad_frames; }),
                        "stats never counted " << bad_frames << " bad frames: " << stats.json());
  BOOST_TEST(stats.counter("bad_frames") == bad_frames);
}

BOOST_AUTO_TEST_SUITE_END()
