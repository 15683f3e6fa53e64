// SPDX-License-Identifier: Apache-2.0
#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

#include "plexus/wire.hpp"
#include "print.hpp"

using namespace plexus::wire;

namespace {

header pub(std::string_view topic) {
  header h;
  h.kind = op::pub;
  h.topic = topic;
  return h;
}

header ack(std::uint64_t seq) {
  header h;
  h.kind = op::ack;
  h.sid = 1;
  h.seq = seq;
  return h;
}

std::string batch_of(std::size_t n, std::string_view payload = "payload") {
  std::string out;
  batch_writer w{out};
  w.begin();
  for (std::size_t i = 0; i < n; ++i) w.add(pub("orders.shipped"), payload);
  w.finish();
  return out;
}

} // namespace

BOOST_AUTO_TEST_SUITE(batch)

BOOST_AUTO_TEST_CASE(a_mixed_batch_round_trips_in_order) {
  std::string frame;
  batch_writer w{frame};
  w.begin();
  w.add(pub("orders.a"), "first");
  w.add(ack(41), {});
  w.add(pub("orders.b"), "");
  w.add(pub("orders.c"), std::string(300, 'z'));
  w.finish();
  BOOST_TEST(w.count() == 4u);
  BOOST_TEST(w.bytes() == frame.size());
  BOOST_TEST(is_batch_frame(frame));

  std::vector<entry> out;
  auto e = decode_batch(frame, {}, out);
  BOOST_TEST_REQUIRE(e.ok(), to_string(e));
  BOOST_TEST_REQUIRE(out.size() == 4u);
  BOOST_TEST(out[0].h.topic == "orders.a");
  BOOST_TEST(out[0].payload == "first");
  BOOST_TEST(out[1].h.kind == op::ack);
  BOOST_TEST(out[1].h.seq == 41u);
  BOOST_TEST(out[1].payload.empty());
  BOOST_TEST(out[2].payload.empty());
  BOOST_TEST(out[3].payload == std::string(300, 'z'));
  // Payloads are views into the frame, not copies.
  BOOST_TEST(out[3].payload.data() > frame.data());
  BOOST_TEST(out[3].payload.data() + 300 <= frame.data() + frame.size());
}

BOOST_AUTO_TEST_CASE(a_msg_added_from_shared_fields_is_the_msg_added_from_its_header) {
  msg_fields shared;
  shared.topic = "orders.shipped";
  shared.reply_to = "_INBOX.n1.7";
  std::string room(encoded_size(shared), '\0');
  auto encoded = encode_msg_fields(shared, room.data());
  std::string fast, generic;
  batch_writer a{fast}, b{generic};
  a.begin();
  b.begin();
  for (std::uint64_t seq = 1; seq <= 3; ++seq) {
    a.add_msg(9, encoded, seq, 1, "payload");
    header h;
    h.kind = op::msg;
    h.sid = 9;
    h.topic = "orders.shipped";
    h.reply_to = "_INBOX.n1.7";
    h.seq = seq;
    h.delivery = 1;
    b.add(h, "payload");
  }
  a.finish();
  b.finish();
  BOOST_TEST(fast == generic);
}

BOOST_AUTO_TEST_CASE(a_header_frame_is_not_a_batch_frame) {
  std::string h;
  encode_header(pub("a.b"), h);
  BOOST_TEST(!is_batch_frame(h));
  BOOST_TEST(!is_batch_frame(""));
  std::vector<entry> out;
  BOOST_TEST(decode_batch(h, {}, out).code == errc::bad_batch);
}

BOOST_AUTO_TEST_CASE(one_malformed_entry_rejects_the_whole_batch) {
  std::string frame;
  batch_writer w{frame};
  w.begin();
  w.add(pub("orders.a"), "ok");
  w.add(pub("orders.b"), "ok");
  w.add(pub("orders..bad"), "bad topic");
  w.add(pub("orders.d"), "ok");
  w.finish();
  std::vector<entry> out(5); // pre-filled: must come back empty
  auto e = decode_batch(frame, {}, out);
  BOOST_TEST(e.code == errc::bad_topic);
  BOOST_TEST(e.index == 2u);
  BOOST_TEST(out.empty());
  BOOST_TEST(to_string(e) == "batch entry 2: topic: bad topic (empty token)");
}

BOOST_AUTO_TEST_CASE(an_error_in_the_first_entry_still_names_the_entry) {
  std::string frame;
  batch_writer w{frame};
  w.begin();
  w.add(pub("orders.*"), "wildcard in a PUB");
  w.finish();
  std::vector<entry> out;
  auto e = decode_batch(frame, {}, out);
  BOOST_TEST(e.in_batch);
  BOOST_TEST(to_string(e) == "batch entry 0: topic: bad topic (wildcard in a concrete topic)");
}

BOOST_AUTO_TEST_CASE(every_truncation_of_a_batch_is_rejected) {
  auto frame = batch_of(3);
  std::vector<entry> out;
  for (std::size_t cut = 0; cut < frame.size(); ++cut) {
    BOOST_TEST_CONTEXT("cut at " << cut) {
      auto e = decode_batch(std::string_view{frame}.substr(0, cut), {}, out);
      BOOST_TEST(!e.ok());
      BOOST_TEST(out.empty());
    }
  }
  BOOST_TEST(decode_batch(frame + "x", {}, out).code == errc::trailing_bytes);
}

BOOST_AUTO_TEST_CASE(batch_count_and_byte_limits_are_enforced) {
  limits lim;
  lim.max_batch_count = 8;
  lim.max_batch_bytes = 4096;
  std::vector<entry> out;
  BOOST_TEST(decode_batch(batch_of(8), lim, out).ok());
  BOOST_TEST(out.size() == 8u);
  BOOST_TEST(decode_batch(batch_of(9), lim, out).code == errc::batch_too_many);
  auto big = batch_of(2, std::string(3000, 'x'));
  BOOST_TEST(decode_batch(big, lim, out).code == errc::batch_too_large);
  lim.max_payload_bytes = 100;
  lim.max_batch_bytes = 1 << 20;
  auto e = decode_batch(big, lim, out);
  BOOST_TEST(e.code == errc::payload_too_large);
  BOOST_TEST(e.where == field::payload);
}

BOOST_AUTO_TEST_CASE(lying_counts_and_wrong_payload_types_are_rejected) {
  using namespace std::string_literals;
  std::vector<entry> out;
  // array32 claiming 4 Gi elements over a 5-byte frame.
  BOOST_TEST(decode_batch("\xdd\xff\xff\xff\xfe"s, {}, out).code == errc::batch_too_many);
  BOOST_TEST(decode_batch("\xdd\xff\xff\xff\xff"s, {}, out).code == errc::bad_batch);
  limits lim;
  lim.max_batch_count = 1u << 30;
  BOOST_TEST(decode_batch("\xdd\x7f\xff\xff\xfe"s, lim, out).code == errc::truncated);
  // Odd element count: a header without its payload slot.
  std::string odd = "\x91"s;
  encode_header(pub("a.b"), odd);
  BOOST_TEST(decode_batch(odd, {}, out).code == errc::bad_batch);
  BOOST_TEST(decode_batch("\x90"s, {}, out).code == errc::bad_batch); // empty
  // A PUB whose payload slot is nil, and an ACK whose slot holds bytes.
  std::string nil_payload = "\x92"s;
  encode_header(pub("a.b"), nil_payload);
  nil_payload += "\xc0"s;
  BOOST_TEST(decode_batch(nil_payload, {}, out).code == errc::missing_payload);
  std::string ack_payload = "\x92"s;
  encode_header(ack(1), ack_payload);
  ack_payload += "\xc4\x01x"s;
  BOOST_TEST(decode_batch(ack_payload, {}, out).code == errc::unexpected_payload);
}

BOOST_AUTO_TEST_CASE(decoding_reuses_the_output_vector) {
  std::vector<entry> out;
  BOOST_REQUIRE(decode_batch(batch_of(64), {}, out).ok());
  auto* data = out.data();
  BOOST_REQUIRE(decode_batch(batch_of(32), {}, out).ok());
  BOOST_TEST(out.size() == 32u);
  BOOST_TEST(out.data() == data); // no reallocation for a smaller batch
}

BOOST_AUTO_TEST_SUITE_END()
