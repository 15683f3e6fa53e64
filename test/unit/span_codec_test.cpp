// SPDX-License-Identifier: Apache-2.0
// The `$SYS.trace` payload: what a node's span sink writes is what
// decode_spans reads back, field for field, and anything else is refused.
#include <boost/test/unit_test.hpp>

#include <msgpack.hpp>

#include "span_record.hpp"

using namespace plexus;

namespace {

detail::span_record record(const std::string* name, std::string_view topic, std::string_view id) {
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
  r.texts.assign(topic, id);
  r.cause = "crash in shipping.create-label: boom";
  r.callee = "shipping.create-label";
  return r;
}

std::vector<span> round_trip(const std::vector<const detail::span_record*>& in) {
  std::string bytes;
  detail::encode_span_batch("node-1", in.data(), in.size(), bytes);
  return decode_spans(bytes);
}

} // namespace

BOOST_AUTO_TEST_SUITE(span_codec)

BOOST_AUTO_TEST_CASE(a_span_reads_back_as_it_was_recorded) {
  const std::string validate = "shipping.validate-address", label = "shipping.create-label";
  auto a = record(&validate, "orders.shipped", std::string{"\x00\x01id", 4});
  auto b = record(&label, "address.validated", "m-2");
  b.request = true;
  b.cold_start = false;
  b.parent_id = 0; // a root
  b.status = span_status::ok;
  b.cause.clear();
  b.callee.clear();
  auto c = record(&validate, "orders.shipped", "m-3"); // the name again: one table entry
  auto out = round_trip({&a, &b, &c});
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
  BOOST_TEST(out[2].function == "validate-address");
  BOOST_TEST(out[2].msg_id == "m-3");
}

BOOST_AUTO_TEST_CASE(long_texts_leave_the_record_and_read_back_whole) {
  const std::string name = "svc.fn";
  const std::string topic(300, 't'), id(64, 'i');
  auto r = record(&name, topic, id);
  BOOST_TEST(r.texts.topic() == topic);
  BOOST_TEST(r.texts.msg_id() == id);
  auto copy = r; // the heap texts travel with it
  r.texts.assign("short", "x");
  BOOST_TEST(copy.texts.topic() == topic);
  BOOST_TEST(r.texts.topic() == "short");
  BOOST_TEST(r.texts.msg_id() == "x");
  auto out = round_trip({&copy});
  BOOST_TEST_REQUIRE(out.size() == 1u);
  BOOST_TEST(out[0].topic == topic);
  BOOST_TEST(out[0].msg_id == id);
}

BOOST_AUTO_TEST_CASE(a_cause_longer_than_a_reader_takes_is_cut_not_lost) {
  const std::string name = "svc.fn";
  auto r = record(&name, "t", "i");
  r.cause = std::string(100'000, 'c');
  auto out = round_trip({&r});
  BOOST_TEST_REQUIRE(out.size() == 1u);
  BOOST_TEST(out[0].cause == std::string(4096, 'c'));
}

BOOST_AUTO_TEST_CASE(anything_else_is_refused_with_an_error) {
  const std::string name = "svc.fn";
  auto r = record(&name, "t", "i");
  std::string good;
  const detail::span_record* one = &r;
  detail::encode_span_batch("n", &one, 1, good);
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
  // A name index past the table, a status past the last.
  msgpack::sbuffer b;
  msgpack::packer<msgpack::sbuffer> pk{b};
  pk.pack_array(3);
  pk.pack(std::string{"n"});
  pk.pack_array(0);
  pk.pack_array(1);
  pk.pack_array(14);
  for (int i = 0; i < 5; ++i) pk.pack(1);
  pk.pack(7); // name index: the table is empty
  pk.pack(std::string{"t"});
  pk.pack_bin(0);
  for (int i = 0; i < 4; ++i) pk.pack(1);
  pk.pack(std::string{});
  pk.pack(std::string{});
  BOOST_CHECK_THROW((void)decode_spans({b.data(), b.size()}), std::runtime_error);
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
