// SPDX-License-Identifier: Apache-2.0
#pragma once

// Drives a broker core with a fake clock and records what it sends, each
// output encoded and decoded again through the wire codec (so every frame
// the core produces is proven to be a valid frame).

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core.hpp"
#include "plexus/wire.hpp"

namespace plexus::test {

using namespace std::chrono_literals;
using broker::conn_id;

/// An output as the client would see it, with owned strings.
struct seen {
  wire::op kind{};
  std::uint32_t sid = 0, delivery = 0, code = 0, credit = 0, count = 0;
  std::uint64_t seq = 0;
  std::string topic, msg_id, reply_to, text, payload, node, user;
  std::vector<std::pair<std::string, std::string>> headers;

  [[nodiscard]] std::string header(std::string_view key) const {
    for (auto& [k, v] : headers)
      if (k == key) return v;
    return {};
  }
};

struct sub_options {
  std::string queue{};
  bool acked = false;
  std::uint32_t credit = 0;
  std::uint32_t ack_wait_ms = 0;
  std::uint32_t max_deliver = 0;
};

struct pub_options {
  std::string msg_id{};
  bool confirm = false;
  std::string reply_to{};
  std::uint64_t deadline_ns = 0;
};

class harness {
public:
  explicit harness(broker::config cfg = {}) : core_(std::move(cfg)) { core_.tick(now_); }

  broker::core& core() { return core_; }
  [[nodiscard]] broker::time_point now() const { return now_; }

  void send(conn_id c, const wire::header& h, std::string_view payload = {}) {
    receive_only(c, h, payload);
    flush();
  }

  /// Hands an envelope to the core without draining its outputs (a
  /// transport that is not sending).
  void receive_only(conn_id c, const wire::header& h, std::string_view payload = {}) {
    // Through the codec, as the server would: encode, decode, hand over.
    std::string bytes;
    wire::encode_header(h, bytes);
    wire::entry e;
    std::string body{payload};
    std::vector<std::string_view> frames{bytes};
    if (wire::carries_payload(h.kind)) frames.push_back(body);
    auto err = wire::decode_message(frames, {}, e);
    BOOST_TEST_REQUIRE(err.ok(), "test sent a bad frame: " << wire::to_string(err));
    core_.receive(c, e, now_);
  }

  /// A PUB of `payload` on `topic`, not drained.
  void publish_only(conn_id c, std::string_view topic, std::string_view payload) {
    wire::header h;
    h.kind = wire::op::pub;
    h.topic = topic;
    receive_only(c, h, payload);
  }

  /// A client, welcomed; `lineage` as its HELLO says it (0: none).
  conn_id connect(std::string node = "client", std::uint64_t lineage = 0) {
    auto c = next_conn_++;
    wire::header h;
    h.kind = wire::op::hello;
    h.node = node;
    h.seq = lineage;
    send(c, h);
    auto got = take(c);
    BOOST_TEST_REQUIRE(got.size() == 1u);
    BOOST_TEST_REQUIRE((got[0].kind == wire::op::welcome));
    return c;
  }

  /// A connection the shell admitted as `user` (authentication), welcomed.
  conn_id connect_as(std::string user, std::string node = "client") {
    core_.identify(next_conn_, user, now_);
    return connect(std::move(node));
  }

  /// A connection id not used yet (for a connection the test drives itself).
  conn_id new_conn() { return next_conn_++; }

  void subscribe(conn_id c, std::uint32_t sid, std::string pattern, sub_options o = {}) {
    wire::header h;
    h.kind = wire::op::sub;
    h.sid = sid;
    h.topic = pattern;
    h.queue = o.queue;
    h.ack = o.acked ? wire::ack_mode::explicit_ack : wire::ack_mode::none;
    h.credit = o.credit;
    h.ack_wait_ms = o.ack_wait_ms;
    h.max_deliver = o.max_deliver;
    send(c, h);
  }

  void publish(conn_id c, std::string topic, std::string payload, pub_options o = {}) {
    wire::header h;
    h.kind = wire::op::pub;
    h.topic = topic;
    h.msg_id = o.msg_id;
    h.flags = o.confirm ? wire::flag_confirm : 0;
    h.reply_to = o.reply_to;
    h.deadline_ns = o.deadline_ns;
    send(c, h, payload);
  }

  void simple(conn_id c, wire::op kind, std::uint32_t sid, std::uint64_t seq = 0,
              std::uint32_t credit = 0) {
    wire::header h;
    h.kind = kind;
    h.sid = sid;
    h.seq = seq;
    h.credit = credit;
    send(c, h);
  }

  void nack(conn_id c, std::uint32_t sid, std::uint64_t seq, wire::nack_action a,
            std::uint32_t delay_ms = 0, std::string why = {}) {
    wire::header h;
    h.kind = wire::op::nack;
    h.sid = sid;
    h.seq = seq;
    h.action = a;
    h.delay_ms = delay_ms;
    h.text = why;
    send(c, h);
  }

  void advance(std::chrono::milliseconds d) {
    // Tick in steps no larger than the core's resolution, as the server does.
    auto end = now_ + d;
    while (now_ < end) {
      now_ = std::min(end, now_ + broker::time_point{50ms});
      core_.tick(now_);
      flush();
    }
  }

  /// Drains the core; `budget` limits how many outputs each connection's
  /// send accepts (a blocked transport), unlimited by default.
  void flush(std::size_t budget = static_cast<std::size_t>(-1)) {
    core_.flush([&](conn_id c, std::span<const broker::output> outs) {
      auto n = std::min(budget, outs.size());
      for (std::size_t i = 0; i < n; ++i) record(c, outs[i]);
      return n;
    });
    for (auto c : core_.take_closed()) closed_.push_back(c);
  }

  std::vector<seen> take(conn_id c) { return std::exchange(inbox_[c], {}); }

  /// Only the MSGs, dropping PINGs and the like.
  std::vector<seen> take_msgs(conn_id c) {
    std::vector<seen> out;
    for (auto& s : take(c))
      if (s.kind == wire::op::msg) out.push_back(std::move(s));
    return out;
  }

  [[nodiscard]] bool was_closed(conn_id c) const {
    return std::find(closed_.begin(), closed_.end(), c) != closed_.end();
  }

private:
  void record(conn_id c, const broker::output& o) {
    BOOST_TEST_REQUIRE(o.to == c);
    std::string bytes, generic;
    o.encode_header(bytes);
    wire::encode_header(o.header(), generic);
    BOOST_TEST_REQUIRE(bytes == generic, "the shell's encoding of a " << wire::to_string(o.kind)
                                         << " is not encode_header's");
    wire::header h;
    auto err = wire::decode_header(bytes, {}, h);
    BOOST_TEST_REQUIRE(err.ok(), "core produced a bad frame: " << wire::to_string(err));
    seen s;
    s.kind = h.kind;
    s.sid = h.sid;
    s.delivery = h.delivery;
    s.code = h.code;
    s.credit = h.credit;
    s.count = h.count;
    s.seq = h.seq;
    s.topic = h.topic;
    s.msg_id = h.msg_id;
    s.reply_to = h.reply_to;
    s.text = h.text;
    s.node = h.node;
    s.user = h.user;
    s.payload = o.payload();
    for (auto& [k, v] : h.headers.items()) s.headers.emplace_back(k, v);
    inbox_[c].push_back(std::move(s));
  }

  broker::core core_;
  broker::time_point now_{std::chrono::seconds{1'800'000'000}};
  conn_id next_conn_ = 1;
  std::map<conn_id, std::vector<seen>> inbox_;
  std::vector<conn_id> closed_;
};

} // namespace plexus::test
