// SPDX-License-Identifier: Apache-2.0
// Dead letters: a message its consumer keeps refusing goes to $DLQ.<topic>
// after max_deliver deliveries; the rest of the stream is not held up.
#include <map>

#include "harness.hpp"

using namespace plexus::itest;

BOOST_AUTO_TEST_SUITE(dead_letter)

BOOST_AUTO_TEST_CASE(a_poison_message_reaches_the_dead_letter_topic) {
  broker_process broker;
  // State the handlers use, declared before the clients that call them.
  guarded<std::vector<received>> worked;            // every delivery the worker saw
  collector dlq;
  guarded<std::map<std::string, std::uint32_t>> confirms; // payload -> CONFIRM code

  // The worker: an acked queue-group member that NACKs (requeue) "poison"
  // every time and acks everything else, giving one credit back per message.
  auto worker = broker.connect("worker");
  plexus::client* w = worker.get();
  plexus::subscribe_options o;
  o.queue = "workers";
  o.acked = true;
  o.credit = 16;
  o.max_deliver = 3;
  worker->subscribe("work.items", [&worked, w](const plexus::message_view& v) {
    worked.update([&](auto& l) { l.push_back(copy_of(v)); });
    if (v.payload == "poison") w->nack(v.sid, v.seq, plexus::wire::nack_action::requeue, 0, "cannot parse");
    else w->ack(v.sid, v.seq);
    w->grant_credit(v.sid, 1);
  }, o);
  sync_with_broker(*worker);

  auto pub = broker.connect("publisher");
  pub->subscribe("$DLQ.>", dlq.handler());
  sync_with_broker(*pub);

  const std::vector<std::string> payloads = {"m1", "m2", "poison", "m3", "m4", "m5"};
  for (auto& p : payloads)
    pub->publish_confirmed("work.items", p, [&confirms, p](std::uint32_t c) {
      confirms.update([&](auto& m) { m[p] = c; });
    });
  BOOST_REQUIRE(confirms.wait_until([&](auto& m) { return m.size() == payloads.size(); }));
  // The dead letter went out before the poison's CONFIRM, both to this
  // client: once the CONFIRM is here, so is the dead letter.
  BOOST_REQUIRE(dlq.wait_count(1));
  sync_with_broker(*pub);
  sync_with_broker(*worker);

  auto codes = confirms.snapshot();
  for (auto& p : payloads) BOOST_TEST(codes[p] == (p == "poison" ? 102u : 0u), "CONFIRM of " << p);

  auto dead = dlq.messages();
  BOOST_REQUIRE_EQUAL(dead.size(), 1u);
  BOOST_TEST(dead[0].topic == "$DLQ.work.items");
  BOOST_TEST(dead[0].payload == "poison");
  BOOST_TEST(dead[0].headers["plexus-dlq-deliveries"] == "3");
  BOOST_TEST(dead[0].headers["plexus-dlq-topic"] == "work.items");
  BOOST_TEST(dead[0].headers["plexus-dlq-reason"] == "cannot parse");

  std::map<std::string, std::vector<std::uint32_t>> deliveries;
  for (auto& m : worked.snapshot()) deliveries[m.payload].push_back(m.delivery);
  BOOST_TEST(deliveries["poison"] == (std::vector<std::uint32_t>{1, 2, 3}),
             boost::test_tools::per_element());
  for (auto& p : payloads)
    if (p != "poison")
      BOOST_TEST(deliveries[p] == std::vector<std::uint32_t>{1}, p << " was delivered once");
}

BOOST_AUTO_TEST_SUITE_END()
