// SPDX-License-Identifier: Apache-2.0
// Credentials files and Z85 keys (plexus/creds.hpp).
#include <boost/test/unit_test.hpp>

#include "plexus/creds.hpp"

using namespace plexus;

namespace {

// The CurveZMQ example keys (zmq_curve(7)).
constexpr const char* server_public = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
constexpr const char* client_public = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID";
constexpr const char* client_secret = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs";

std::string good_file() {
  return std::string{"user = \"alice\"\n"} + "public_key = \"" + client_public + "\"\n"
         + "secret_key = \"" + client_secret + "\"\n" + "broker_key = \"" + server_public + "\"\n";
}

std::string error_of(const std::string& text) {
  try {
    (void)parse_credentials(text, "alice.creds");
  } catch (const creds_error& e) {
    return e.what();
  }
  return {};
}

} // namespace

BOOST_AUTO_TEST_SUITE(creds)

BOOST_AUTO_TEST_CASE(z85_follows_the_rfc_32_test_vector) {
  // RFC 32: 86 4F D2 6F B5 59 F7 5B encodes as "HelloWorld".
  std::array<std::uint8_t, 32> key{};
  const std::uint8_t hello[8] = {0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B};
  for (std::size_t i = 0; i < 32; ++i) key[i] = hello[i % 8];
  BOOST_TEST(z85_encode_key(key) == "HelloWorldHelloWorldHelloWorldHelloWorld");
  auto back = z85_key_bytes("HelloWorldHelloWorldHelloWorldHelloWorld");
  BOOST_REQUIRE(back);
  BOOST_TEST((*back == key));
}

BOOST_AUTO_TEST_CASE(a_key_is_forty_characters_of_z85_within_32_bits_a_group) {
  BOOST_TEST(is_z85_key(server_public));
  BOOST_TEST(!is_z85_key(std::string{server_public}.substr(1)));
  BOOST_TEST(!is_z85_key(std::string{server_public} + "0"));
  BOOST_TEST(!is_z85_key(std::string(40, ' ')));     // not in the alphabet
  BOOST_TEST(!is_z85_key(std::string(40, '"')));
  BOOST_TEST(!is_z85_key(std::string(40, '#')));     // 84 * 85^4 + ... > 2^32
  BOOST_TEST(is_z85_key(std::string(40, '0')));
}

BOOST_AUTO_TEST_CASE(a_credentials_file_round_trips) {
  auto c = parse_credentials(good_file(), "alice.creds");
  BOOST_TEST(c.user == "alice");
  BOOST_TEST(c.public_key == client_public);
  BOOST_TEST(c.secret_key == client_secret);
  BOOST_TEST(c.broker_key == server_public);
  auto again = parse_credentials(format_credentials(c), "x");
  BOOST_TEST(again.user == c.user);
  BOOST_TEST(again.secret_key == c.secret_key);
  BOOST_TEST(again.broker_key == c.broker_key);
}

BOOST_AUTO_TEST_CASE(errors_name_the_file_and_the_field) {
  auto text = good_file();
  auto no_broker = text.substr(0, text.find("broker_key"));
  auto e = error_of(no_broker);
  BOOST_TEST(e.starts_with("alice.creds: "));
  BOOST_TEST(e.find("broker_key") != std::string::npos);

  auto short_key = good_file();
  short_key.replace(short_key.find(client_secret), 40, "abc");
  e = error_of(short_key);
  BOOST_TEST(e.find("secret_key") != std::string::npos);
  BOOST_TEST(e.find("40 characters") != std::string::npos);

  BOOST_TEST(error_of(good_file() + "colour = \"blue\"\n").find("unknown key 'colour'") != std::string::npos);
  BOOST_TEST(error_of("user = 3\n").find("user must be a string") != std::string::npos);
  e = error_of("user = \"alice\n");
  BOOST_TEST(e.starts_with("alice.creds:1:")); // the line of a syntax error
  BOOST_TEST(e.find('\n') == std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_missing_file_is_one_line_naming_it) {
  try {
    (void)read_credentials("/nonexistent/bob.creds");
    BOOST_FAIL("no error");
  } catch (const creds_error& e) {
    BOOST_TEST(std::string{e.what()}.starts_with("/nonexistent/bob.creds: "));
  }
}

BOOST_AUTO_TEST_CASE(malformed_text_is_an_error_never_a_crash) {
  auto text = good_file();
  for (std::size_t n = 0; n < text.size(); ++n) {
    auto cut = text.substr(0, n);
    try {
      (void)parse_credentials(cut, "f");
    } catch (const creds_error&) {
    }
    auto flipped = text;
    flipped[n] = static_cast<char>(flipped[n] ^ 0x55);
    try {
      (void)parse_credentials(flipped, "f");
    } catch (const creds_error&) {
    }
  }
  BOOST_TEST(error_of(text.substr(0, text.size() / 2)).starts_with("alice.creds"));
}

BOOST_AUTO_TEST_SUITE_END()
