// SPDX-License-Identifier: Apache-2.0
// MSG runs (PROTOCOL.md "MSG runs"): which queued outputs go as one run,
// and the batch entry a run is.
#include <boost/test/unit_test.hpp>

#include <map>
#include <string>
#include <vector>

#include <msgpack.hpp>

#include "broker_harness.hpp"

using namespace plexus;
using namespace plexus::test;

namespace {

constexpr auto any_bytes = static_cast<std::size_t>(-1);

// A client whose HELLO says `flags`; returns WELCOME's flags in `welcome`.
conn_id hello(harness& t, std::uint32_t flags, std::uint32_t& welcome) {
  auto c = t.new_conn();
  const auto node = "reader-" + std::to_string(c); // h views it
  wire::header h;
  h.kind = wire::op::hello;
  h.node = node;
  h.flags = flags;
  t.receive_only(c, h);
  t.core().flush([&](conn_id to, std::span<const broker::output> outs) {
    for (auto& o : outs)
      if (to == c && o.kind == wire::op::welcome) welcome = o.header().flags;
    return outs.size();
  });
  return c;
}

// What the core queued for `c`, taken as the shell would take it.
std::vector<broker::output> queued_for(harness& t, conn_id c) {
  std::vector<broker::output> got;
  t.core().flush([&](conn_id to, std::span<const broker::output> outs) {
    if (to == c) got.assign(outs.begin(), outs.end());
    return outs.size();
  });
  return got;
}

// A harness with a reader that asked for runs and a publisher (a fixture:
// the cases use its members by name).
struct rig {
  harness t;
  std::uint32_t welcome = 0;
  conn_id c = hello(t, wire::flag_msg_runs, welcome);
  conn_id pub = t.connect("publisher");
};

std::span<const broker::output> from(const std::vector<broker::output>& v, std::size_t i) {
  return std::span<const broker::output>{v}.subspan(i);
}

// A header map's fields by key.
std::map<unsigned, msgpack::object> fields_of(const msgpack::object& map) {
  std::map<unsigned, msgpack::object> f;
  for (std::uint32_t i = 0; i < map.via.map.size; ++i)
    f[map.via.map.ptr[i].key.as<unsigned>()] = map.via.map.ptr[i].val;
  return f;
}

} // namespace

BOOST_AUTO_TEST_SUITE(msg_runs)

BOOST_AUTO_TEST_CASE(welcome_offers_runs_and_only_a_hello_that_asks_gets_them) {
  harness t;
  std::uint32_t welcome = 0;
  auto asks = hello(t, wire::flag_msg_runs, welcome);
  BOOST_TEST((welcome & wire::flag_msg_runs) != 0u);
  auto plain = hello(t, wire::flag_flow_control, welcome);
  BOOST_TEST(t.core().takes_msg_runs(asks));
  BOOST_TEST(!t.core().takes_msg_runs(plain));
  BOOST_TEST(!t.core().takes_msg_runs(9999)); // no such connection
}

BOOST_FIXTURE_TEST_CASE(a_run_is_consecutive_msgs_of_one_subscription_alike_but_seq_and_payload, rig) {
  t.subscribe(c, 1, "jobs.*", {.acked = true});
  for (int i = 0; i < 4; ++i) t.publish_only(pub, "jobs.a", "a" + std::to_string(i));
  t.publish_only(pub, "jobs.b", "b0"); // another topic: its own run
  t.publish_only(pub, "jobs.a", "a4");
  t.publish_only(pub, "jobs.a", "a5");
  auto outs = queued_for(t, c);
  BOOST_TEST_REQUIRE(outs.size() == 7u);
  BOOST_TEST(broker::msg_run_length(outs, 256, any_bytes) == 4u);
  BOOST_TEST(broker::msg_run_length(from(outs, 4), 256, any_bytes) == 1u);
  BOOST_TEST(broker::msg_run_length(from(outs, 5), 256, any_bytes) == 2u);
  BOOST_TEST(broker::msg_run_length(from(outs, 6), 256, any_bytes) == 1u); // the last alone
  // At most `max`; payloads within `bytes`, each with 5 bytes of bin header.
  BOOST_TEST(broker::msg_run_length(outs, 3, any_bytes) == 3u);
  BOOST_TEST(broker::msg_run_length(outs, 256, 2 * (2 + 5)) == 2u);
  BOOST_TEST(broker::msg_run_length(outs, 256, 0) == 1u); // the first is always taken
}

BOOST_FIXTURE_TEST_CASE(subscriptions_deliveries_and_seq_gaps_end_a_run, rig) {
  t.subscribe(c, 1, "jobs.a", {.queue = "g", .acked = true, .credit = 100});
  t.subscribe(c, 2, "jobs.a", {.acked = true}); // a second sid on the same topic
  t.publish_only(pub, "jobs.a", "x");
  t.publish_only(pub, "jobs.a", "y");
  auto outs = queued_for(t, c);
  // Each message goes to sid 1 and sid 2 in turn: seqs 1..4 alternate sids.
  BOOST_TEST_REQUIRE(outs.size() == 4u);
  BOOST_TEST(outs[0].sid != outs[1].sid);
  BOOST_TEST(broker::msg_run_length(outs, 256, any_bytes) == 1u);
  // One sid's deliveries with a gap in their seqs (the other sid's between).
  std::vector<broker::output> gap{outs[0], outs[2]};
  BOOST_TEST(gap[1].sid == gap[0].sid);
  BOOST_TEST(gap[1].seq == gap[0].seq + 2);
  BOOST_TEST(broker::msg_run_length(gap, 256, any_bytes) == 1u);
  // A redelivery (delivery 2) does not join first deliveries.
  wire::header nack;
  nack.kind = wire::op::nack;
  nack.sid = outs[0].sid;
  nack.seq = outs[0].seq;
  t.receive_only(c, nack);
  auto again = queued_for(t, c);
  BOOST_TEST_REQUIRE(again.size() == 1u);
  BOOST_TEST(again[0].delivery == 2u);
  t.publish_only(pub, "jobs.a", "z");
  auto mixed = queued_for(t, c);
  std::vector<broker::output> both{again[0]};
  for (auto& o : mixed)
    if (o.sid == again[0].sid) both.push_back(o);
  BOOST_TEST_REQUIRE(both.size() == 2u);
  BOOST_TEST(both[1].seq == both[0].seq + 1); // consecutive: only the delivery differs
  BOOST_TEST(broker::msg_run_length(both, 256, any_bytes) == 1u);
}

BOOST_FIXTURE_TEST_CASE(at_most_once_deliveries_without_seqs_make_runs_too, rig) {
  t.subscribe(c, 3, "metrics.>");
  for (int i = 0; i < 5; ++i) t.publish_only(pub, "metrics.cpu", std::to_string(i));
  auto outs = queued_for(t, c);
  BOOST_TEST_REQUIRE(outs.size() == 5u);
  BOOST_TEST(outs[0].seq == 0u);
  BOOST_TEST(broker::msg_run_length(outs, 256, any_bytes) == 5u);
}

BOOST_FIXTURE_TEST_CASE(a_run_is_one_batch_entry_its_header_then_its_payloads, rig) {
  t.subscribe(c, 7, "jobs.*", {.acked = true});
  t.publish(pub, "jobs.a", "warm-up"); // seq 1, drained: the run starts at 2
  (void)queued_for(t, c);
  for (const auto& p : std::vector<std::string>{"p0", "p1", std::string(300, 'z')})
    t.publish_only(pub, "jobs.a", p);
  auto outs = queued_for(t, c);
  BOOST_TEST_REQUIRE(broker::msg_run_length(outs, 256, any_bytes) == 3u);

  std::string frame;
  wire::batch_writer w{frame};
  w.begin();
  broker::add_msg_run(w, outs);
  w.finish();
  BOOST_TEST(w.count() == 1u);
  auto handle = msgpack::unpack(frame.data(), frame.size());
  const auto& top = handle.get();
  BOOST_TEST_REQUIRE(top.type == msgpack::type::ARRAY);
  BOOST_TEST_REQUIRE(top.via.array.size == 2u); // one entry: header, payloads
  auto f = fields_of(top.via.array.ptr[0]);
  BOOST_TEST(f.at(0).as<unsigned>() == wire::protocol_version);
  BOOST_TEST(f.at(1).as<unsigned>() == wire::msg_run_op);
  BOOST_TEST(f.at(2).as<unsigned>() == 7u);
  BOOST_TEST(f.at(3).as<std::string>() == "jobs.a");
  BOOST_TEST(f.at(11).as<std::uint64_t>() == 2u); // the first seq
  BOOST_TEST(f.at(12).as<unsigned>() == 1u);      // delivery
  BOOST_TEST(f.at(25).as<unsigned>() == 3u);      // count
  const auto& payloads = top.via.array.ptr[1];
  BOOST_TEST_REQUIRE(payloads.type == msgpack::type::ARRAY);
  BOOST_TEST_REQUIRE(payloads.via.array.size == 3u);
  for (std::uint32_t i = 0; i < 3; ++i) BOOST_TEST(payloads.via.array.ptr[i].type == msgpack::type::BIN);
  BOOST_TEST(payloads.via.array.ptr[2].as<std::string>() == std::string(300, 'z'));

  // Only a client that asked reads runs: the broker's own reader refuses one.
  std::vector<wire::entry> entries;
  auto e = wire::decode_batch(frame, {}, entries);
  BOOST_TEST((e.code == wire::errc::unknown_op));
}

// The entries of a finished batch frame: (op, MSGs it stands for).
std::vector<std::pair<unsigned, unsigned>> entries_of(const std::string& frame) {
  auto handle = msgpack::unpack(frame.data(), frame.size());
  const auto& top = handle.get();
  std::vector<std::pair<unsigned, unsigned>> out;
  for (std::uint32_t i = 0; i + 1 < top.via.array.size; i += 2) {
    auto f = fields_of(top.via.array.ptr[i]);
    auto op = f.at(1).as<unsigned>();
    out.emplace_back(op, op == wire::msg_run_op ? f.at(25).as<unsigned>() : 1u);
  }
  return out;
}

std::string frame_of(std::span<const broker::output> outs, std::size_t max,
                     std::size_t max_bytes, bool runs, std::size_t& taken) {
  std::string frame;
  wire::batch_writer w{frame};
  w.begin();
  taken = broker::fill_batch(w, outs, max, max_bytes, runs);
  w.finish();
  return frame;
}

BOOST_FIXTURE_TEST_CASE(a_frame_holds_runs_and_a_run_cut_by_its_bytes_goes_on_next, rig) {
  t.subscribe(c, 1, "jobs.*", {.acked = true});
  for (int i = 0; i < 60; ++i) t.publish_only(pub, "jobs.a", std::string(10, 'a'));
  t.publish_only(pub, "jobs.b", "other topic");
  auto outs = queued_for(t, c);
  BOOST_TEST_REQUIRE(outs.size() == 61u);
  std::size_t taken = 0;
  // Room for everything: one run of 60, then the MSG of the other topic.
  auto all = frame_of(outs, 256, 1 << 20, true, taken);
  BOOST_TEST(taken == 61u);
  BOOST_TEST((entries_of(all) == std::vector<std::pair<unsigned, unsigned>>{
                {wire::msg_run_op, 60}, {6, 1}}));
  // Room for about 35: the run is cut and the frame ends with it (its
  // payloads were counted with 5 bytes of header, they took 2: there is
  // room left, but not for a stub of the same run); the next frame takes
  // the rest of the run as one run.
  auto first = frame_of(outs, 256, 600, true, taken);
  BOOST_TEST_REQUIRE(taken > 1u);
  BOOST_TEST_REQUIRE(taken < 60u);
  BOOST_TEST((entries_of(first) ==
              std::vector<std::pair<unsigned, unsigned>>{{wire::msg_run_op, unsigned(taken)}}));
  std::size_t more = 0;
  auto second = frame_of(from(outs, taken), 256, 1 << 20, true, more);
  BOOST_TEST(more == 61u - taken);
  BOOST_TEST(entries_of(second).front().first == wire::msg_run_op);
  BOOST_TEST(entries_of(second).front().second == 60u - taken);
  // At most `max` outputs, runs or not.
  auto capped = frame_of(outs, 3, 1 << 20, true, taken);
  BOOST_TEST(taken == 3u);
  BOOST_TEST((entries_of(capped) ==
              std::vector<std::pair<unsigned, unsigned>>{{wire::msg_run_op, 3}}));
  // A connection that did not ask gets every MSG as its own entry.
  auto plain = frame_of(outs, 256, 1 << 20, false, taken);
  BOOST_TEST(taken == 61u);
  BOOST_TEST(entries_of(plain).size() == 61u);
  BOOST_TEST(entries_of(plain).front().first == 6u);
}

BOOST_AUTO_TEST_SUITE_END()
