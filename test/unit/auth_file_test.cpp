// SPDX-License-Identifier: Apache-2.0
// The broker's auth file (--auth): text in, users, permissions and peers
// out, or one line saying what is wrong and where.
#include <boost/test/unit_test.hpp>

#include "auth_file.hpp"

using namespace plexus::broker;

namespace {

constexpr const char* alice_key = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID";
constexpr const char* bob_key = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs";
constexpr const char* peer_key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";

std::string example() {
  return std::string{"secret_key_file = \"broker.key\"\n"
                     "\n"
                     "[[users]]\n"
                     "name = \"alice\"\n"
                     "public_key = \""} + alice_key + "\"\n"
         + "publish_allow = [\"orders.>\"]\n"
           "publish_deny = [\"orders.secret\"]\n"
           "subscribe_allow = [\"orders.*\", \"_INBOX.>\"]\n"
           "subscribe_deny = []\n"
           "allow_responses = false\n"
           "queue_groups = [\"workers\"]\n"
           "\n"
           "[[users]]\n"
           "name = \"bob\"\n"
           "public_key = \"" + bob_key + "\"\n"
         + "\n"
           "[[peers]]\n"
           "public_key = \"" + peer_key + "\"\n";
}

std::string error_of(const std::string& text) {
  std::string error;
  auto f = parse_auth_file(text, "auth.toml", error);
  BOOST_TEST(!f);
  BOOST_TEST(error.find('\n') == std::string::npos); // one line
  return error;
}

bool says(const std::string& error, std::initializer_list<const char*> parts) {
  for (auto* p : parts)
    if (error.find(p) == std::string::npos) return false;
  return error.starts_with("auth.toml");
}

} // namespace

BOOST_AUTO_TEST_SUITE(auth_file_parser)

BOOST_AUTO_TEST_CASE(users_their_permissions_and_peers_are_read) {
  std::string error;
  auto f = parse_auth_file(example(), "auth.toml", error);
  BOOST_REQUIRE_MESSAGE(f, error);
  BOOST_TEST(f->secret_key_file == "broker.key");
  BOOST_REQUIRE_EQUAL(f->users.size(), 2u);
  BOOST_TEST(f->users[0].name == "alice");
  BOOST_TEST(f->users[0].public_key == alice_key);
  auto& a = f->policy.users.at("alice");
  BOOST_TEST(a.publish.allow == std::vector<std::string>{"orders.>"});
  BOOST_TEST(a.publish.deny == std::vector<std::string>{"orders.secret"});
  BOOST_TEST((a.subscribe.allow == std::vector<std::string>{"orders.*", "_INBOX.>"}));
  BOOST_TEST(a.subscribe.deny.empty());
  BOOST_TEST(!a.allow_responses);
  BOOST_TEST(a.queue_groups == std::vector<std::string>{"workers"});
  // Omitted: everything not reserved, responses allowed, any group.
  auto& b = f->policy.users.at("bob");
  BOOST_TEST(b.publish.allow.empty());
  BOOST_TEST(b.allow_responses);
  BOOST_TEST(b.queue_groups.empty());
  BOOST_TEST(f->peer_keys == std::vector<std::string>{peer_key});
}

BOOST_AUTO_TEST_CASE(a_file_of_peers_only_or_users_only_is_fine) {
  std::string error;
  BOOST_TEST(parse_auth_file("secret_key_file = \"k\"\n", "a", error).has_value());
}

BOOST_AUTO_TEST_CASE(the_secret_key_file_is_required) {
  BOOST_TEST(says(error_of("[[users]]\nname = \"x\"\n"), {"secret_key_file"}));
  BOOST_TEST(says(error_of("secret_key_file = 3\n"), {"secret_key_file", "string"}));
}

BOOST_AUTO_TEST_CASE(a_misspelt_key_is_an_error_naming_the_user) {
  auto text = example();
  text.replace(text.find("publish_deny"), 12, "publish_deni");
  BOOST_TEST(says(error_of(text), {"user 'alice'", "unknown key 'publish_deni'"}));
  BOOST_TEST(says(error_of("secret_key_file = \"k\"\nuser = 1\n"), {"unknown key 'user'"}));
}

BOOST_AUTO_TEST_CASE(keys_must_be_z85_and_belong_to_one_user) {
  auto text = example();
  text.replace(text.find(bob_key), 40, "short");
  BOOST_TEST(says(error_of(text), {"user 'bob'", "public_key", "40 characters"}));
  text = example();
  text.replace(text.find(bob_key), 40, alice_key);
  BOOST_TEST(says(error_of(text), {"user 'bob'", "another user's"}));
  text = example();
  text.replace(text.find(peer_key), 40, alice_key);
  BOOST_TEST(says(error_of(text), {"peers[0]", "public_key"}));
}

BOOST_AUTO_TEST_CASE(names_are_unique_and_never_reserved) {
  auto text = example();
  text.replace(text.find("\"bob\""), 5, "\"alice\"");
  BOOST_TEST(says(error_of(text), {"user 'alice'", "twice"}));
  text = example();
  text.replace(text.find("\"bob\""), 5, "\"$peer\"");
  BOOST_TEST(says(error_of(text), {"$peer", "'$'"}));
  text = example();
  text.replace(text.find("\"bob\""), 5, "\"b b\"");
  BOOST_TEST(says(error_of(text), {"b b"}));
}

BOOST_AUTO_TEST_CASE(patterns_and_values_are_checked) {
  auto text = example();
  text.replace(text.find("\"orders.>\""), 10, "\"orders..x\"");
  BOOST_TEST(says(error_of(text), {"user 'alice'", "publish_allow", "orders..x"}));
  text = example();
  text.replace(text.find("allow_responses = false"), 23, "allow_responses = \"no\"");
  BOOST_TEST(says(error_of(text), {"allow_responses", "true or false"}));
  text = example();
  text.replace(text.find("[\"workers\"]"), 11, "\"workers\"");
  BOOST_TEST(says(error_of(text), {"queue_groups", "array"}));
  BOOST_TEST(says(error_of("secret_key_file = \"k\"\nusers = 3\n"), {"users", "[[users]]"}));
}

BOOST_AUTO_TEST_CASE(a_syntax_error_gives_its_line) {
  auto e = error_of("secret_key_file = \"k\"\n[[users]\n");
  BOOST_TEST(e.starts_with("auth.toml:2:"));
}

BOOST_AUTO_TEST_CASE(malformed_text_is_an_error_never_a_crash) {
  // Every prefix and every one-byte change of a valid file: parsed, or
  // one line of error.
  auto text = example();
  for (std::size_t n = 0; n <= text.size(); ++n) {
    std::string error;
    auto f = parse_auth_file(text.substr(0, n), "a", error);
    BOOST_REQUIRE(f || !error.empty());
  }
  for (std::size_t n = 0; n < text.size(); ++n) {
    for (char ch : {'\0', '"', '[', '\n', '\xff'}) {
      auto t = text;
      t[n] = ch;
      std::string error;
      auto f = parse_auth_file(t, "a", error);
      BOOST_REQUIRE(f || !error.empty());
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
