// SPDX-License-Identifier: Apache-2.0
// Per-identity permissions (issue #18): the rule engine's pure functions,
// then the core enforcing them on fake identities, as the shell names them
// with identify(). PROTOCOL.md, "Authentication".
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <map>

#include "broker_harness.hpp"
#include "permissions.hpp"

using namespace plexus;
using namespace plexus::test;
using broker::user_permissions;

namespace {

constexpr std::uint32_t denied = code_of(status::permission_denied);

user_permissions perms(std::vector<std::string> pub_allow, std::vector<std::string> pub_deny,
                       std::vector<std::string> sub_allow, std::vector<std::string> sub_deny) {
  user_permissions p;
  p.publish.allow = std::move(pub_allow);
  p.publish.deny = std::move(pub_deny);
  p.subscribe.allow = std::move(sub_allow);
  p.subscribe.deny = std::move(sub_deny);
  return p;
}

// "admin" may do anything, inboxes and $SYS included; "alice" works on
// orders; "bob" serves svc.> requests and publishes nothing else.
broker::config auth_config() {
  broker::config cfg;
  broker::auth_policy pol;
  pol.users["admin"] = perms({">", "$SYS.>", "_INBOX.>"}, {}, {">", "$SYS.>", "_INBOX.>"}, {});
  pol.users["alice"] = perms({"orders.>", "svc.>"}, {"orders.secret.>"}, {"orders.>"},
                             {"orders.secret.>"});
  auto bob = perms({"status.bob"}, {}, {"svc.>"}, {});
  bob.queue_groups = {"workers", "pool.*"};
  pol.users["bob"] = bob;
  auto carol = bob; // like bob, but may not answer requests
  carol.allow_responses = false;
  pol.users["carol"] = carol;
  cfg.auth = std::move(pol);
  return cfg;
}

std::vector<seen> errs(std::vector<seen> got) {
  std::vector<seen> out;
  for (auto& s : got)
    if (s.kind == wire::op::err) out.push_back(std::move(s));
  return out;
}

// The one ERR 114 a denied op gets; its text.
std::string expect_denied(harness& h, conn_id c) {
  auto e = errs(h.take(c));
  BOOST_TEST_REQUIRE(e.size() == 1u);
  BOOST_TEST(e[0].code == denied);
  return e[0].text;
}

void expect_quiet(harness& h, conn_id c) {
  auto e = errs(h.take(c));
  BOOST_TEST(e.empty(), "unexpected ERR " << (e.empty() ? 0 : e[0].code) << ": "
                                          << (e.empty() ? "" : e[0].text));
}

void ping(harness& h, conn_id c) {
  wire::header p;
  p.kind = wire::op::ping;
  h.send(c, p);
}

} // namespace

BOOST_AUTO_TEST_SUITE(broker_auth)

// ---------------------------------------------------------------- the rule engine

BOOST_AUTO_TEST_CASE(a_pattern_covers_what_it_matches_and_no_more) {
  using broker::pattern_covers;
  BOOST_TEST(pattern_covers("orders.>", "orders.*.shipped"));
  BOOST_TEST(pattern_covers("orders.>", "orders.eu.>"));
  BOOST_TEST(pattern_covers("orders.*", "orders.eu"));
  BOOST_TEST(pattern_covers("orders.*", "orders.*"));
  BOOST_TEST(pattern_covers("*.*", "a.b"));
  BOOST_TEST(!pattern_covers("orders.*", "orders.>"));
  BOOST_TEST(!pattern_covers("orders.eu", "orders.*"));
  BOOST_TEST(!pattern_covers("orders.>", "orders"));
  BOOST_TEST(!pattern_covers("orders.*", "orders.eu.x"));
  BOOST_TEST(!pattern_covers("orders.*.x", "orders.*"));
  // A wildcard first token never matches a `$` topic.
  BOOST_TEST(!pattern_covers(">", "$SYS.x"));
  BOOST_TEST(!pattern_covers("*.>", "$SYS.>"));
  BOOST_TEST(pattern_covers("$SYS.>", "$SYS.trace.*"));
}

BOOST_AUTO_TEST_CASE(patterns_overlap_when_one_topic_matches_both) {
  using broker::patterns_overlap;
  BOOST_TEST(patterns_overlap("orders.*.shipped", "orders.eu.>"));
  BOOST_TEST(patterns_overlap("a.*", "*.b"));
  BOOST_TEST(patterns_overlap(">", "a.b.c"));
  BOOST_TEST(patterns_overlap("$SYS.>", "$SYS.trace.*"));
  BOOST_TEST(!patterns_overlap("orders.eu", "orders.us"));
  BOOST_TEST(!patterns_overlap("a.>", "a"));
  BOOST_TEST(!patterns_overlap("a.b.c", "a.*"));
  BOOST_TEST(!patterns_overlap(">", "$SYS.x"));
  BOOST_TEST(!patterns_overlap("$DLQ.>", "*.x"));
}

BOOST_AUTO_TEST_CASE(publish_rules_allow_deny_and_reserved_namespaces) {
  using broker::may_publish;
  user_permissions any; // allow empty: all but the reserved namespaces
  BOOST_TEST(may_publish(any, "orders.eu"));
  BOOST_TEST(!may_publish(any, "$SYS.trace.n1"));
  BOOST_TEST(!may_publish(any, "$DLQ.orders"));
  BOOST_TEST(!may_publish(any, "_INBOX.n1.7"));
  auto p = perms({"orders.>", ">"}, {"orders.secret.>"}, {}, {});
  BOOST_TEST(may_publish(p, "orders.eu"));
  BOOST_TEST(may_publish(p, "billing.x")); // `>`
  BOOST_TEST(!may_publish(p, "orders.secret.key")); // deny wins over both allows
  BOOST_TEST(!may_publish(p, "$SYS.trace.x")); // `>` grants no reserved namespace
  BOOST_TEST(!may_publish(p, "_INBOX.n1.7"));  // nor other connections' inboxes
  auto only = perms({"orders.*"}, {}, {}, {});
  BOOST_TEST(may_publish(only, "orders.eu"));
  BOOST_TEST(!may_publish(only, "orders.eu.de"));
  BOOST_TEST(!may_publish(only, "billing"));
  auto sys = perms({"$SYS.trace.>", "_INBOX.>"}, {}, {}, {});
  BOOST_TEST(may_publish(sys, "$SYS.trace.n1"));
  BOOST_TEST(!may_publish(sys, "$SYS.node.n1.up"));
  BOOST_TEST(may_publish(sys, "_INBOX.n1.7"));
}

BOOST_AUTO_TEST_CASE(responding_needs_allow_responses_and_no_deny) {
  using broker::may_respond;
  user_permissions p;
  BOOST_TEST(may_respond(p, "_INBOX.n1.7"));
  p.allow_responses = false;
  BOOST_TEST(!may_respond(p, "_INBOX.n1.7"));
  auto d = perms({}, {"_INBOX.n9.>"}, {}, {});
  BOOST_TEST(may_respond(d, "_INBOX.n1.7"));
  BOOST_TEST(!may_respond(d, "_INBOX.n9.7"));
}

BOOST_AUTO_TEST_CASE(subscribe_rules_cover_and_deny_wins_conservatively) {
  using broker::may_subscribe;
  auto p = perms({}, {}, {"orders.>", "stock.*"}, {"orders.eu.*"});
  BOOST_TEST(may_subscribe(p, "orders.us.shipped"));
  BOOST_TEST(may_subscribe(p, "orders.*.>") == false); // overlaps orders.eu.x
  BOOST_TEST(!may_subscribe(p, "orders.*.x"));  // could match orders.eu.x: deny wins
  BOOST_TEST(may_subscribe(p, "orders.us.*"));
  BOOST_TEST(!may_subscribe(p, "orders.eu.shipped"));
  BOOST_TEST(may_subscribe(p, "stock.*"));
  BOOST_TEST(!may_subscribe(p, "stock.>")); // stock.* does not cover stock.>
  BOOST_TEST(!may_subscribe(p, "billing.x"));
  BOOST_TEST(!may_subscribe(p, ">"));
  user_permissions any;
  BOOST_TEST(may_subscribe(any, "anything.at.all"));
  BOOST_TEST(may_subscribe(any, "*"));
  BOOST_TEST(!may_subscribe(any, "$SYS.>"));
  BOOST_TEST(!may_subscribe(any, "$DLQ.orders"));
}

BOOST_AUTO_TEST_CASE(reserved_namespaces_need_an_allow_that_names_them) {
  using broker::may_subscribe;
  auto wide = perms({}, {}, {">", "*.>"}, {});
  BOOST_TEST(!may_subscribe(wide, "$SYS.trace.x"));
  BOOST_TEST(!may_subscribe(wide, "$SYS.>"));
  BOOST_TEST(!may_subscribe(wide, "$DLQ.>"));
  auto sys = perms({}, {}, {"$SYS.trace.>"}, {});
  BOOST_TEST(may_subscribe(sys, "$SYS.trace.*"));
  BOOST_TEST(!may_subscribe(sys, "$SYS.>"));
  BOOST_TEST(!may_subscribe(sys, "$DLQ.x"));
  // A deny of everything does not reach $SYS (no topic matches both).
  auto most = perms({}, {}, {"$SYS.>"}, {">"});
  BOOST_TEST(may_subscribe(most, "$SYS.trace.x"));
  BOOST_TEST(!may_subscribe(most, "orders.x"));
}

BOOST_AUTO_TEST_CASE(inbox_subscriptions_are_the_connections_own_only) {
  using broker::may_subscribe;
  auto p = perms({}, {}, {"orders.>"}, {});
  BOOST_TEST(may_subscribe(p, "_INBOX.n1.>", "n1"));   // its own, allow list aside
  BOOST_TEST(may_subscribe(p, "_INBOX.n1.7", "n1"));
  BOOST_TEST(!may_subscribe(p, "_INBOX.n2.>", "n1"));
  BOOST_TEST(!may_subscribe(p, "_INBOX.*.>", "n1"));
  BOOST_TEST(!may_subscribe(p, "_INBOX.>", "n1"));
  BOOST_TEST(!may_subscribe(p, "_INBOX.n1.>", ""));    // no node: no own inbox
  user_permissions any;
  BOOST_TEST(!may_subscribe(any, ">", "n1"));          // would read everyone's replies
  BOOST_TEST(!may_subscribe(any, "*.*.>", "n1"));
  BOOST_TEST(may_subscribe(any, "*.n1.>", "n1"));      // its inbox and ordinary topics
  BOOST_TEST(!may_subscribe(any, "*.n2.>", "n1"));
  auto all = perms({}, {}, {">", "_INBOX.>"}, {});
  BOOST_TEST(may_subscribe(all, ">", "n1"));
  BOOST_TEST(may_subscribe(all, "_INBOX.n2.>", "n1"));
  auto no_own = perms({}, {}, {}, {"_INBOX.n1.secret"});
  BOOST_TEST(!may_subscribe(no_own, "_INBOX.n1.>", "n1")); // deny wins here too
}

BOOST_AUTO_TEST_CASE(queue_groups_by_name_or_pattern) {
  using broker::may_join;
  user_permissions any;
  BOOST_TEST(may_join(any, "whatever"));
  user_permissions p;
  p.queue_groups = {"workers", "pool.*"};
  BOOST_TEST(may_join(p, "workers"));
  BOOST_TEST(may_join(p, "pool.a"));
  BOOST_TEST(!may_join(p, "pool.a.b"));
  BOOST_TEST(!may_join(p, "others"));
}

// ---------------------------------------------------------------- the core

BOOST_AUTO_TEST_CASE(without_auth_nothing_is_checked) {
  harness h; // config::auth is nullopt
  auto a = h.connect("n1");
  auto b = h.connect("n1"); // a node id anyone may say
  h.core().identify(99, "nobody", h.now());
  h.subscribe(b, 1, "_INBOX.n2.>");
  h.subscribe(b, 2, "$SYS.trace.>");
  h.subscribe(b, 3, ">", {.queue = "any"});
  h.publish(a, "_INBOX.n2.1", "x");
  h.publish(a, "$SYS.trace.n1", "y");
  expect_quiet(h, a);
  auto got = h.take(b);
  BOOST_TEST(errs(got).empty());
  BOOST_TEST(std::count_if(got.begin(), got.end(),
                           [](const seen& s) { return s.kind == wire::op::msg; })
             == 2);
  BOOST_TEST(h.core().stats().permission_denied == 0u);
  BOOST_TEST(h.core().denied_by_user().empty());
  // identify() without auth only records the name.
  wire::header hello;
  hello.kind = wire::op::hello;
  hello.node = "n3";
  h.send(99, hello);
  h.subscribe(99, 1, "orders.>");
  expect_quiet(h, 99);
  bool listed = false;
  for (auto& cs : h.core().connections())
    if (cs.id == 99) listed = cs.user == "nobody";
  BOOST_TEST(listed);
}

BOOST_AUTO_TEST_CASE(an_unidentified_connection_may_only_say_hello_ping_and_bye) {
  harness h{auth_config()};
  auto c = h.connect("n1"); // never identified
  h.subscribe(c, 1, "orders.x");
  BOOST_TEST(expect_denied(h, c).find("not identified") != std::string::npos);
  h.publish(c, "orders.x", "p");
  expect_denied(h, c);
  ping(h, c);
  auto got = h.take(c);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST((got[0].kind == wire::op::pong));
  BOOST_TEST(h.core().stats().permission_denied == 2u);
  BOOST_TEST(h.core().denied_by_user().at("") == 2u);
  // Its SUB made nothing.
  auto admin = h.connect_as("admin", "adm");
  h.publish(admin, "orders.x", "p");
  BOOST_TEST(h.take_msgs(c).empty());
}

BOOST_AUTO_TEST_CASE(a_user_the_policy_does_not_know_is_unidentified) {
  harness h{auth_config()};
  auto c = h.connect_as("mallory", "m1");
  h.subscribe(c, 1, "orders.x");
  BOOST_TEST(expect_denied(h, c).find("'mallory' is not in the broker's policy")
             != std::string::npos);
  h.publish(c, "orders.x", "p");
  expect_denied(h, c);
  BOOST_TEST(h.core().denied_by_user().at("mallory") == 2u);
}

BOOST_AUTO_TEST_CASE(publish_is_allowed_denied_and_deny_wins) {
  harness h{auth_config()};
  auto admin = h.connect_as("admin", "adm");
  h.subscribe(admin, 1, ">");
  auto alice = h.connect_as("alice", "a1");
  h.publish(alice, "orders.eu", "ok");
  expect_quiet(h, alice);
  BOOST_TEST(h.take_msgs(admin).size() == 1u);
  h.publish(alice, "orders.secret.key", "no");
  auto text = expect_denied(h, alice);
  BOOST_TEST(text.find("alice") != std::string::npos);
  BOOST_TEST(text.find("orders.secret.key") != std::string::npos);
  h.publish(alice, "billing.x", "no");
  expect_denied(h, alice);
  BOOST_TEST(h.take_msgs(admin).empty());
  // Reserved: admin's `>` would not do; its `$SYS.>` does.
  h.publish(alice, "$SYS.trace.a1", "no");
  expect_denied(h, alice);
  h.publish(admin, "$SYS.trace.adm", "ok");
  expect_quiet(h, admin);
  // $SYS.broker. stays the broker's own (105) for everyone.
  h.publish(admin, "$SYS.broker.x.stats", "no");
  auto e = errs(h.take(admin));
  BOOST_TEST_REQUIRE(e.size() == 1u);
  BOOST_TEST(e[0].code == code_of(status::forbidden));
  BOOST_TEST(h.core().stats().permission_denied == 3u);
}

BOOST_AUTO_TEST_CASE(a_denied_confirmed_publish_is_answered_by_err_with_its_msg_id) {
  harness h{auth_config()};
  auto alice = h.connect_as("alice", "a1");
  h.publish(alice, "billing.x", "no", {.msg_id = "m-1", .confirm = true});
  auto got = h.take(alice);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST((got[0].kind == wire::op::err));
  BOOST_TEST(got[0].code == denied);
  BOOST_TEST(got[0].msg_id == "m-1");
  // The denied publish was not remembered: nothing of it in dedup.
  BOOST_TEST(h.core().current().dedup_entries == 0u);
}

BOOST_AUTO_TEST_CASE(a_denied_subscription_is_not_made) {
  harness h{auth_config()};
  auto admin = h.connect_as("admin", "adm");
  auto alice = h.connect_as("alice", "a1");
  h.subscribe(alice, 1, "orders.eu.*"); // covered by orders.>
  expect_quiet(h, alice);
  h.subscribe(alice, 2, "billing.>");
  auto e = errs(h.take(alice));
  BOOST_TEST_REQUIRE(e.size() == 1u);
  BOOST_TEST(e[0].code == denied);
  BOOST_TEST(e[0].sid == 2u);
  BOOST_TEST(e[0].text.find("billing.>") != std::string::npos);
  h.subscribe(alice, 3, "orders.*.>"); // overlaps the deny orders.secret.>
  expect_denied(h, alice);
  h.subscribe(alice, 4, "orders.*.shipped"); // orders.secret.shipped: deny wins
  expect_denied(h, alice);
  h.publish(admin, "orders.eu.shipped", "1");
  h.publish(admin, "billing.x", "2");
  h.publish(admin, "orders.secret.x", "3");
  auto msgs = h.take_msgs(alice);
  BOOST_TEST_REQUIRE(msgs.size() == 1u);
  BOOST_TEST(msgs[0].sid == 1u);
  BOOST_TEST(h.core().current().subscriptions == 1u);
}

BOOST_AUTO_TEST_CASE(wildcards_are_checked_both_ways_in_the_core) {
  broker::config cfg;
  broker::auth_policy pol;
  pol.users["u"] = perms({}, {}, {"orders.*"}, {});
  cfg.auth = pol;
  harness h{cfg};
  auto u = h.connect_as("u", "u1");
  h.subscribe(u, 1, "orders.*");
  expect_quiet(h, u);
  h.subscribe(u, 2, "orders.>"); // wider than orders.*
  expect_denied(h, u);
  h.subscribe(u, 3, "orders.eu");
  expect_quiet(h, u);
  BOOST_TEST(h.core().current().subscriptions == 2u);
}

BOOST_AUTO_TEST_CASE(reserved_subscriptions_need_a_literal_grant) {
  harness h{auth_config()};
  auto alice = h.connect_as("alice", "a1");
  h.subscribe(alice, 1, "$SYS.>");
  expect_denied(h, alice);
  h.subscribe(alice, 2, "$DLQ.orders.x");
  expect_denied(h, alice);
  auto admin = h.connect_as("admin", "adm");
  h.subscribe(admin, 1, "$SYS.>");
  expect_quiet(h, admin);
}

BOOST_AUTO_TEST_CASE(only_the_own_inbox_may_be_subscribed) {
  harness h{auth_config()};
  auto alice = h.connect_as("alice", "a1");
  h.subscribe(alice, 1, "_INBOX.a1.>");
  expect_quiet(h, alice);
  h.subscribe(alice, 2, "_INBOX.b1.>");
  expect_denied(h, alice);
  h.subscribe(alice, 3, "_INBOX.*.>");
  expect_denied(h, alice);
  auto admin = h.connect_as("admin", "adm");
  h.publish(admin, "_INBOX.b1.1", "not yours");
  h.publish(admin, "_INBOX.a1.1", "yours");
  auto msgs = h.take_msgs(alice);
  BOOST_TEST_REQUIRE(msgs.size() == 1u);
  BOOST_TEST(msgs[0].payload == "yours");
}

BOOST_AUTO_TEST_CASE(a_node_id_is_held_by_one_user_at_a_time) {
  harness h{auth_config()};
  auto alice = h.connect_as("alice", "n1");
  auto alice2 = h.connect_as("alice", "n1"); // the same user: fine
  // bob may not take n1 (and so read n1's replies).
  auto bob = h.new_conn();
  h.core().identify(bob, "bob", h.now());
  wire::header hello;
  hello.kind = wire::op::hello;
  hello.node = "n1";
  h.send(bob, hello);
  auto got = h.take(bob);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST((got[0].kind == wire::op::err));
  BOOST_TEST(got[0].code == denied);
  BOOST_TEST(got[0].text.find("n1") != std::string::npos);
  // A node id must be one token: `a.b` would hide in a's inbox.
  hello.node = "a1.x";
  h.send(bob, hello);
  expect_denied(h, bob);
  // Once alice's connections are gone, n1 is free.
  h.core().disconnected(alice, h.now());
  hello.node = "n1";
  h.send(bob, hello);
  BOOST_TEST(expect_denied(h, bob).find("held by another user") != std::string::npos);
  h.core().disconnected(alice2, h.now());
  h.flush();
  h.send(bob, hello);
  got = h.take(bob);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST((got[0].kind == wire::op::welcome));
}

namespace {
// alice asks svc.echo with reply-to _INBOX.a1.<id>; bob serves it.
struct request_fixture {
  harness h;
  conn_id alice, bob;
  explicit request_fixture(std::string responder = "bob", broker::config cfg = auth_config())
    : h(std::move(cfg)) {
    alice = h.connect_as("alice", "a1");
    h.subscribe(alice, 1, "_INBOX.a1.>");
    bob = h.connect_as(responder, "b1");
    h.subscribe(bob, 1, "svc.echo");
    expect_quiet(h, alice);
    expect_quiet(h, bob);
  }
  void request(std::string id, std::uint64_t deadline_ns = 0) {
    h.publish(alice, "svc.echo", "q", {.reply_to = "_INBOX.a1." + id, .deadline_ns = deadline_ns});
    expect_quiet(h, alice);
    BOOST_TEST_REQUIRE(h.take_msgs(bob).size() == 1u);
  }
  void answer(std::string id) { h.publish(bob, "_INBOX.a1." + id, "r"); }
};
} // namespace

BOOST_AUTO_TEST_CASE(a_request_may_be_answered_once) {
  request_fixture f;
  f.request("1");
  f.answer("1");
  expect_quiet(f.h, f.bob);
  auto msgs = f.h.take_msgs(f.alice);
  BOOST_TEST_REQUIRE(msgs.size() == 1u);
  BOOST_TEST(msgs[0].payload == "r");
  f.answer("1"); // a second answer
  BOOST_TEST(expect_denied(f.h, f.bob).find("_INBOX.a1.1") != std::string::npos);
  BOOST_TEST(f.h.take_msgs(f.alice).empty());
}

BOOST_AUTO_TEST_CASE(an_inbox_without_a_request_may_not_be_published_on) {
  request_fixture f;
  f.answer("7");
  expect_denied(f.h, f.bob);
  f.request("1");
  f.answer("2"); // another request's inbox
  expect_denied(f.h, f.bob);
  BOOST_TEST(f.h.take_msgs(f.alice).empty());
}

BOOST_AUTO_TEST_CASE(a_request_past_its_deadline_may_not_be_answered) {
  request_fixture f;
  auto deadline = static_cast<std::uint64_t>((f.h.now() + 200ms).count());
  f.request("1", deadline);
  f.request("2", deadline);
  f.answer("2");
  expect_quiet(f.h, f.bob); // in time
  f.h.advance(300ms);
  f.answer("1");
  expect_denied(f.h, f.bob);
}

BOOST_AUTO_TEST_CASE(without_allow_responses_a_request_may_not_be_answered) {
  request_fixture f{"carol"};
  f.request("1");
  f.answer("1");
  expect_denied(f.h, f.bob);
  BOOST_TEST(f.h.take_msgs(f.alice).empty());
}

BOOST_AUTO_TEST_CASE(an_explicit_inbox_allow_needs_no_request) {
  harness h{auth_config()};
  auto alice = h.connect_as("alice", "a1");
  h.subscribe(alice, 1, "_INBOX.a1.>");
  auto admin = h.connect_as("admin", "adm");
  h.publish(admin, "_INBOX.a1.9", "x");
  h.publish(admin, "_INBOX.a1.9", "y");
  expect_quiet(h, admin);
  BOOST_TEST(h.take_msgs(alice).size() == 2u);
}

BOOST_AUTO_TEST_CASE(a_request_names_only_its_own_inbox_for_replies) {
  request_fixture f;
  // alice points bob's answer at someone else's inbox.
  f.h.publish(f.alice, "svc.echo", "q", {.reply_to = "_INBOX.zz.1"});
  BOOST_TEST(expect_denied(f.h, f.alice).find("_INBOX.zz.1") != std::string::npos);
  BOOST_TEST(f.h.take_msgs(f.bob).empty());
}

BOOST_AUTO_TEST_CASE(open_requests_are_bounded_per_connection_oldest_first) {
  auto cfg = auth_config();
  cfg.max_open_replies = 2;
  request_fixture f{"bob", cfg};
  f.request("1");
  f.request("2");
  f.request("3");
  BOOST_TEST(f.h.core().stats().open_replies_dropped == 1u);
  f.answer("1");
  expect_denied(f.h, f.bob);
  f.answer("2");
  f.answer("3");
  expect_quiet(f.h, f.bob);
  BOOST_TEST(f.h.take_msgs(f.alice).size() == 2u);
}

BOOST_AUTO_TEST_CASE(queue_groups_are_joined_only_when_permitted) {
  harness h{auth_config()};
  auto admin = h.connect_as("admin", "adm");
  auto bob = h.connect_as("bob", "b1");
  h.subscribe(bob, 1, "svc.x", {.queue = "workers", .credit = 10});
  expect_quiet(h, bob);
  h.subscribe(bob, 2, "svc.y", {.queue = "pool.a", .credit = 10});
  expect_quiet(h, bob);
  h.subscribe(bob, 3, "svc.z", {.queue = "others", .credit = 10});
  BOOST_TEST(expect_denied(h, bob).find("others") != std::string::npos);
  // A permitted group whose pattern is not: refused too.
  h.subscribe(bob, 4, "billing.x", {.queue = "workers", .credit = 10});
  expect_denied(h, bob);
  BOOST_TEST(h.core().current().groups == 2u);
  h.publish(admin, "svc.x", "1");
  h.publish(admin, "svc.z", "2");
  auto msgs = h.take_msgs(bob);
  BOOST_TEST_REQUIRE(msgs.size() == 1u);
  BOOST_TEST(msgs[0].sid == 1u);
}

BOOST_AUTO_TEST_CASE(a_queue_member_may_answer_the_requests_it_gets) {
  harness h{auth_config()};
  auto alice = h.connect_as("alice", "a1");
  h.subscribe(alice, 1, "_INBOX.a1.>");
  auto bob = h.connect_as("bob", "b1");
  h.subscribe(bob, 1, "svc.echo", {.queue = "workers", .credit = 10});
  h.publish(alice, "svc.echo", "q", {.reply_to = "_INBOX.a1.1"});
  BOOST_TEST_REQUIRE(h.take_msgs(bob).size() == 1u);
  h.publish(bob, "_INBOX.a1.1", "r");
  expect_quiet(h, bob);
  BOOST_TEST(h.take_msgs(alice).size() == 1u);
}

BOOST_AUTO_TEST_CASE(violations_are_counted_per_user_and_spend_the_error_budget) {
  auto cfg = auth_config();
  cfg.error_budget = 3;
  harness h{cfg};
  auto alice = h.connect_as("alice", "a1");
  auto bob = h.connect_as("bob", "b1");
  h.publish(bob, "orders.x", "no");
  for (int i = 0; i < 3; ++i) h.publish(alice, "billing.x", "no");
  BOOST_TEST(!h.was_closed(alice)); // the budget allows 3
  auto stats = h.core().connections();
  BOOST_TEST_REQUIRE(stats.size() == 2u);
  BOOST_TEST(stats[0].user == "alice");
  BOOST_TEST(stats[0].permission_denied == 3u);
  BOOST_TEST(stats[1].user == "bob");
  BOOST_TEST(stats[1].permission_denied == 1u);
  h.subscribe(alice, 1, "billing.>"); // the fourth
  BOOST_TEST(h.was_closed(alice));
  auto got = h.take(alice);
  BOOST_TEST_REQUIRE(!got.empty());
  BOOST_TEST((got.back().kind == wire::op::bye));
  BOOST_TEST(got.back().text == "error budget exceeded");
  BOOST_TEST(!h.was_closed(bob));
  BOOST_TEST(h.core().stats().permission_denied == 5u);
  BOOST_TEST(h.core().denied_by_user().at("alice") == 4u);
  BOOST_TEST(h.core().denied_by_user().at("bob") == 1u);
  BOOST_TEST(h.core().stats().bad_frames == 0u); // denials are not bad frames
}

BOOST_AUTO_TEST_CASE(denials_and_bad_frames_share_one_budget) {
  auto cfg = auth_config();
  cfg.error_budget = 2;
  harness h{cfg};
  auto alice = h.connect_as("alice", "a1");
  h.publish(alice, "billing.x", "no");
  h.publish(alice, "billing.x", "no");
  wire::decode_error bad;
  bad.code = wire::errc::malformed;
  h.core().reject(alice, bad, h.now());
  h.flush();
  BOOST_TEST(h.was_closed(alice));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(peer_links)

// With auth a PEER_HELLO needs the broker identity ($peer, a link key the
// shell admitted), not only the cluster secret: a user that learnt the
// secret is still no broker.
BOOST_AUTO_TEST_CASE(only_the_broker_identity_may_link_whatever_secret_it_knows) {
  auto cfg = auth_config();
  cfg.cluster_secret = "the cluster's secret, sixteen+";
  harness h{cfg};
  auto hello_from = [&](conn_id c, std::uint32_t number) {
    wire::header hello;
    hello.kind = wire::op::peer_hello;
    hello.node = "x";
    hello.seq = 7;
    hello.delivery = number;
    auto proof = broker::peer_hello_proof(cfg.cluster_secret, hello.node, hello.seq, number);
    hello.auth = proof;
    h.send(c, hello);
  };
  auto alice = h.new_conn();
  h.core().identify(alice, "alice", h.now());
  hello_from(alice, 1);
  BOOST_TEST(expect_denied(h, alice).find("only a broker's key may link") != std::string::npos);
  BOOST_TEST(h.core().peers().empty());
  auto link = h.new_conn();
  h.core().identify(link, broker::peer_user_id, h.now());
  hello_from(link, 2);
  BOOST_TEST(errs(h.take(link)).empty());
  BOOST_TEST(h.core().peers().size() == 1u);
}

// A permission holds across brokers: a FWD names the user that published
// it, the origin's link carries that name, and the receiving broker checks
// it against its own policy (its users may differ from the origin's).
BOOST_AUTO_TEST_CASE(a_forward_carries_its_publisher_and_is_checked_against_this_policy) {
  auto cfg = auth_config();
  cfg.cluster_secret = "the cluster's secret, sixteen+";
  harness h{cfg};
  auto link = h.new_conn();
  h.core().identify(link, broker::peer_user_id, h.now());
  wire::header hello;
  hello.kind = wire::op::peer_hello;
  hello.node = "x";
  hello.seq = 7;
  hello.delivery = 1;
  auto proof = broker::peer_hello_proof(cfg.cluster_secret, hello.node, hello.seq, 1);
  hello.auth = proof;
  h.send(link, hello);
  wire::header interest;
  interest.kind = wire::op::interest_add;
  interest.topic = "orders.>";
  h.send(link, interest);
  (void)h.take(link);

  // Outbound: alice's publish goes to the peer with her name on it.
  auto alice = h.connect_as("alice", "shop");
  h.publish(alice, "orders.1", "x");
  auto out = h.take(link);
  auto fwd = std::find_if(out.begin(), out.end(), [](auto& s) { return s.kind == wire::op::fwd; });
  BOOST_TEST_REQUIRE((fwd != out.end()));
  BOOST_TEST(fwd->user == "alice");

  // Inbound: the peer's FWDs are checked against this broker's users.
  auto admin = h.connect_as("admin", "ops");
  h.subscribe(admin, 1, ">");
  auto forward = [&](std::string user, std::string topic, std::uint64_t seq) {
    wire::header f;
    f.kind = wire::op::fwd;
    f.topic = topic;
    f.node = "x";
    f.user = user;
    f.flags = wire::flag_confirm;
    f.seq = seq;
    h.send(link, f, "payload");
  };
  forward("alice", "orders.2", 1); // hers to publish
  forward("alice", "orders.secret.plan", 2); // denied to her here
  forward("mallory", "orders.3", 3); // a user this broker does not know
  auto got = h.take_msgs(admin);
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].topic == "orders.2");
  std::map<std::uint64_t, std::uint32_t> outcome;
  for (auto& s : h.take(link))
    if (s.kind == wire::op::confirm_relay) outcome[s.seq] = s.code;
  BOOST_TEST(outcome[1] == 0u);
  BOOST_TEST(outcome[2] == denied);
  BOOST_TEST(outcome[3] == denied);
  BOOST_TEST(h.core().stats().forwards_denied == 2u);
  BOOST_TEST(h.core().denied_by_user().at("alice") == 1u);
  BOOST_TEST(h.core().denied_by_user().at("mallory") == 1u);
}

BOOST_AUTO_TEST_SUITE_END()

// Connections that cost: a HELLO past max_connections (or, with auth, the
// user's share) is answered ERR 103 naming the limit and gets no session;
// a place frees when a session ends.
BOOST_AUTO_TEST_SUITE(connection_limits)

// The HELLO of a fresh connection; its outputs.
std::vector<seen> hello_on(harness& h, conn_id c, std::string node) {
  wire::header hello;
  hello.kind = wire::op::hello;
  hello.node = std::move(node);
  h.send(c, hello);
  return h.take(c);
}

void expect_refused(harness& h, conn_id c, const std::vector<seen>& got, std::string_view says) {
  auto e = errs(got);
  BOOST_TEST_REQUIRE(e.size() == 1u);
  BOOST_TEST(e[0].code == code_of(status::overloaded));
  BOOST_TEST(e[0].text.find(says) != std::string::npos, e[0].text);
  for (auto& s : got) BOOST_TEST((s.kind != wire::op::welcome));
  // No session: anything but HELLO is "HELLO must come first".
  wire::header sub;
  sub.kind = wire::op::sub;
  sub.sid = 1;
  sub.topic = "x";
  h.send(c, sub);
  auto after = errs(h.take(c));
  BOOST_TEST_REQUIRE(after.size() == 1u);
  BOOST_TEST(after[0].code == code_of(status::protocol_violation));
}

BOOST_AUTO_TEST_CASE(a_hello_past_max_connections_is_refused_until_a_session_ends) {
  broker::config cfg;
  cfg.max_connections = 2;
  harness h{cfg};
  auto a = h.connect("a");
  h.connect("b");
  auto c = h.new_conn();
  expect_refused(h, c, hello_on(h, c, "c"), "max_connections is 2");
  BOOST_TEST(h.core().stats().connections_refused == 1u);
  h.core().disconnected(a, h.now());
  h.flush();
  auto got = hello_on(h, c, "c"); // asks again: a place is free
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST((got[0].kind == wire::op::welcome));
}

BOOST_AUTO_TEST_CASE(a_user_past_its_share_is_refused_and_the_others_are_not) {
  auto cfg = auth_config();
  cfg.max_connections_per_user = 1;
  harness h{cfg};
  auto alice = h.connect_as("alice", "a1");
  auto alice2 = h.new_conn();
  h.core().identify(alice2, "alice", h.now());
  expect_refused(h, alice2, hello_on(h, alice2, "a2"),
                 "for user 'alice': max_connections_per_user is 1");
  h.connect_as("bob", "b1"); // another user's share is its own
  h.core().disconnected(alice, h.now());
  h.flush();
  h.connect_as("alice", "a3");
}

BOOST_AUTO_TEST_SUITE_END()
