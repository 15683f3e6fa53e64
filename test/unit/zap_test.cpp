// SPDX-License-Identifier: Apache-2.0
// The ZAP handler's decision (RFC 27), request frames in, reply frames out.
#include <boost/test/unit_test.hpp>

#include <random>

#include "plexus/creds.hpp"
#include "zap.hpp"

using namespace plexus;
using namespace plexus::broker;

namespace {

constexpr const char* alice_public = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID";
constexpr const char* peer_public = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";

std::string bytes_of(const char* z85) {
  auto b = z85_key_bytes(z85);
  return {b->begin(), b->end()};
}

zap_policy policy() {
  zap_policy p;
  BOOST_REQUIRE(p.admit(alice_public, "alice"));
  BOOST_REQUIRE(p.admit(peer_public, std::string{peer_user_id}));
  return p;
}

std::vector<std::string> ask(const std::vector<std::string>& frames, const zap_policy& p) {
  std::vector<std::string_view> views(frames.begin(), frames.end());
  return zap_reply(views, p);
}

std::vector<std::string> curve_request(const std::string& key, std::string id = "7") {
  return {"1.0", std::move(id), "plexus", "127.0.0.1", "", "CURVE", key};
}

} // namespace

BOOST_AUTO_TEST_SUITE(zap)

BOOST_AUTO_TEST_CASE(a_listed_key_is_admitted_as_its_user) {
  auto r = ask(curve_request(bytes_of(alice_public), "req-42"), policy());
  BOOST_REQUIRE_EQUAL(r.size(), 6u);
  BOOST_TEST(r[0] == "1.0");
  BOOST_TEST(r[1] == "req-42"); // the request id comes back
  BOOST_TEST(r[2] == "200");
  BOOST_TEST(r[4] == "alice");
  BOOST_TEST(r[5] == "");
}

BOOST_AUTO_TEST_CASE(a_peer_key_is_admitted_as_the_reserved_peer_user) {
  auto r = ask(curve_request(bytes_of(peer_public)), policy());
  BOOST_TEST(r[2] == "200");
  BOOST_TEST(r[4] == "$peer");
}

BOOST_AUTO_TEST_CASE(an_unknown_key_is_refused) {
  auto other = bytes_of(alice_public);
  other[0] = static_cast<char>(other[0] ^ 1);
  auto r = ask(curve_request(other), policy());
  BOOST_REQUIRE_EQUAL(r.size(), 6u);
  BOOST_TEST(r[2] == "400");
  BOOST_TEST(r[4] == ""); // no user
}

BOOST_AUTO_TEST_CASE(null_and_plain_mechanisms_are_refused) {
  auto p = policy();
  BOOST_TEST(ask({"1.0", "1", "plexus", "127.0.0.1", "", "NULL"}, p)[2] == "400");
  BOOST_TEST(ask({"1.0", "1", "plexus", "127.0.0.1", "", "PLAIN", "alice", "pw"}, p)[2] == "400");
  // Even with a listed key's bytes as the PLAIN user name.
  BOOST_TEST(ask({"1.0", "1", "plexus", "127.0.0.1", "", "PLAIN", bytes_of(alice_public), ""}, p)[2]
             == "400");
}

BOOST_AUTO_TEST_CASE(malformed_requests_are_refused_with_a_well_formed_reply) {
  auto p = policy();
  auto key = bytes_of(alice_public);
  std::vector<std::vector<std::string>> bad = {
    {},
    {"1.0"},
    {"2.0", "1", "plexus", "a", "", "CURVE", key},    // another version
    {"1.0", "1", "plexus", "a", "", "CURVE"},         // no credentials
    {"1.0", "1", "plexus", "a", "", "CURVE", key.substr(1)},
    {"1.0", "1", "plexus", "a", "", "CURVE", key, key}, // two credentials
    {"1.0", "1", "plexus", "a", "", "CURVE", alice_public}, // Z85, not the 32 bytes
  };
  for (auto& req : bad) {
    auto r = ask(req, p);
    BOOST_REQUIRE_EQUAL(r.size(), 6u);
    BOOST_TEST(r[0] == "1.0");
    BOOST_TEST(r[2] == "400");
  }
}

BOOST_AUTO_TEST_CASE(random_requests_are_never_admitted) {
  auto p = policy();
  std::mt19937 gen{18};
  for (int i = 0; i < 20000; ++i) {
    std::vector<std::string> req(gen() % 9);
    for (auto& f : req) {
      f.resize(gen() % 40);
      for (auto& ch : f) ch = static_cast<char>(gen());
    }
    if (req.size() > 0 && gen() % 2) req[0] = "1.0";
    if (req.size() > 5 && gen() % 2) req[5] = "CURVE";
    auto r = ask(req, p);
    BOOST_REQUIRE_EQUAL(r.size(), 6u);
    BOOST_REQUIRE(r[2] == "400");
  }
}

BOOST_AUTO_TEST_CASE(admit_takes_only_z85_keys) {
  zap_policy p;
  BOOST_TEST(!p.admit("not a key", "bob"));
  BOOST_TEST(p.keys.empty());
}

BOOST_AUTO_TEST_SUITE_END()
