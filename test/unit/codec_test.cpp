// SPDX-License-Identifier: Apache-2.0
#include <boost/test/unit_test.hpp>

#include <array>
#include <string>
#include <vector>

#include <msgpack.hpp>

#include "plexus/wire.hpp"
#include "print.hpp"

using namespace plexus;
using namespace plexus::wire;

namespace {

// Builds raw msgpack by hand, for inputs the encoder would never write.
struct raw {
  std::string bytes;
  struct sink {
    std::string& s;
    void write(const char* p, std::size_t n) { s.append(p, n); }
  };
  template <class Fn>
  raw& put(Fn fn) {
    sink k{bytes};
    msgpack::packer<sink> pk{k};
    fn(pk);
    return *this;
  }
  raw& map(std::uint32_t n) { return put([&](auto& pk) { pk.pack_map(n); }); }
  raw& array(std::uint32_t n) { return put([&](auto& pk) { pk.pack_array(n); }); }
  raw& u(std::uint64_t v) { return put([&](auto& pk) { pk.pack_uint64(v); }); }
  raw& i(std::int64_t v) { return put([&](auto& pk) { pk.pack_int64(v); }); }
  raw& nil() { return put([&](auto& pk) { pk.pack_nil(); }); }
  raw& s(std::string_view v) {
    return put([&](auto& pk) {
      pk.pack_str(static_cast<std::uint32_t>(v.size()));
      pk.pack_str_body(v.data(), static_cast<std::uint32_t>(v.size()));
    });
  }
  raw& kv(field f, std::uint64_t v) { return u(static_cast<std::uint8_t>(f)).u(v); }
  raw& kv(field f, std::string_view v) { return u(static_cast<std::uint8_t>(f)).s(v); }
  std::string str() const { return bytes; }
};

// A valid PUB header map with `extra` more entries still to be written.
raw pub_prefix(std::uint32_t extra) {
  raw r;
  r.map(3 + extra).kv(field::version, 1).kv(field::op, 5).kv(field::topic, "orders.shipped");
  return r;
}

decode_error decode(std::string_view bytes, const limits& lim = {}) {
  header h;
  return decode_header(bytes, lim, h);
}

std::string encode(const header& h) {
  std::string out;
  encode_header(h, out);
  return out;
}

header full_header(op kind, std::string& storage) {
  storage.reserve(512); // views below point into it: no reallocation
  header h;
  h.kind = kind;
  h.sid = 7;
  h.topic = kind == op::sub || kind == op::interest_add || kind == op::interest_remove
                || kind == op::unsub
              ? "orders.*.>"
              : "orders.eu.shipped";
  h.queue = "shipping";
  h.msg_id = std::string_view{"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f", 16};
  h.reply_to = "_INBOX.node1.42";
  h.headers = pack_string_map({{"content-type", "application/msgpack"}, {"tenant", "acme"}},
                              storage);
  h.deadline_ns = 1'790'000'000'000'000'000ull;
  h.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  h.flags = flag_confirm;
  h.seq = 1ull << 40;
  h.delivery = 3;
  h.credit = 64;
  h.ack = ack_mode::explicit_ack;
  h.ack_wait_ms = 30'000;
  h.max_deliver = 5;
  h.action = nack_action::dead_letter;
  h.delay_ms = 250;
  h.code = 404;
  h.text = "no responders";
  h.node = "node-1";
  h.heartbeat_ms = 1000;
  h.brokers = pack_string_list({"tcp://127.0.0.1:4222", "tcp://127.0.0.1:4223"}, storage);
  h.max_payload = 1 << 20;
  h.count = 32;
  h.publisher = "node-1/7";
  h.auth = std::string_view{"\x01\x02\x03", 3};
  h.user = "alice";
  return h;
}

void check_equal(const header& a, const header& b) {
  BOOST_TEST(a.kind == b.kind);
  BOOST_TEST(a.version == b.version);
  BOOST_TEST(a.sid == b.sid);
  BOOST_TEST(a.topic == b.topic);
  BOOST_TEST(a.queue == b.queue);
  BOOST_TEST(a.msg_id == b.msg_id);
  BOOST_TEST(a.reply_to == b.reply_to);
  BOOST_TEST((a.headers.items() == b.headers.items()));
  BOOST_TEST(a.deadline_ns == b.deadline_ns);
  BOOST_TEST(a.traceparent == b.traceparent);
  BOOST_TEST(a.flags == b.flags);
  BOOST_TEST(a.seq == b.seq);
  BOOST_TEST(a.delivery == b.delivery);
  BOOST_TEST(a.credit == b.credit);
  BOOST_TEST(a.ack == b.ack);
  BOOST_TEST(a.ack_wait_ms == b.ack_wait_ms);
  BOOST_TEST(a.max_deliver == b.max_deliver);
  BOOST_TEST(a.action == b.action);
  BOOST_TEST(a.delay_ms == b.delay_ms);
  BOOST_TEST(a.code == b.code);
  BOOST_TEST(a.text == b.text);
  BOOST_TEST(a.node == b.node);
  BOOST_TEST(a.heartbeat_ms == b.heartbeat_ms);
  BOOST_TEST(a.brokers.items() == b.brokers.items(), boost::test_tools::per_element());
  BOOST_TEST(a.max_payload == b.max_payload);
  BOOST_TEST(a.count == b.count);
  BOOST_TEST(a.publisher == b.publisher);
  BOOST_TEST(a.auth == b.auth);
  BOOST_TEST(a.user == b.user);
}

constexpr std::array all_ops{op::hello, op::welcome, op::sub, op::unsub, op::pub, op::msg,
                             op::ack, op::nack, op::credit, op::confirm, op::ping, op::pong,
                             op::err, op::bye, op::peer_hello, op::interest_add,
                             op::interest_remove, op::fwd, op::confirm_relay};

} // namespace

BOOST_AUTO_TEST_SUITE(codec)

BOOST_AUTO_TEST_CASE(every_op_round_trips_with_every_field) {
  for (auto kind : all_ops) {
    BOOST_TEST_CONTEXT(to_string(kind)) {
      std::string storage;
      auto in = full_header(kind, storage);
      auto bytes = encode(in);
      header out;
      auto e = decode_header(bytes, {}, out);
      BOOST_TEST_REQUIRE(e.ok(), to_string(e));
      check_equal(in, out);
    }
  }
}

BOOST_AUTO_TEST_CASE(every_op_round_trips_with_only_its_required_fields) {
  for (auto kind : all_ops) {
    BOOST_TEST_CONTEXT(to_string(kind)) {
      header in;
      in.kind = kind;
      // Only what each op requires; zero values must survive the trip.
      std::string storage;
      auto full = full_header(kind, storage);
      in.topic = full.topic;
      in.node = full.node;
      in.msg_id = full.msg_id;
      auto bytes = encode(in);
      header out;
      auto e = decode_header(bytes, {}, out);
      BOOST_TEST_REQUIRE(e.ok(), to_string(e));
      check_equal(in, out);
    }
  }
}

BOOST_AUTO_TEST_CASE(a_msg_header_built_from_shared_fields_is_the_one_encode_header_writes) {
  std::string storage;
  const auto full = full_header(op::msg, storage);
  const std::string long_reply_to = "_INBOX." + std::string(300, 'r'); // a str16
  // Each shared field present or absent (the topic always: MSG requires
  // it), with per-delivery values at zero and across msgpack's widths.
  for (unsigned present = 0; present < 64; ++present) {
    msg_fields shared;
    shared.topic = full.topic;
    if (present & 1) shared.msg_id = full.msg_id;
    if (present & 2) shared.reply_to = full.reply_to;
    if (present & 4) shared.headers = full.headers;
    if (present & 8) shared.deadline_ns = full.deadline_ns;
    if (present & 16) shared.traceparent = full.traceparent;
    if (present & 32) shared.reply_to = long_reply_to;
    std::string room(encoded_size(shared), '\0');
    auto moved = shared;
    auto encoded = encode_msg_fields(moved, room.data());
    BOOST_TEST_REQUIRE(encoded.bytes.size() == room.size());
    // The strings now live in `room`, and still say the same.
    auto moved_to_room = [&](std::string_view was, std::string_view now) {
      auto inside = now.data() >= room.data() && now.data() + now.size() <= room.data() + room.size();
      return now == was && (now.empty() || inside);
    };
    BOOST_TEST(moved_to_room(shared.topic, moved.topic));
    BOOST_TEST(moved_to_room(shared.msg_id, moved.msg_id));
    BOOST_TEST(moved_to_room(shared.reply_to, moved.reply_to));
    BOOST_TEST(moved_to_room(shared.traceparent, moved.traceparent));
    BOOST_TEST(moved_to_room(shared.headers.raw(), moved.headers.raw()));
    BOOST_TEST(moved.headers.size() == shared.headers.size());
    for (std::uint32_t sid : {0u, 1u, 200u, 70'000u, 0xffffffffu})
      for (std::uint64_t seq : {0ull, 5ull, 300ull, 1ull << 40})
        for (std::uint32_t delivery : {0u, 1u, 128u}) {
          BOOST_TEST_CONTEXT("fields " << present << " sid " << sid << " seq " << seq
                                       << " delivery " << delivery) {
            header h;
            h.kind = op::msg;
            h.sid = sid;
            h.topic = shared.topic;
            h.msg_id = shared.msg_id;
            h.reply_to = shared.reply_to;
            h.headers = shared.headers;
            h.deadline_ns = shared.deadline_ns;
            h.traceparent = shared.traceparent;
            h.seq = seq;
            h.delivery = delivery;
            std::string fast = "prefix";
            encode_msg_header(sid, encoded, seq, delivery, fast);
            BOOST_TEST(fast == "prefix" + encode(h));
          }
        }
  }
}

BOOST_AUTO_TEST_CASE(decoded_views_point_into_the_frame_without_copying) {
  std::string storage;
  auto bytes = encode(full_header(op::pub, storage));
  header out;
  BOOST_REQUIRE(decode_header(bytes, {}, out).ok());
  auto inside = [&](std::string_view v) {
    return v.data() >= bytes.data() && v.data() + v.size() <= bytes.data() + bytes.size();
  };
  BOOST_TEST(inside(out.topic));
  BOOST_TEST(inside(out.msg_id));
  BOOST_TEST(inside(out.headers.raw()));
  BOOST_TEST(out.headers.find("tenant") == "acme");
  BOOST_TEST(out.headers.find("missing").empty());
}

BOOST_AUTO_TEST_CASE(the_payload_frame_is_taken_as_is_and_never_copied) {
  header h;
  h.kind = op::pub;
  h.topic = "orders.shipped";
  auto head = encode(h);
  std::string payload(128, 'x');
  std::array<std::string_view, 2> frames{head, payload};
  entry out;
  auto e = decode_message(frames, {}, out);
  BOOST_TEST_REQUIRE(e.ok(), to_string(e));
  BOOST_TEST(out.payload.data() == payload.data());
  BOOST_TEST(out.payload.size() == payload.size());
}

BOOST_AUTO_TEST_CASE(payload_frames_must_fit_the_op) {
  header pub;
  pub.kind = op::pub;
  pub.topic = "a.b";
  header ping;
  ping.kind = op::ping;
  auto pub_bytes = encode(pub);
  auto ping_bytes = encode(ping);
  std::string big(1025, 'x');
  limits lim;
  lim.max_payload_bytes = 1024;
  entry out;
  std::array<std::string_view, 1> pub_alone{pub_bytes};
  BOOST_TEST(decode_message(pub_alone, lim, out).code == errc::missing_payload);
  std::array<std::string_view, 2> ping_with{ping_bytes, "x"};
  BOOST_TEST(decode_message(ping_with, lim, out).code == errc::unexpected_payload);
  std::array<std::string_view, 2> too_big{pub_bytes, big};
  auto e = decode_message(too_big, lim, out);
  BOOST_TEST(e.code == errc::payload_too_large);
  BOOST_TEST(e.where == field::payload);
  std::array<std::string_view, 3> three{pub_bytes, "x", "y"};
  BOOST_TEST(decode_message(three, lim, out).code == errc::too_many_frames);
  std::array<std::string_view, 2> empty_payload{pub_bytes, ""};
  BOOST_TEST(decode_message(empty_payload, lim, out).ok());
}

BOOST_AUTO_TEST_CASE(unknown_fields_are_skipped_for_forward_compatibility) {
  auto r = pub_prefix(3);
  r.u(99).s("a later version's field");
  r.u(100).map(1).s("nested").array(2).u(1).u(2);
  r.u(29).nil();
  auto bytes = r.str();
  header h;
  auto e = decode_header(bytes, {}, h);
  BOOST_TEST_REQUIRE(e.ok(), to_string(e));
  BOOST_TEST(h.topic == "orders.shipped");
}

BOOST_AUTO_TEST_CASE(integers_in_any_msgpack_width_are_read) {
  using namespace std::string_literals;
  // sid as int8 (0xd0 0x05), seq as uint64, deadline as int64: other
  // encoders write small non-negative numbers in signed formats.
  auto r = pub_prefix(3);
  auto bytes = r.str() + "\x02\xd0\x05"s + "\x0b\xcf\x00\x00\x01\x00\x00\x00\x00\x00"s
               + "\x08\xd3\x00\x00\x00\x00\x00\x00\x01\x00"s;
  header h;
  auto e = decode_header(bytes, {}, h);
  BOOST_TEST_REQUIRE(e.ok(), to_string(e));
  BOOST_TEST(h.sid == 5u);
  BOOST_TEST(h.seq == (1ull << 40));
  BOOST_TEST(h.deadline_ns == 256u);
  auto negative = pub_prefix(1).str() + "\x02\xd0\xff"s; // sid = -1
  BOOST_TEST(decode(negative).code == errc::wrong_type);
}

BOOST_AUTO_TEST_CASE(an_unknown_op_is_an_error) {
  raw r;
  r.map(2).kv(field::version, 1).kv(field::op, 15);
  auto e = decode(r.str());
  BOOST_TEST(e.code == errc::unknown_op);
  BOOST_TEST(e.where == field::op);
  raw r2;
  r2.map(2).kv(field::version, 1).kv(field::op, 0);
  BOOST_TEST(decode(r2.str()).code == errc::unknown_op);
}

BOOST_AUTO_TEST_CASE(version_is_required_and_checked) {
  raw missing;
  missing.map(1).kv(field::op, 11);
  auto e = decode(missing.str());
  BOOST_TEST(e.code == errc::missing_field);
  BOOST_TEST(e.where == field::version);
  raw v2;
  v2.map(2).kv(field::version, 2).kv(field::op, 11);
  BOOST_TEST(decode(v2.str()).code == errc::bad_version);
}

BOOST_AUTO_TEST_CASE(required_fields_are_enforced_per_op) {
  raw sub; // SUB without a pattern
  sub.map(3).kv(field::version, 1).kv(field::op, 3).kv(field::sid, 1);
  auto e = decode(sub.str());
  BOOST_TEST(e.code == errc::missing_field);
  BOOST_TEST(e.where == field::topic);
  raw ack; // ACK without a seq
  ack.map(3).kv(field::version, 1).kv(field::op, 7).kv(field::sid, 1);
  e = decode(ack.str());
  BOOST_TEST(e.code == errc::missing_field);
  BOOST_TEST(e.where == field::seq);
  auto confirm = pub_prefix(1); // a confirmed PUB needs a msg id
  confirm.kv(field::flags, flag_confirm);
  e = decode(confirm.str());
  BOOST_TEST(e.code == errc::missing_field);
  BOOST_TEST(e.where == field::msg_id);
}

BOOST_AUTO_TEST_CASE(wrong_types_duplicates_and_ranges_are_rejected) {
  auto topic_int = raw{};
  topic_int.map(3).kv(field::version, 1).kv(field::op, 5).kv(field::topic, 42);
  auto e = decode(topic_int.str());
  BOOST_TEST(e.code == errc::wrong_type);
  BOOST_TEST(e.where == field::topic);

  auto negative = pub_prefix(1);
  negative.u(static_cast<std::uint8_t>(field::sid)).i(-1);
  BOOST_TEST(decode(negative.str()).code == errc::wrong_type);

  auto dup = pub_prefix(1);
  dup.kv(field::topic, "again");
  e = decode(dup.str());
  BOOST_TEST(e.code == errc::duplicate_field);
  BOOST_TEST(e.where == field::topic);

  auto str_key = pub_prefix(1);
  str_key.s("topic").s("x");
  e = decode(str_key.str());
  BOOST_TEST(e.code == errc::wrong_type);
  BOOST_TEST(e.where == field::key);

  auto big_sid = pub_prefix(1);
  big_sid.kv(field::sid, 1ull << 32);
  e = decode(big_sid.str());
  BOOST_TEST(e.code == errc::value_out_of_range);
  BOOST_TEST(e.where == field::sid);

  auto bad_action = pub_prefix(1);
  bad_action.kv(field::action, 3);
  BOOST_TEST(decode(bad_action.str()).code == errc::value_out_of_range);

  auto bad_headers = pub_prefix(1);
  bad_headers.u(static_cast<std::uint8_t>(field::headers)).map(1).s("k").u(1);
  e = decode(bad_headers.str());
  BOOST_TEST(e.code == errc::wrong_type);
  BOOST_TEST(e.where == field::headers);

  BOOST_TEST(decode(raw{}.array(0).str()).code == errc::not_a_map);
  BOOST_TEST(decode(raw{}.u(5).str()).code == errc::not_a_map);
}

BOOST_AUTO_TEST_CASE(topics_are_validated_by_op) {
  auto wild_pub = raw{};
  wild_pub.map(3).kv(field::version, 1).kv(field::op, 5).kv(field::topic, "orders.*");
  auto e = decode(wild_pub.str());
  BOOST_TEST(e.code == errc::bad_topic);
  BOOST_TEST(e.topic == topic_errc::wildcard_in_topic);
  BOOST_TEST(to_string(e) == "topic: bad topic (wildcard in a concrete topic)");

  auto sub = raw{};
  sub.map(4).kv(field::version, 1).kv(field::op, 3).kv(field::sid, 1).kv(field::topic, "a.>.b");
  e = decode(sub.str());
  BOOST_TEST(e.code == errc::bad_pattern);
  BOOST_TEST(e.topic == topic_errc::tail_not_last);

  auto reply = pub_prefix(1);
  reply.kv(field::reply_to, "_INBOX..x");
  e = decode(reply.str());
  BOOST_TEST(e.code == errc::bad_topic);
  BOOST_TEST(e.where == field::reply_to);
}

// Each limit, exceeded by one, gives its own error and names the field.
BOOST_AUTO_TEST_CASE(every_limit_exceeded_gives_its_own_error) {
  limits lim;
  lim.max_header_bytes = 512;
  lim.topic = {.max_bytes = 32, .max_tokens = 4};
  lim.max_headers = 2;
  lim.max_header_key_bytes = 8;
  lim.max_header_value_bytes = 16;
  lim.max_msg_id_bytes = 16;
  lim.max_name_bytes = 8;
  lim.max_text_bytes = 10;
  lim.max_map_size = 8;
  lim.max_array_size = 2;
  lim.max_depth = 3;

  struct limit_case {
    const char* name;
    raw input;
    errc code;
    field where;
  };
  std::vector<limit_case> cases;
  auto add = [&](const char* name, raw r, errc code, field where) {
    cases.push_back({name, std::move(r), code, where});
  };
  {
    raw r;
    r.map(3).kv(field::version, 1).kv(field::op, 5).kv(field::topic, std::string(33, 'a'));
    add("topic bytes", std::move(r), errc::string_too_long, field::topic);
  }
  {
    raw r;
    r.map(3).kv(field::version, 1).kv(field::op, 5).kv(field::topic, "a.b.c.d.e");
    add("topic tokens", std::move(r), errc::bad_topic, field::topic);
  }
  {
    auto r = pub_prefix(1);
    r.u(7).map(3).s("a").s("1").s("b").s("2").s("c").s("3");
    add("header count", std::move(r), errc::too_many_headers, field::headers);
  }
  {
    auto r = pub_prefix(1);
    r.u(7).map(1).s("123456789").s("v");
    add("header key", std::move(r), errc::string_too_long, field::headers);
  }
  {
    auto r = pub_prefix(1);
    r.u(7).map(1).s("k").s(std::string(17, 'v'));
    add("header value", std::move(r), errc::string_too_long, field::headers);
  }
  {
    auto r = pub_prefix(1);
    r.kv(field::msg_id, std::string(17, 'i'));
    add("msg id", std::move(r), errc::string_too_long, field::msg_id);
  }
  {
    auto r = pub_prefix(1);
    r.kv(field::queue, "123456789");
    add("queue name", std::move(r), errc::string_too_long, field::queue);
  }
  {
    auto r = pub_prefix(1);
    r.kv(field::text, "12345678901");
    add("text", std::move(r), errc::string_too_long, field::text);
  }
  {
    auto r = pub_prefix(1);
    r.u(23).array(3).s("a").s("b").s("c");
    add("broker list", std::move(r), errc::array_too_large, field::brokers);
  }
  {
    raw r;
    r.map(9).kv(field::version, 1).kv(field::op, 5).kv(field::topic, "a");
    for (std::uint64_t k = 30; k < 36; ++k) r.u(k).nil();
    add("map size", std::move(r), errc::map_too_large, field::frame);
  }
  {
    auto r = pub_prefix(1);
    r.u(40).array(1).array(1).array(1).u(1); // levels 2, 3, 4 > 3
    add("depth", std::move(r), errc::too_deep, field::unknown);
  }
  {
    auto r = pub_prefix(1);
    r.u(40).array(3).u(1).u(2).u(3);
    add("unknown array size", std::move(r), errc::array_too_large, field::unknown);
  }
  {
    auto r = pub_prefix(1);
    r.u(40).s(std::string(600, 'x'));
    add("header bytes", std::move(r), errc::header_too_large, field::frame);
  }
  for (auto& c : cases) {
    BOOST_TEST_CONTEXT(c.name) {
      auto e = decode(c.input.str(), lim);
      BOOST_TEST(e.code == c.code);
      BOOST_TEST(e.where == c.where);
    }
  }
}

BOOST_AUTO_TEST_CASE(truncated_input_is_reported_at_every_cut) {
  std::string storage;
  auto bytes = encode(full_header(op::msg, storage));
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    BOOST_TEST_CONTEXT("cut at " << cut) {
      auto e = decode(std::string_view{bytes}.substr(0, cut));
      BOOST_TEST(e.code == errc::truncated);
    }
  }
  BOOST_TEST(decode(bytes + "x").code == errc::trailing_bytes);
}

BOOST_AUTO_TEST_CASE(hostile_inputs_fail_cleanly_without_allocating_their_claims) {
  using namespace std::string_literals;
  // array32 / map32 claiming 4 Gi elements; str32 / bin32 claiming 4 GiB.
  BOOST_TEST(decode("\xdd\xff\xff\xff\xff"s).code == errc::not_a_map);
  BOOST_TEST(decode("\xdf\xff\xff\xff\xff"s).code == errc::map_too_large);
  auto str32 = pub_prefix(1).u(9).str() + "\xdb\xff\xff\xff\xff"s + "abc";
  BOOST_TEST(decode(str32).code == errc::truncated);
  auto ext32 = pub_prefix(1).u(40).str() + "\xc9\xff\xff\xff\xff\x00"s;
  auto e = decode(ext32);
  BOOST_TEST(e.code == errc::truncated);
  // 0xc1 is never used in msgpack.
  BOOST_TEST(decode(pub_prefix(1).u(40).str() + "\xc1"s).code == errc::malformed);
  // 10,000 nested fixarrays in an unknown field.
  limits lim;
  lim.max_header_bytes = 64 * 1024;
  auto nested = pub_prefix(1).u(40).str() + std::string(10'000, '\x91') + "\x01"s;
  e = decode(nested, lim);
  BOOST_TEST(e.code == errc::too_deep);
  // ... even when the configured depth limit is absurd.
  lim.max_depth = 1'000'000;
  BOOST_TEST(decode(nested, lim).code == errc::too_deep);
  BOOST_TEST(decode("").code == errc::truncated);
}

BOOST_AUTO_TEST_CASE(garbage_never_decodes_to_a_valid_header_by_accident) {
  // A deterministic pseudo-random sweep: no crash, and every error names a code.
  std::uint64_t x = 0x9e3779b97f4a7c15ull;
  std::size_t ok = 0;
  for (int i = 0; i < 20'000; ++i) {
    std::string bytes(1 + (x % 64), '\0');
    for (auto& c : bytes) {
      x ^= x << 13; x ^= x >> 7; x ^= x << 17;
      c = static_cast<char>(x);
    }
    bytes[0] = static_cast<char>(0x80 | (x % 16)); // start as a fixmap
    header h;
    auto e = decode_header(bytes, {}, h);
    if (e.ok()) ++ok;
    else BOOST_TEST(e.code != errc::ok);
  }
  BOOST_TEST(ok == 0u);
}

BOOST_AUTO_TEST_CASE(errors_convert_to_std_error_code) {
  std::error_code ec = errc::payload_too_large;
  BOOST_TEST(ec.category().name() == std::string{"plexus.wire"});
  BOOST_TEST(ec.message() == "payload too large");
  BOOST_TEST(limits{}.max_message_bytes() >= limits{}.max_payload_bytes);
}

BOOST_AUTO_TEST_SUITE_END()
