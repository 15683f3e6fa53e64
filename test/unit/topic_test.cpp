// SPDX-License-Identifier: Apache-2.0
#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

#include "plexus/topic.hpp"
#include "print.hpp"

using namespace plexus;

BOOST_AUTO_TEST_SUITE(topic)

namespace {

struct validity_case {
  const char* text;
  topic_errc as_topic;
  topic_errc as_pattern;
};

const validity_case validity_table[] = {
  {"orders", topic_errc::ok, topic_errc::ok},
  {"orders.shipped", topic_errc::ok, topic_errc::ok},
  {"orders.eu.de.shipped", topic_errc::ok, topic_errc::ok},
  {"Orders.Shipped", topic_errc::ok, topic_errc::ok},
  {"$SYS.broker.b1.stats", topic_errc::ok, topic_errc::ok},
  {"_INBOX.n1.42", topic_errc::ok, topic_errc::ok},
  {"caf\xc3\xa9.ordre", topic_errc::ok, topic_errc::ok}, // UTF-8 passes
  {"a-b_c:d/e", topic_errc::ok, topic_errc::ok},
  {"", topic_errc::empty, topic_errc::empty},
  {".", topic_errc::empty_token, topic_errc::empty_token},
  {"a..b", topic_errc::empty_token, topic_errc::empty_token},
  {".a", topic_errc::empty_token, topic_errc::empty_token},
  {"a.", topic_errc::empty_token, topic_errc::empty_token},
  {"a b", topic_errc::bad_character, topic_errc::bad_character},
  {"a\tb", topic_errc::bad_character, topic_errc::bad_character},
  {"a\x7f", topic_errc::bad_character, topic_errc::bad_character},
  {"*", topic_errc::wildcard_in_topic, topic_errc::ok},
  {">", topic_errc::wildcard_in_topic, topic_errc::ok},
  {"orders.*", topic_errc::wildcard_in_topic, topic_errc::ok},
  {"orders.>", topic_errc::wildcard_in_topic, topic_errc::ok},
  {"*.*.shipped", topic_errc::wildcard_in_topic, topic_errc::ok},
  {"orders.*.>", topic_errc::wildcard_in_topic, topic_errc::ok},
  {"orders.>.x", topic_errc::wildcard_in_topic, topic_errc::tail_not_last},
  {">.x", topic_errc::wildcard_in_topic, topic_errc::tail_not_last},
  {"a*", topic_errc::wildcard_in_topic, topic_errc::partial_wildcard},
  {"*a.b", topic_errc::wildcard_in_topic, topic_errc::partial_wildcard},
  {"a.b>", topic_errc::wildcard_in_topic, topic_errc::partial_wildcard},
  {"a.**", topic_errc::wildcard_in_topic, topic_errc::partial_wildcard},
  {"a.>>", topic_errc::wildcard_in_topic, topic_errc::partial_wildcard},
  {"a..*", topic_errc::empty_token, topic_errc::empty_token},
};

struct match_case {
  const char* pattern;
  const char* topic;
  bool expected;
};

const match_case match_table[] = {
  {"orders.shipped", "orders.shipped", true},
  {"orders.shipped", "orders.Shipped", false}, // case-sensitive
  {"orders.shipped", "orders.shipped.eu", false},
  {"orders.shipped.eu", "orders.shipped", false},
  {"orders", "orders", true},
  {"orders", "order", false},
  {"order", "orders", false},
  {"orders.*", "orders.shipped", true},
  {"orders.*", "orders", false},            // `*` is exactly one token
  {"orders.*", "orders.shipped.eu", false},
  {"orders.*.shipped", "orders.eu.shipped", true},
  {"orders.*.shipped", "orders.eu.de.shipped", false},
  {"*.*.shipped", "orders.eu.shipped", true},
  {"*", "orders", true},
  {"*", "orders.shipped", false},
  {"orders.>", "orders.shipped", true},
  {"orders.>", "orders.eu.de.shipped", true},
  {"orders.>", "orders", false},            // `>` needs at least one token
  {">", "orders", true},
  {">", "a.b.c.d", true},
  {"orders.*.>", "orders.eu.shipped", true},
  {"orders.*.>", "orders.eu", false},
  {"*.>", "a.b", true},
  {"*.>", "a", false},
  {"*.shipped", "orders.shipped", true},
  {">", "$SYS.broker.b1.stats", false},     // wildcards do not reach `$` topics
  {"*.broker.>", "$SYS.broker.x", false},
  {"$SYS.>", "$SYS.broker.b1.stats", true},
  {"$SYS.*.b1.stats", "$SYS.broker.b1.stats", true},
  {"$DLQ.>", "$DLQ.orders.shipped", true},
  {">", "_INBOX.n1.42", true},              // inboxes are ordinary topics
  {"_INBOX.n1.*", "_INBOX.n1.42", true},
  {"_INBOX.n1.*", "_INBOX.n2.42", false},
  {"a.b.c", "a.b.cc", false},
  {"a.b.cc", "a.b.c", false},
  {"a.*.c", "a.b.c", true},
  {"a.*.c", "a..c", false},                 // not a valid topic: never matches
  {"a.\xc3\xa9", "a.\xc3\xa9", true},
};

} // namespace

BOOST_AUTO_TEST_CASE(topics_and_patterns_are_validated_by_the_table) {
  for (const auto& c : validity_table) {
    BOOST_TEST_CONTEXT("'" << c.text << "'") {
      BOOST_TEST(validate_topic(c.text) == c.as_topic);
      BOOST_TEST(validate_pattern(c.text) == c.as_pattern);
    }
  }
}

BOOST_AUTO_TEST_CASE(patterns_match_topics_by_the_table) {
  BOOST_TEST(std::size(validity_table) + std::size(match_table) >= 40u);
  for (const auto& c : match_table) {
    BOOST_TEST_CONTEXT("pattern '" << c.pattern << "' topic '" << c.topic << "'") {
      BOOST_REQUIRE(validate_pattern(c.pattern) == topic_errc::ok);
      bool valid_topic = validate_topic(c.topic) == topic_errc::ok;
      BOOST_TEST((valid_topic && matches(c.pattern, c.topic)) == c.expected);
    }
  }
}

BOOST_AUTO_TEST_CASE(a_valid_topic_matches_itself_as_a_pattern) {
  for (const auto& c : validity_table) {
    if (validate_topic(c.text) != topic_errc::ok) continue;
    BOOST_TEST_CONTEXT(c.text) {
      BOOST_TEST(validate_pattern(c.text) == topic_errc::ok);
      BOOST_TEST(matches(c.text, c.text));
    }
  }
}

BOOST_AUTO_TEST_CASE(length_and_token_limits_are_enforced) {
  topic_limits lim{.max_bytes = 10, .max_tokens = 3};
  BOOST_TEST(validate_topic("abcdefghij", lim) == topic_errc::ok);
  BOOST_TEST(validate_topic("abcdefghijk", lim) == topic_errc::too_long);
  BOOST_TEST(validate_topic("a.b.c", lim) == topic_errc::ok);
  BOOST_TEST(validate_topic("a.b.c.d", lim) == topic_errc::too_many_tokens);
  BOOST_TEST(validate_pattern("*.*.*.>", lim) == topic_errc::too_many_tokens);
  std::string huge(100'000, 'a');
  BOOST_TEST(validate_topic(huge) == topic_errc::too_long);
  std::string dots;
  for (int i = 0; i < 17; ++i) dots += i ? ".a" : "a";
  BOOST_TEST(validate_topic(dots) == topic_errc::too_many_tokens);
}

BOOST_AUTO_TEST_CASE(reserved_namespaces_are_recognised_by_prefix) {
  BOOST_TEST(reserved_namespace("$SYS.broker.x") == reserved::sys);
  BOOST_TEST(reserved_namespace("$DLQ.orders") == reserved::dlq);
  BOOST_TEST(reserved_namespace("_INBOX.n.1") == reserved::inbox);
  BOOST_TEST(reserved_namespace("$SYSX.a") == reserved::none);
  BOOST_TEST(reserved_namespace("$sys.a") == reserved::none); // case-sensitive
  BOOST_TEST(reserved_namespace("orders.$SYS") == reserved::none);
  BOOST_TEST(reserved_namespace("_INBOX") == reserved::none);
}

BOOST_AUTO_TEST_CASE(tokens_are_visited_in_order) {
  std::vector<std::string> seen;
  for_each_token("orders.*.>", [&](std::string_view t) { seen.emplace_back(t); });
  BOOST_TEST(seen == (std::vector<std::string>{"orders", "*", ">"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
