// SPDX-License-Identifier: Apache-2.0
// The `$SYS.trace` payload: what a node's span sink writes is what
// decode_spans reads back, field for field, and anything else is refused.
#include <boost/test/unit_test.hpp>

#include <msgpack.hpp>

#include "span_record.hpp"

using namespace plexus;

namespace {

detail::span_record record(const std::string* name) {
  detail::span_record r;
  r.trace_hi = 0x0123456789abcdefull;
  r.trace_lo = 0xfedcba9876543210ull;
  r.span_id = 0x1111222233334444ull;
  r.parent_id = 0x5555666677778888ull;
  r.start_ns = 1'700'000'000'123'456'789ull;
  r.duration_ns = 1'234'567;
  r.name = name;
  r.delivery = 3;
  r.status = span_status::downstream;
  r.cold_start = true;
  return r;
}

std::vector<span> round_trip(const detail::span_chunk& c) {
  std::vector<detail::span_ref> refs;
  for (std::size_t i = 0; i < c.size(); ++i) refs.push_back({&c, i});
  std::string room(100'000, 'x'); // room to spare: only what it returns is the batch
  auto bytes = detail::encode_span_batch("node-1", refs.data(), refs.size(), room);
  BOOST_TEST_REQUIRE(room.size() == 100'000u); // not shrunk
  BOOST_TEST_REQUIRE(bytes.data() == room.data());
  return decode_spans(bytes);
}

} // namespace

BOOST_AUTO_TEST_SUITE(span_codec)

BOOST_AUTO_TEST_CASE(a_span_reads_back_as_it_was_recorded) {
  const std::string validate = "shipping.validate-address", label = "shipping.create-label";
  detail::span_chunk c;
  c.add(record(&validate), "orders.shipped", std::string{"\x00\x01id", 4},
        "crash in shipping.create-label: boom", "shipping.create-label");
  auto b = record(&label);
  b.request = true;
  b.cold_start = false;
  b.parent_id = 0; // a root
  b.status = span_status::ok;
  c.add(b, "address.validated", "m-2", "", "");
  c.add(record(&validate), "orders.shipped", "m-3", "", ""); // the name again: one table entry
  auto out = round_trip(c);
  BOOST_TEST_REQUIRE(out.size() == 3u);
  BOOST_TEST(out[0].trace_id == "0123456789abcdeffedcba9876543210");
  BOOST_TEST(out[0].span_id == "1111222233334444");
  BOOST_TEST(out[0].parent_id == "5555666677778888");
  BOOST_TEST(out[0].kind == "invocation");
  BOOST_TEST(out[0].node == "node-1");
  BOOST_TEST(out[0].service == "shipping");
  BOOST_TEST(out[0].function == "validate-address");
  BOOST_TEST(out[0].topic == "orders.shipped");
  BOOST_TEST(out[0].msg_id == std::string("\x00\x01id", 4));
  BOOST_TEST(out[0].delivery == 3u);
  BOOST_TEST(out[0].cold_start);
  BOOST_TEST(out[0].start_ns == 1'700'000'000'123'456'789ull);
  BOOST_TEST(out[0].duration_ns == 1'234'567u);
  BOOST_TEST(to_string(out[0].status) == std::string{"downstream"});
  BOOST_TEST(out[0].cause == "crash in shipping.create-label: boom");
  BOOST_TEST(out[0].callee == "shipping.create-label");
  BOOST_TEST(out[1].kind == "request");
  BOOST_TEST(out[1].function == "create-label");
  BOOST_TEST(out[1].parent_id.empty());
  BOOST_TEST(!out[1].cold_start);
  BOOST_TEST(to_string(out[1].status) == std::string{"ok"});
  BOOST_TEST(out[1].cause.empty());
  BOOST_TEST(out[1].msg_id == "m-2");
  BOOST_TEST(out[2].function == "validate-address");
  BOOST_TEST(out[2].msg_id == "m-3");
}

BOOST_AUTO_TEST_CASE(texts_of_every_length_read_back_whole_and_a_cleared_chunk_starts_over) {
  const std::string name = "svc.fn";
  detail::span_chunk c;
  // Across msgpack's string headers: fixstr, str8, str16.
  for (std::size_t n : {0u, 1u, 31u, 32u, 255u, 256u, 4000u}) {
    c.clear();
    const std::string topic(n, 't'), id(std::min<std::size_t>(n, 64), 'i');
    c.add(record(&name), topic, id, std::string(n, 'c'), "x");
    auto out = round_trip(c);
    BOOST_TEST_REQUIRE(out.size() == 1u);
    BOOST_TEST(out[0].topic == topic);
    BOOST_TEST(out[0].msg_id == id);
    BOOST_TEST(out[0].cause == std::string(n, 'c'));
    BOOST_TEST(out[0].callee == "x");
  }
}

BOOST_AUTO_TEST_CASE(a_cause_longer_than_a_reader_takes_is_cut_not_lost) {
  const std::string name = "svc.fn";
  detail::span_chunk c;
  c.add(record(&name), "t", "i", std::string(100'000, 'c'), "");
  auto out = round_trip(c);
  BOOST_TEST_REQUIRE(out.size() == 1u);
  BOOST_TEST(out[0].cause == std::string(4096, 'c'));
}

BOOST_AUTO_TEST_CASE(anything_else_is_refused_with_an_error) {
  const std::string name = "svc.fn";
  detail::span_chunk c;
  c.add(record(&name), "t", "i", "", "");
  detail::span_ref one{&c, 0};
  std::string room;
  const std::string good{detail::encode_span_batch("n", &one, 1, room)};
  // Every truncation of a good batch, garbage, other msgpack shapes.
  for (std::size_t n = 0; n < good.size(); ++n)
    BOOST_CHECK_THROW((void)decode_spans(std::string_view{good}.substr(0, n)), std::runtime_error);
  BOOST_CHECK_THROW((void)decode_spans("not msgpack at all"), std::runtime_error);
  auto packed = [](const auto& v) {
    msgpack::sbuffer b;
    msgpack::pack(b, v);
    return std::string{b.data(), b.size()};
  };
  BOOST_CHECK_THROW((void)decode_spans(packed(std::vector<int>{1, 2, 3})), std::runtime_error);
  BOOST_CHECK_THROW((void)decode_spans(packed(std::map<std::string, int>{{"trace_id", 1}})),
                    std::runtime_error);
  // One span written by hand (see span_codec.cpp), and each field made
  // wrong in an otherwise good batch.
  auto batch = [](std::string spans) {
    msgpack::sbuffer b;
    msgpack::packer<msgpack::sbuffer> pk{b};
    pk.pack_array(4);
    pk.pack(std::string{"n"});
    pk.pack_array(1);
    pk.pack(std::string{"svc.fn"});
    pk.pack_array(1);
    pk.pack(std::string{"t"});
    pk.pack_bin(static_cast<std::uint32_t>(spans.size()));
    pk.pack_bin_body(spans.data(), static_cast<std::uint32_t>(spans.size()));
    return std::string{b.data(), b.size()};
  };
  struct fields {
    unsigned head = 0;                       // status ok, no parent, no texts
    std::string name = std::string(1, '\0'), topic = std::string(1, '\0'); // varint indexes
    std::string parent;                      // 8 bytes when head says so
    std::string delivery = "\x01";          // varint
    std::string texts;                       // when head says so
  };
  auto span_bytes = [](const fields& f) {
    std::string out(1, static_cast<char>(f.head));
    out += f.name + f.topic + std::string(24, '\x01') + f.parent;
    out += std::string{"\x02"} + "\x05" + f.delivery; // start +1, duration 5
    out += std::string{"\x01i"};                       // msg id "i"
    return out + f.texts;
  };
  BOOST_TEST(decode_spans(batch(span_bytes({}))).size() == 1u); // the shape is right
  BOOST_TEST(decode_spans(batch(span_bytes({}) + span_bytes({}))).size() == 2u);
  BOOST_TEST(decode_spans(batch("")).empty()); // a probe: no spans
  auto refused = [&](const std::string& spans) {
    BOOST_CHECK_THROW((void)decode_spans(batch(spans)), std::runtime_error);
  };
  auto whole = span_bytes({});
  for (std::size_t n = 1; n < whole.size(); ++n) refused(whole.substr(0, n)); // a span cut short
  auto with = [&](auto change) {
    fields f;
    change(f);
    return span_bytes(f);
  };
  refused(with([](fields& f) { f.head = 9; }));         // a status past the last (circuit_open, 8)
  refused(with([](fields& f) { f.name = "\x01"; }));    // past the name table
  refused(with([](fields& f) { f.topic = "\x01"; }));   // past the topic table
  refused(with([](fields& f) { f.delivery = "\x80\x80\x80\x80\x10"; })); // past 32 bits
  refused(with([](fields& f) { f.delivery = std::string(10, '\xff') + "\x01"; })); // past 64
  refused(with([](fields& f) { // a parent flagged, of 0
    f.head = 0x40;
    f.parent = std::string(8, '\0');
  }));
  refused(with([](fields& f) { // texts flagged, none there
    f.head = 0x80;
    f.texts = std::string("\x00\x00", 2);
  }));
  refused(with([](fields& f) { // a length past the bytes
    f.head = 0x80;
    f.texts = "\xff\xff\x03";
  }));
  auto cause = with([](fields& f) {
    f.head = 0x80;
    f.texts = std::string("\x01" "c" "\x00", 3);
  });
  BOOST_TEST(decode_spans(batch(cause)).front().cause == "c");
}

BOOST_AUTO_TEST_CASE(hex_ids_are_sixteen_lowercase_digits_both_ways) {
  std::string out;
  detail::append_hex(out, 0x00000000000000a1ull);
  BOOST_TEST(out == "00000000000000a1");
  std::uint64_t v = 7;
  BOOST_TEST(detail::parse_hex("00000000000000a1", v));
  BOOST_TEST(v == 0xa1u);
  BOOST_TEST(!detail::parse_hex("00000000000000A1", v)); // W3C: lowercase
  BOOST_TEST(!detail::parse_hex("0000000000000a1", v));
  BOOST_TEST(!detail::parse_hex("000000000000000g", v));
  BOOST_TEST(v == 0xa1u); // untouched by a failed parse
}

BOOST_AUTO_TEST_SUITE_END()
