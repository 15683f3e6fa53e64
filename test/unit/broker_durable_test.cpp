// SPDX-License-Identifier: Apache-2.0
// Durable queue groups in the core (issue #19): what is kept, when a
// publisher's confirm may say 0 (only once the store has the message),
// limits, redelivery, dead letters, max_age, and recovery from what the
// store gives back.
#include <boost/test/unit_test.hpp>

#include <set>
#include <stdexcept>

#include "broker_harness.hpp"

using namespace plexus;
using namespace plexus::test;
using broker::store_op;
using wire::op;

namespace {

broker::config with_durables(std::vector<broker::durable_config> d) {
  broker::config c;
  c.durables = std::move(d);
  return c;
}

broker::durable_config shipping(std::uint64_t max_msgs = 1000, std::uint64_t max_bytes = 1 << 20) {
  return {"shipping", {"orders.>"}, max_msgs, max_bytes, std::chrono::milliseconds{0}, {}};
}

std::vector<seen> of_kind(const std::vector<seen>& all, op k) {
  std::vector<seen> out;
  for (auto& s : all)
    if (s.kind == k) out.push_back(s);
  return out;
}

std::vector<store_op> ops_of(broker::core& b, store_op::kind k) {
  std::vector<store_op> out;
  for (auto& o : b.take_store_ops())
    if (o.op == k) out.push_back(std::move(o));
  return out;
}

const broker::durable_stats& stats_of(const std::vector<broker::durable_stats>& all,
                                      std::string_view name) {
  for (auto& d : all)
    if (d.name == name) return d;
  throw std::logic_error("no such durable");
}

} // namespace

BOOST_AUTO_TEST_SUITE(broker_durable)

BOOST_AUTO_TEST_CASE(a_confirm_says_0_only_once_the_store_has_the_message) {
  harness t{with_durables({shipping()})};
  auto pub = t.connect("pub");
  t.publish(pub, "orders.created", "order 1", {.msg_id = "m1", .confirm = true});
  BOOST_TEST(of_kind(t.take(pub), op::confirm).empty()); // nobody consumes; not on disk yet
  auto ops = t.core().take_store_ops();
  BOOST_TEST_REQUIRE(ops.size() == 1u);
  BOOST_TEST((ops[0].op == store_op::kind::append));
  BOOST_TEST(ops[0].group == "shipping");
  auto id = ops[0].id;
  t.core().stored(id - 1, t.now()); // an earlier append is durable: not this one
  t.flush();
  BOOST_TEST(of_kind(t.take(pub), op::confirm).empty());
  t.core().stored(id, t.now());
  t.flush();
  auto confirms = of_kind(t.take(pub), op::confirm);
  BOOST_TEST_REQUIRE(confirms.size() == 1u);
  BOOST_TEST(confirms[0].code == 0u);
  BOOST_TEST(confirms[0].msg_id == "m1");
}

BOOST_AUTO_TEST_CASE(messages_published_before_any_member_wait_and_are_delivered_in_order) {
  harness t{with_durables({shipping()})};
  auto pub = t.connect("pub");
  for (int i = 0; i < 3; ++i) t.publish(pub, "orders.created", "order " + std::to_string(i));
  auto appends = ops_of(t.core(), store_op::kind::append);
  BOOST_TEST_REQUIRE(appends.size() == 3u);
  BOOST_TEST(appends[1].id == appends[0].id + 1); // the store's ids, one by one
  BOOST_TEST(stats_of(t.core().durables(), "shipping").waiting == 3u);

  auto worker = t.connect("worker");
  t.subscribe(worker, 1, "orders.>", {.queue = "shipping", .acked = true, .credit = 10});
  auto msgs = t.take_msgs(worker);
  BOOST_TEST_REQUIRE(msgs.size() == 3u);
  for (int i = 0; i < 3; ++i) BOOST_TEST(msgs[static_cast<std::size_t>(i)].payload == "order " + std::to_string(i));
  BOOST_TEST(t.core().take_store_ops().empty()); // delivered is not acked
  t.simple(worker, op::ack, 1, msgs[1].seq);
  auto acks = ops_of(t.core(), store_op::kind::ack);
  BOOST_TEST_REQUIRE(acks.size() == 1u);
  BOOST_TEST(acks[0].id == appends[1].id);
  auto d = stats_of(t.core().durables(), "shipping");
  BOOST_TEST(d.messages == 2u);
  BOOST_TEST(d.acked == 1u);
}

BOOST_AUTO_TEST_CASE(what_a_member_held_waits_for_the_next_one_when_it_leaves) {
  harness t{with_durables({shipping()})};
  auto pub = t.connect("pub");
  auto w1 = t.connect("w1");
  t.subscribe(w1, 1, "orders.>", {.queue = "shipping", .acked = true, .credit = 5});
  t.publish(pub, "orders.created", "x");
  BOOST_TEST(t.take_msgs(w1).size() == 1u);
  (void)t.core().take_store_ops();
  t.core().disconnected(w1, t.now()); // no member left: a plain group would drop it
  t.flush();
  BOOST_TEST(t.core().take_store_ops().empty()); // not acked in the store
  BOOST_TEST(stats_of(t.core().durables(), "shipping").waiting == 1u);
  auto w2 = t.connect("w2");
  t.subscribe(w2, 1, "orders.>", {.queue = "shipping", .acked = true, .credit = 5});
  auto got = t.take_msgs(w2);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].payload == "x");
  BOOST_TEST(got[0].delivery == 2u);
}

BOOST_AUTO_TEST_CASE(a_member_that_does_not_ack_settles_on_delivery) {
  harness t{with_durables({shipping()})};
  auto pub = t.connect("pub");
  auto w = t.connect("w");
  t.subscribe(w, 1, "orders.>", {.queue = "shipping", .credit = 5});
  t.publish(pub, "orders.created", "x");
  BOOST_TEST(t.take_msgs(w).size() == 1u);
  auto ops = t.core().take_store_ops();
  BOOST_TEST_REQUIRE(ops.size() == 2u); // appended, then acked, in that order
  BOOST_TEST((ops[0].op == store_op::kind::append));
  BOOST_TEST((ops[1].op == store_op::kind::ack));
  BOOST_TEST(ops[1].id == ops[0].id);
}

BOOST_AUTO_TEST_CASE(at_a_limit_a_publish_is_refused_with_full_and_not_kept) {
  harness t{with_durables({shipping(2, 1 << 20)})};
  auto pub = t.connect("pub");
  for (int i = 0; i < 3; ++i)
    t.publish(pub, "orders.created", "x", {.msg_id = "m" + std::to_string(i), .confirm = true});
  auto appends = ops_of(t.core(), store_op::kind::append);
  BOOST_TEST_REQUIRE(appends.size() == 2u);
  t.core().stored(appends.back().id, t.now());
  t.flush();
  auto confirms = of_kind(t.take(pub), op::confirm);
  BOOST_TEST_REQUIRE(confirms.size() == 3u);
  // The refused one is answered at once, the kept ones once stored.
  BOOST_TEST(confirms[0].msg_id == "m2");
  BOOST_TEST(confirms[0].code == code_of(status::full));
  BOOST_TEST(confirms[1].code == 0u);
  BOOST_TEST(confirms[2].code == 0u);
  BOOST_TEST(stats_of(t.core().durables(), "shipping").full == 1u);

  // Room again once a member acks one; the refused msg id may be sent again.
  auto w = t.connect("w");
  t.subscribe(w, 1, "orders.>", {.queue = "shipping", .acked = true, .credit = 1});
  auto msgs = t.take_msgs(w);
  BOOST_TEST_REQUIRE(msgs.size() == 1u);
  t.simple(w, op::ack, 1, msgs[0].seq);
  (void)t.core().take_store_ops();
  t.publish(pub, "orders.created", "x", {.msg_id = "m2", .confirm = true});
  BOOST_TEST(ops_of(t.core(), store_op::kind::append).size() == 1u);
}

BOOST_AUTO_TEST_CASE(max_bytes_counts_payloads) {
  harness t{with_durables({shipping(1000, 10)})};
  auto pub = t.connect("pub");
  t.publish(pub, "orders.a", std::string(6, 'x'), {.msg_id = "a", .confirm = true});
  t.publish(pub, "orders.b", std::string(6, 'x'), {.msg_id = "b", .confirm = true});
  auto confirms = of_kind(t.take(pub), op::confirm);
  BOOST_TEST_REQUIRE(confirms.size() == 1u);
  BOOST_TEST(confirms[0].msg_id == "b");
  BOOST_TEST(confirms[0].code == code_of(status::full));
}

BOOST_AUTO_TEST_CASE(a_message_matching_two_subjects_is_kept_once) {
  harness t{with_durables({{"q", {"a.>", "a.b", "*.b"}, 1000, 1 << 20, {}, {}}})};
  auto pub = t.connect("pub");
  t.publish(pub, "a.b", "x");
  BOOST_TEST(ops_of(t.core(), store_op::kind::append).size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_nack_with_delay_and_an_ack_timeout_redeliver_from_the_durable) {
  harness t{with_durables({shipping()})};
  auto pub = t.connect("pub");
  auto w = t.connect("w");
  t.subscribe(w, 1, "orders.>", {.queue = "shipping", .acked = true, .credit = 5, .ack_wait_ms = 1000});
  t.publish(pub, "orders.created", "x");
  auto m = t.take_msgs(w);
  BOOST_TEST_REQUIRE(m.size() == 1u);
  t.nack(w, 1, m[0].seq, wire::nack_action::delay, 200);
  t.advance(300ms);
  m = t.take_msgs(w);
  BOOST_TEST_REQUIRE(m.size() == 1u);
  BOOST_TEST(m[0].delivery == 2u);
  t.advance(1100ms); // not acked in time
  m = t.take_msgs(w);
  BOOST_TEST_REQUIRE(m.size() == 1u);
  BOOST_TEST(m[0].delivery == 3u);
  (void)ops_of(t.core(), store_op::kind::append);
  t.simple(w, op::ack, 1, m[0].seq);
  BOOST_TEST(ops_of(t.core(), store_op::kind::ack).size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_dead_letter_is_kept_by_a_durable_on_dlq_before_the_original_is_acked) {
  harness t{with_durables({shipping(), {"shipping-dlq", {"$DLQ.orders.>"}, 1000, 1 << 20, {}, {}}})};
  auto pub = t.connect("pub");
  auto w = t.connect("w");
  t.subscribe(w, 1, "orders.>", {.queue = "shipping", .acked = true, .credit = 5});
  t.publish(pub, "orders.created", "bad order");
  auto original = t.core().take_store_ops();
  BOOST_TEST_REQUIRE(original.size() == 1u);
  auto m = t.take_msgs(w);
  BOOST_TEST_REQUIRE(m.size() == 1u);
  t.nack(w, 1, m[0].seq, wire::nack_action::dead_letter, 0, "cannot parse");
  auto ops = t.core().take_store_ops();
  BOOST_TEST_REQUIRE(ops.size() == 2u);
  BOOST_TEST((ops[0].op == store_op::kind::append)); // first the dead letter is kept ...
  BOOST_TEST(ops[0].group == "shipping-dlq");
  BOOST_TEST((ops[1].op == store_op::kind::ack)); // ... then the original goes
  BOOST_TEST(ops[1].id == original[0].id);
  auto reader = t.connect("reader");
  t.subscribe(reader, 1, "$DLQ.>", {.queue = "shipping-dlq", .acked = true, .credit = 5});
  auto dl = t.take_msgs(reader);
  BOOST_TEST_REQUIRE(dl.size() == 1u);
  BOOST_TEST(dl[0].topic == "$DLQ.orders.created");
  BOOST_TEST(dl[0].payload == "bad order");
  BOOST_TEST(dl[0].header("plexus-dlq-reason") == "cannot parse");
}

BOOST_AUTO_TEST_CASE(what_waits_past_max_age_is_dropped_and_acked) {
  harness t{with_durables({{"q", {"t.>"}, 1000, 1 << 20, std::chrono::milliseconds{5000}, {}}})};
  auto pub = t.connect("pub");
  t.publish(pub, "t.1", "old");
  t.advance(3000ms);
  auto pub2 = t.connect("pub2"); // the first one went silent: heartbeats dropped it
  t.publish(pub2, "t.2", "young");
  auto appends = ops_of(t.core(), store_op::kind::append);
  BOOST_TEST_REQUIRE(appends.size() == 2u);
  t.advance(3000ms);
  auto acks = ops_of(t.core(), store_op::kind::ack);
  BOOST_TEST_REQUIRE(acks.size() == 1u);
  BOOST_TEST(acks[0].id == appends[0].id);
  auto d = stats_of(t.core().durables(), "q");
  BOOST_TEST(d.aged_out == 1u);
  BOOST_TEST(d.messages == 1u);
}

BOOST_AUTO_TEST_CASE(what_the_store_gives_back_is_delivered_and_its_msg_id_remembered) {
  std::vector<store_op> kept;
  {
    harness before{with_durables({shipping()})};
    auto pub = before.connect("pub", 7);
    before.publish(pub, "orders.created", "order 1", {.msg_id = "m1", .confirm = true});
    before.publish(pub, "orders.created", "order 2", {.msg_id = "m2", .confirm = true});
    kept = before.core().take_store_ops();
  }
  BOOST_TEST_REQUIRE(kept.size() == 2u);
  harness after{with_durables({shipping()})};
  std::string why;
  for (auto& o : kept)
    BOOST_TEST_REQUIRE(after.core().restore(o.id, o.group, o.body, after.now(), why), why);
  after.core().store_ids_from(kept.back().id + 5); // the store's next id
  BOOST_TEST(stats_of(after.core().durables(), "shipping").restored == 2u);

  // The publisher, back with the same lineage, re-sends m2: 0 at once, not kept twice.
  auto pub = after.connect("pub", 7);
  after.publish(pub, "orders.created", "order 2", {.msg_id = "m2", .confirm = true});
  auto confirms = of_kind(after.take(pub), op::confirm);
  BOOST_TEST_REQUIRE(confirms.size() == 1u);
  BOOST_TEST(confirms[0].code == 0u);
  BOOST_TEST(after.core().take_store_ops().empty());
  after.publish(pub, "orders.created", "order 3", {.msg_id = "m3"});
  auto appends = ops_of(after.core(), store_op::kind::append);
  BOOST_TEST_REQUIRE(appends.size() == 1u);
  BOOST_TEST(appends[0].id == kept.back().id + 5);

  auto w = after.connect("w");
  after.subscribe(w, 1, "orders.>", {.queue = "shipping", .acked = true, .credit = 10});
  auto msgs = after.take_msgs(w);
  BOOST_TEST_REQUIRE(msgs.size() == 3u);
  BOOST_TEST(msgs[0].msg_id == "m1");
  BOOST_TEST(msgs[0].payload == "order 1");
  BOOST_TEST(msgs[1].msg_id == "m2");
  BOOST_TEST(msgs[2].payload == "order 3");
  after.simple(w, op::ack, 1, msgs[0].seq);
  auto acks = ops_of(after.core(), store_op::kind::ack);
  BOOST_TEST_REQUIRE(acks.size() == 1u);
  BOOST_TEST(acks[0].id == kept[0].id); // acked under the id the store knows it by
}

BOOST_AUTO_TEST_CASE(a_restore_remembers_only_ids_still_in_their_window_and_no_more_than_the_window_holds) {
  auto cfg = with_durables({shipping()});
  cfg.dedup_entries = 2;
  cfg.dedup_window = std::chrono::milliseconds{60000};
  std::vector<store_op> kept;
  harness t{cfg};
  auto pub = t.connect("pub", 7);
  t.publish(pub, "orders.created", "old", {.msg_id = "m0"});
  t.advance(std::chrono::milliseconds{61000}); // m0's window ends before the restart
  pub = t.connect("pub", 7);                   // (the silent one timed out meanwhile)
  for (auto id : {"m1", "m2", "m3"}) t.publish(pub, "orders.created", id, {.msg_id = id});
  kept = t.core().take_store_ops();
  BOOST_TEST_REQUIRE(kept.size() == 4u);
  harness after{cfg};
  after.advance(std::chrono::milliseconds{61000}); // the same wall clock as `t`
  after.core().restoring(kept.size());
  std::string why;
  for (auto& o : kept) BOOST_TEST_REQUIRE(after.core().restore(o.id, o.group, o.body, after.now(), why), why);
  // Remembered: the newest two (the window holds 2); m1 would have been
  // evicted (counted), m0 was past its window.
  BOOST_TEST(after.core().current().dedup_entries == 2u);
  BOOST_TEST(after.core().stats().dedup_evictions == 1u);
  auto again = after.connect("pub", 7);
  // (Newest first: what is kept again is remembered, and evicts with a window of 2.)
  for (auto id : {"m3", "m2", "m1", "m0"}) after.publish(again, "orders.created", id, {.msg_id = id});
  auto appends = ops_of(after.core(), store_op::kind::append);
  BOOST_TEST_REQUIRE(appends.size() == 2u); // m1 and m0 kept again: duplicates, never losses
  BOOST_TEST(after.core().stats().duplicates == 2u);
}

BOOST_AUTO_TEST_CASE(max_age_counts_from_the_first_keeping_across_a_restart) {
  auto aging = broker::durable_config{"q", {"t.>"}, 1000, 1 << 20, std::chrono::milliseconds{5000}, {}};
  std::vector<store_op> kept;
  broker::time_point later{};
  {
    harness before{with_durables({aging})};
    auto pub = before.connect("pub");
    before.publish(pub, "t.1", "x");
    kept = before.core().take_store_ops();
    later = before.now() + std::chrono::milliseconds{4000};
  }
  BOOST_TEST_REQUIRE(kept.size() == 1u);
  harness after{with_durables({aging})};
  after.advance(std::chrono::milliseconds{4000}); // the restart took 4 s of its 5
  BOOST_TEST_REQUIRE(after.now() >= later);
  std::string why;
  BOOST_TEST_REQUIRE(after.core().restore(kept[0].id, kept[0].group, kept[0].body, after.now(), why), why);
  after.advance(std::chrono::milliseconds{2000});
  auto acks = ops_of(after.core(), store_op::kind::ack);
  BOOST_TEST_REQUIRE(acks.size() == 1u); // aged out 5 s after it was first kept, not 5 s after the restart
  BOOST_TEST(acks[0].id == kept[0].id);
}

BOOST_AUTO_TEST_CASE(restore_refuses_an_unknown_queue_and_a_body_that_does_not_decode) {
  harness t{with_durables({shipping()})};
  std::string why;
  BOOST_TEST(!t.core().restore(1, "gone", "whatever", t.now(), why));
  BOOST_TEST(why.find("gone") != std::string::npos);
  BOOST_TEST(!t.core().restore(2, "shipping", "xy", t.now(), why));
  BOOST_TEST(!why.empty());
  BOOST_TEST(!t.core().restore(3, "shipping", std::string(13, '\x07'), t.now(), why));
  BOOST_TEST(why.find("unknown format") != std::string::npos, why);
  std::string long_header(13, '\0');
  long_header[0] = 1;
  long_header[9] = '\x7f'; // a header of 127 bytes in a 13-byte body
  BOOST_TEST(!t.core().restore(4, "shipping", long_header, t.now(), why));
  BOOST_TEST(stats_of(t.core().durables(), "shipping").messages == 0u);
}

BOOST_AUTO_TEST_CASE(a_durable_homed_on_another_broker_is_not_kept_here_and_its_members_are_sent_there) {
  auto d = shipping();
  d.home = "b7"; // this broker is "broker"
  harness t{with_durables({d})};
  auto pub = t.connect("pub");
  t.publish(pub, "orders.created", "x");
  BOOST_TEST(t.core().take_store_ops().empty());
  BOOST_TEST(t.core().durables().empty());
  auto w = t.connect("w");
  t.subscribe(w, 1, "orders.>", {.queue = "shipping", .acked = true, .credit = 5});
  auto errs = of_kind(t.take(w), op::err);
  BOOST_TEST_REQUIRE(errs.size() == 1u);
  BOOST_TEST(errs[0].code == code_of(status::forbidden));
  BOOST_TEST(errs[0].text.find("kept by broker 'b7'") != std::string::npos, errs[0].text);
}

BOOST_AUTO_TEST_CASE(bad_durable_configurations_are_refused_with_the_reason) {
  auto refused = [](std::vector<broker::durable_config> d, std::string_view says) {
    try {
      broker::core b{with_durables(std::move(d))};
    } catch (const std::invalid_argument& e) {
      BOOST_TEST(std::string{e.what()}.find(says) != std::string::npos, e.what());
      return;
    }
    BOOST_ERROR("accepted");
  };
  refused({shipping(), shipping()}, "declared twice");
  refused({{"q", {}, 10, 10, {}, {}}}, "no subjects");
  refused({{"q", {"a..b"}, 10, 10, {}, {}}}, "subject 'a..b'");
  refused({{"", {"a"}, 10, 10, {}, {}}}, "name");
  refused({{"q", {"a"}, 0, 10, {}, {}}}, "max_msgs");
}


// ------------------------------------------------ declared at run time

namespace {

broker::config with_store() {
  broker::config c;
  c.store = true;
  return c;
}

// A client that asks the broker: its inbox is sid 900.
conn_id admin_of(harness& t) {
  auto c = t.connect("admin");
  t.subscribe(c, 900, "_INBOX.admin");
  return c;
}

// A $SYS.queue.add / rm request from `c` (an admin_of).
void ask(harness& t, conn_id c, std::string_view topic,
         std::vector<std::pair<std::string_view, std::string_view>> fields) {
  std::string packed;
  wire::header h;
  h.kind = op::pub;
  h.topic = topic;
  h.reply_to = "_INBOX.admin";
  h.headers = wire::pack_string_map(fields, packed);
  t.send(c, h);
}

// The answer `c` got: its payload, or "failed: <cause>".
std::vector<std::string> answers(harness& t, conn_id c) {
  std::vector<std::string> out;
  for (auto& m : of_kind(t.take(c), op::msg)) {
    if (m.sid != 900) continue;
    auto cause = m.header("plexus-cause");
    out.push_back(cause.empty() ? m.payload : "failed: " + cause);
  }
  return out;
}

} // namespace

BOOST_AUTO_TEST_CASE(a_queue_declared_at_run_time_answers_created_once_on_disk_and_keeps_what_matches) {
  harness t{with_store()};
  auto admin = admin_of(t);
  ask(t, admin, "$SYS.queue.add", {{"name", "billing"}, {"subjects", "invoices.> refunds.*"}, {"max_msgs", "2"}});
  BOOST_TEST(answers(t, admin).empty()); // not on disk yet
  auto ops = t.core().take_store_ops();
  BOOST_TEST_REQUIRE(ops.size() == 1u);
  BOOST_TEST(ops[0].group == "$queues");
  t.core().stored(ops[0].id, t.now());
  t.flush();
  BOOST_TEST((answers(t, admin) == std::vector<std::string>{"created"}));
  auto d = stats_of(t.core().durables(), "billing"); // a copy: durables() is a temporary
  BOOST_TEST(d.declared);
  BOOST_TEST(d.cfg.max_msgs == 2u);
  BOOST_TEST(d.cfg.max_bytes == broker::durable_config{}.max_bytes); // left out: the default

  auto pub = t.connect("pub");
  t.publish(pub, "refunds.r1", "r1", {.msg_id = "m1", .confirm = true});
  t.publish(pub, "invoices.eu.i1", "i1", {.msg_id = "m2", .confirm = true});
  t.publish(pub, "invoices.eu.i2", "i2", {.msg_id = "m3", .confirm = true}); // past max_msgs
  auto appends = ops_of(t.core(), store_op::kind::append);
  BOOST_TEST(appends.size() == 2u);
  auto confirms = of_kind(t.take(pub), op::confirm);
  BOOST_TEST_REQUIRE(confirms.size() == 1u);
  BOOST_TEST(confirms[0].code == code_of(status::full));

  // The same again: "exists"; other subjects: refused.
  ask(t, admin, "$SYS.queue.add", {{"name", "billing"}, {"subjects", "refunds.* invoices.>"}});
  BOOST_TEST((answers(t, admin) == std::vector<std::string>{"exists"}));
  ask(t, admin, "$SYS.queue.add", {{"name", "billing"}, {"subjects", "invoices.>"}});
  auto refused = answers(t, admin);
  BOOST_TEST_REQUIRE(refused.size() == 1u);
  BOOST_TEST(refused[0].find("exists with other subjects") != std::string::npos, refused[0]);
}

BOOST_AUTO_TEST_CASE(bad_declarations_are_answered_with_the_reason_and_change_nothing) {
  auto refused = [](harness& t, conn_id c, std::vector<std::pair<std::string_view, std::string_view>> f,
                    std::string_view says, std::string_view topic = "$SYS.queue.add") {
    ask(t, c, topic, std::move(f));
    auto a = answers(t, c);
    BOOST_TEST_REQUIRE(a.size() == 1u);
    BOOST_TEST(a[0].starts_with("failed: "), a[0]);
    BOOST_TEST(a[0].find(says) != std::string::npos, a[0] << " should say " << says);
  };
  {
    harness t; // no store
    auto c = admin_of(t);
    refused(t, c, {{"name", "q"}, {"subjects", "a.>"}}, "keeps no store (start it with --store DIR)");
  }
  harness t{[] {
    auto c = with_store();
    c.durables = {shipping()};
    return c;
  }()};
  auto c = admin_of(t);
  refused(t, c, {{"subjects", "a.>"}}, "needs a `name`");
  refused(t, c, {{"name", "q"}}, "no subjects");
  refused(t, c, {{"name", "q"}, {"subjects", "a..b"}}, "subject 'a..b'");
  refused(t, c, {{"name", "$q"}, {"subjects", "a.>"}}, "names starting with '$'");
  refused(t, c, {{"name", "q"}, {"subjects", "a.>"}, {"max_msgs", "ten"}}, "max_msgs 'ten' is not a whole number");
  refused(t, c, {{"name", "q"}, {"subjects", "a.>"}, {"max_bytes", "0"}}, "above 0");
  refused(t, c, {{"name", "shipping"}}, "declared in the broker's configuration", "$SYS.queue.rm");
  refused(t, c, {{"name", "nope"}}, "no durable queue 'nope'", "$SYS.queue.rm");
  // A plain queue group of that name with members: refused, not doubled.
  auto w = t.connect("w");
  t.subscribe(w, 1, "a.>", {.queue = "q", .acked = true, .credit = 5});
  refused(t, c, {{"name", "q"}, {"subjects", "a.>"}}, "has members subscribed as a plain queue group");
  BOOST_TEST(t.core().take_store_ops().empty());
  BOOST_TEST(t.core().durables().size() == 1u);
  // A request without a reply-to is an error to the sender, counted.
  wire::header h;
  h.kind = op::pub;
  h.topic = "$SYS.queue.add";
  t.send(c, h);
  auto errs = of_kind(t.take(c), op::err);
  BOOST_TEST_REQUIRE(errs.size() == 1u);
  BOOST_TEST(errs[0].text.find("needs a reply-to") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(removing_a_declared_queue_waits_for_its_members_and_drops_what_it_keeps) {
  harness t{with_store()};
  auto admin = admin_of(t);
  ask(t, admin, "$SYS.queue.add", {{"name", "billing"}, {"subjects", "invoices.>"}});
  auto decl = t.core().take_store_ops().at(0).id;
  t.core().stored(decl, t.now());
  auto pub = t.connect("pub");
  for (auto id : {"m1", "m2", "m3"}) t.publish(pub, "invoices.x", id, {.msg_id = id});
  auto appends = ops_of(t.core(), store_op::kind::append);
  BOOST_TEST_REQUIRE(appends.size() == 3u);
  auto w = t.connect("w");
  t.subscribe(w, 1, "invoices.>", {.queue = "billing", .acked = true, .credit = 1});
  auto held = of_kind(t.take(w), op::msg);
  BOOST_TEST_REQUIRE(held.size() == 1u);
  (void)answers(t, admin);
  ask(t, admin, "$SYS.queue.rm", {{"name", "billing"}});
  auto a = answers(t, admin);
  BOOST_TEST_REQUIRE(a.size() == 1u);
  BOOST_TEST(a[0].find("1 member(s) subscribed") != std::string::npos, a[0]);
  t.simple(w, op::unsub, 1); // leaves holding m1: back in the queue
  ask(t, admin, "$SYS.queue.rm", {{"name", "billing"}});
  BOOST_TEST((answers(t, admin) == std::vector<std::string>{"removed, 3 message(s) dropped"}));
  // Every message and the declaration acked in the store; nothing kept.
  std::set<std::uint64_t> acked;
  for (auto& o : ops_of(t.core(), store_op::kind::ack)) acked.insert(o.id);
  BOOST_TEST(acked == (std::set<std::uint64_t>{decl, appends[0].id, appends[1].id, appends[2].id}));
  BOOST_TEST(t.core().durables().empty());
  t.publish(pub, "invoices.x", "late", {.msg_id = "m4", .confirm = true});
  auto confirms = of_kind(t.take(pub), op::confirm);
  BOOST_TEST_REQUIRE(confirms.size() == 1u);
  BOOST_TEST(confirms[0].code == code_of(status::no_interest));
}

BOOST_AUTO_TEST_CASE(a_declaration_the_store_gives_back_comes_before_its_messages) {
  std::vector<store_op> kept;
  {
    harness t{with_store()};
    auto admin = admin_of(t);
    ask(t, admin, "$SYS.queue.add", {{"name", "billing"}, {"subjects", "invoices.>"}, {"max_age_ms", "60000"}});
    auto pub = t.connect("pub");
    t.publish(pub, "invoices.x", "i1", {.msg_id = "m1"});
    kept = t.core().take_store_ops();
    BOOST_TEST_REQUIRE(kept.size() == 2u);
  }
  harness t{with_store()};
  std::string why;
  for (auto& o : kept) BOOST_TEST_REQUIRE(t.core().restore(o.id, o.group, o.body, t.now(), why), why);
  auto d = stats_of(t.core().durables(), "billing"); // a copy: durables() is a temporary
  BOOST_TEST(d.declared);
  BOOST_TEST(d.cfg.max_age == std::chrono::milliseconds{60000});
  BOOST_TEST(d.messages == 1u);
  // The configuration declaring it now wins: the record goes.
  auto cfg = with_store();
  cfg.durables = {{"billing", {"invoices.>"}, 10, 1000, {}, {}}};
  harness configured{cfg};
  BOOST_TEST(configured.core().restore(kept[0].id, kept[0].group, kept[0].body, configured.now(), why));
  auto acks = ops_of(configured.core(), store_op::kind::ack);
  BOOST_TEST_REQUIRE(acks.size() == 1u);
  BOOST_TEST(acks[0].id == kept[0].id);
  BOOST_TEST(!stats_of(configured.core().durables(), "billing").declared);
  // A record that is no declaration is refused, with the reason.
  BOOST_TEST(!t.core().restore(99, "$queues", "garbage", t.now(), why));
  BOOST_TEST(why.find("does not decode") != std::string::npos, why);
}

BOOST_AUTO_TEST_SUITE_END()
