// SPDX-License-Identifier: Apache-2.0
// Request/reply through a real broker: a reply from a responder, and
// "no responders" at once (not a timeout) when nobody serves the topic.
#include <map>

#include "harness.hpp"

using namespace plexus::itest;

BOOST_AUTO_TEST_SUITE(request_reply)

BOOST_AUTO_TEST_CASE(a_request_nobody_serves_fails_with_no_responders_before_its_timeout) {
  broker_process broker;
  auto c = broker.connect();
  const auto timeout = 5s;
  auto start = std::chrono::steady_clock::now();
  auto r = c->request("svc.nobody.home", "ping", timeout);
  auto took = std::chrono::steady_clock::now() - start;
  BOOST_TEST(r.code == 100u, "code " << r.code << " (" << plexus::status_text(r.code) << ")");
  BOOST_TEST(r.payload.empty());
  BOOST_TEST(std::chrono::duration_cast<milliseconds>(took).count() < 1000,
             "took " << std::chrono::duration_cast<milliseconds>(took).count() << " ms");
}

BOOST_AUTO_TEST_CASE(a_request_gets_the_reply_its_responder_publishes) {
  broker_process broker;
  // State the handlers use, declared before the clients that call them.
  guarded<std::vector<std::string>> served;
  guarded<std::map<std::string, std::string>> replies;
  auto responder = broker.connect("responder");
  plexus::client* rc = responder.get();
  responder->subscribe("svc.echo", [&served, rc](const plexus::message_view& v) {
    served.update([&](auto& s) { s.emplace_back(v.payload); });
    rc->publish(v.reply_to, "echo:" + std::string{v.payload});
  });
  sync_with_broker(*responder);

  auto c = broker.connect("requester");
  for (int i = 0; i < 20; ++i) {
    auto r = c->request("svc.echo", "hello " + std::to_string(i), 5s);
    BOOST_REQUIRE_MESSAGE(r.code == 0, "request " << i << ": " << plexus::status_text(r.code) << " " << r.text);
    BOOST_TEST(r.payload == "echo:hello " + std::to_string(i));
  }
  BOOST_TEST(served.read([](auto& s) { return s.size(); }) == 20u);

  // Concurrent requests are matched to their own replies.
  for (int i = 0; i < 50; ++i) {
    auto q = "q" + std::to_string(i);
    c->request_async("svc.echo", q, 5s, [&replies, q](plexus::reply r) {
      replies.update([&](auto& m) { m[q] = r.code == 0 ? r.payload : "error " + std::to_string(r.code); });
    });
  }
  BOOST_REQUIRE(replies.wait_until([](auto& m) { return m.size() == 50; }));
  for (auto& [q, answer] : replies.snapshot()) BOOST_TEST(answer == "echo:" + q);
}

BOOST_AUTO_TEST_SUITE_END()
