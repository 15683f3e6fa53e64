// SPDX-License-Identifier: Apache-2.0
// The one status table against brokers/PROTOCOL.md: every code the
// protocol defines has a name and a text, and every wire code the table
// has is in the protocol.
#include <boost/test/unit_test.hpp>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "plexus/wire.hpp"

using namespace plexus;

namespace {

// The codes of PROTOCOL.md's "Status codes" table.
std::set<std::uint32_t> protocol_codes() {
  std::ifstream in{PLEXUS_PROTOCOL_MD};
  BOOST_TEST_REQUIRE(in.good(), "cannot read " << PLEXUS_PROTOCOL_MD);
  std::set<std::uint32_t> codes;
  bool in_table = false;
  static const std::regex row{R"(^\|\s*(\d+)\s*\|)"};
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("### Status codes")) in_table = true;
    else if (in_table && line.starts_with("#")) break;
    std::smatch m;
    if (in_table && std::regex_search(line, m, row)) codes.insert(std::stoul(m[1].str()));
  }
  return codes;
}

} // namespace

BOOST_AUTO_TEST_SUITE(statuses)

BOOST_AUTO_TEST_CASE(every_code_in_the_protocol_has_a_name_and_a_text) {
  auto codes = protocol_codes();
  BOOST_TEST_REQUIRE(codes.size() >= 15u, "found only " << codes.size() << " codes in PROTOCOL.md");
  for (auto code : codes) {
    const auto* s = find_status(code);
    BOOST_TEST_REQUIRE(s != nullptr, "code " << code << " is not in the status table");
    BOOST_TEST(!s->name.empty());
    BOOST_TEST(!s->text.empty());
    BOOST_TEST(std::string{status_text(code)} == s->text);
  }
}

BOOST_AUTO_TEST_CASE(every_wire_code_in_the_table_is_in_the_protocol) {
  auto codes = protocol_codes();
  std::set<std::string_view> names;
  for (const auto& s : status_table()) {
    auto code = code_of(s.code);
    if (code < 900) BOOST_TEST(codes.contains(code), "code " << code << " is not in PROTOCOL.md");
    BOOST_TEST(names.insert(s.name).second, "name " << s.name << " twice");
  }
}

BOOST_AUTO_TEST_CASE(codes_outside_the_table_still_get_a_text) {
  BOOST_TEST(std::string{status_text(3)} == wire::to_string(wire::errc::trailing_bytes));
  BOOST_TEST(std::string{status_text(777)} == "unknown status");
  BOOST_TEST(find_status(777) == nullptr);
  BOOST_TEST(find_status(110)->retryable);
  BOOST_TEST(!find_status(102)->retryable);
}

BOOST_AUTO_TEST_SUITE_END()
