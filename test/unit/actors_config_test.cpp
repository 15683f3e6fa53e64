// SPDX-License-Identifier: Apache-2.0
// The actors from a TOML file (plexus/actors/config.hpp): a file naming a
// timer, a file drop, a file sink and a gateway with a route runs them on
// a real node over a TCP broker; every kind of problem in a file is
// reported at once with its line, and a file with TOML problems adds
// nothing.
#define BOOST_TEST_MODULE plexus_actors_config
#include <boost/test/unit_test.hpp>

#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "plexus/actors/config.hpp"
#include "plexus/actors/files.hpp"
#include "plexus/actors/sinks.hpp"
#include "plexus/actors/timer.hpp"
#include "plexus/node.hpp"
#include "runtime_helpers.hpp"
#include "waiter.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using namespace plexus::actors;
using plexus::test::read_file;
using plexus::test::tcp_broker;
using plexus::test::temp_dir;
using plexus::test::waiter;
namespace fs = std::filesystem;

namespace {

/// What add_from_toml throws for `text` (and that it added nothing when `nothing_added`).
std::string refusal(const std::string& text, bool nothing_added = true) {
  service svc{"edge", {}};
  try {
    add_from_toml(svc, text, "actors.toml");
  } catch (const config_error& e) {
    if (nothing_added) BOOST_TEST(svc.functions().empty());
    return e.what();
  }
  BOOST_FAIL("add_from_toml took the file");
  return {};
}

bool has(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return true;
  BOOST_TEST_MESSAGE("not in the error: " << part << "\nerror: " << text);
  return false;
}

} // namespace

BOOST_AUTO_TEST_SUITE(actors_config)

BOOST_AUTO_TEST_CASE(a_file_with_a_timer_a_drop_a_sink_and_a_gateway_runs_them) {
  temp_dir d{"cfg"};
  fs::create_directories(d.path / "in");
  const auto file = d.path / "actors.toml";
  std::ofstream{file} << "[[timer]]\n"
                         "name = \"tick\"\n"
                         "schedule = \"@every 1h\"\n"
                         "topic = \"cfg.tick\"\n"
                         "missed = \"skip\"\n"
                         "\n[[files]]\n"
                         "name = \"in\"\n"
                         "dir = \"" << (d.path / "in").string() << "\"\n"
                         "topic = \"cfg.files\"\n"
                         "pattern = \"*.csv\"\n"
                         "\n[[file_sink]]\n"
                         "name = \"out\"\n"
                         "on = \"cfg.files\"\n"
                         "path = \"" << (d.path / "out.txt").string() << "\"\n"
                         "format = \"json_line\"\n"
                         "\n[[http]]\n"
                         "port = 0\n"
                         "json = false\n"
                         "[[http.route]]\n"
                         "path = \"/tick\"\n"
                         "topic = \"" << fire_now_topic("tick") << "\"\n"
                         "request = false\n";
  waiter w; // the timer's ticks, as a consumer sees them
  int ticks = 0;
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  auto& svc = n.service("edge");
  auto cfg = add_from_config(svc, file.string());
  std::vector<std::string> expect{function_name("tick"), file_drop_function_name("in"),
                                  file_sink_function_name("out")};
  BOOST_TEST(cfg.functions == expect, boost::test_tools::per_element());
  BOOST_TEST_REQUIRE(cfg.gateways.size() == 1u);

  n.service("watch").function("ticks").on("cfg.tick").handle([&](std::string_view, context&) -> result<void> {
    w.update([&] { ++ticks; });
    return {};
  });
  n.start();
  auto& gw = *cfg.gateways.front();
  gw.start(n.client());

  // The file drop publishes a dropped file, the file sink writes it out.
  std::ofstream{d.path / "in" / "a.csv"} << "1,ada";
  BOOST_TEST(w.until([&] { return read_file(d.path / "out.txt").find("cfg.files") != std::string::npos; }, 20s));
  BOOST_TEST(w.until([&] { return fs::exists(d.path / "in" / "done" / "a.csv"); }, 20s));

  // The gateway's configured route fires the timer now (an hour early).
  httplib::Client c{"127.0.0.1", gw.port()};
  auto res = c.Post("/tick", "", "application/octet-stream");
  BOOST_TEST_REQUIRE(static_cast<bool>(res));
  BOOST_TEST(res->status == 202);
  BOOST_TEST(w.until([&] { return ticks == 1; }, 20s));
  gw.stop();
  n.stop();
}

BOOST_AUTO_TEST_CASE(every_problem_is_named_with_its_line_and_nothing_is_added) {
  auto e = refusal("[[timer]]\n"                  // 1
                   "name = \"t\"\n"               // 2
                   "schedule = 5\n"               // 3: a string
                   "topic = \"x.tick\"\n"         // 4
                   "missed = \"sometimes\"\n"     // 5: not a policy
                   "shedule = \"@daily\"\n"       // 6: a typo
                   "\n[[files]]\n"                // 8
                   "name = \"f\"\n"               // 9
                   "max_in_flight = 0\n"          // 10: below 1
                   "\n[[http]]\n"                 // 12
                   "port = 70000\n"               // 13: not a port
                   "[[http.route]]\n"             // 14
                   "path = \"/x\"\n"              // 15
                   "requests = true\n"            // 16: a typo in a route
                   "\n[[cron]]\n"                 // 18: no such kind
                   "name = \"c\"\n");
  BOOST_TEST(has(e, "actors.toml: "));
  BOOST_TEST(has(e, "line 3: [[timer]] \"t\": schedule: a string"));
  BOOST_TEST(has(e, "line 5: [[timer]] \"t\": missed: one of \"skip\", \"catch_up\""));
  BOOST_TEST(has(e, "line 6: [[timer]] \"t\": shedule: unknown key (known: name, schedule, topic"));
  BOOST_TEST(has(e, "line 10: [[files]] \"f\": max_in_flight: a whole number in 1.."));
  BOOST_TEST(has(e, "line 13: [[http]] #1: port: a whole number in 0..65535"));
  BOOST_TEST(has(e, "line 16: [[http]] #1 route #1: requests: unknown key"));
  BOOST_TEST(has(e, "line 18: top level: cron: unknown key (known: timer, files, postgres, file_sink, webhook, http)"));
}

BOOST_AUTO_TEST_CASE(the_actors_own_checks_apply_to_a_file_too) {
  // Well-formed TOML whose options an actor refuses: its own words.
  auto e = refusal("[[timer]]\nname = \"t\"\nschedule = \"61 * * * *\"\ntopic = \"x.tick\"\n"
                   "\n[[webhook]]\nname = \"w\"\non = \"x.out\"\nurl = \"ftp://example.com\"\n"
                   "\n[[http]]\nport = 0\nmax_timeout_ms = 1\ndefault_timeout_ms = 5\n",
                   false);
  BOOST_TEST(has(e, "timer \"t\": schedule"));
  BOOST_TEST(has(e, "webhook \"w\": url"));
  BOOST_TEST(has(e, "http gateway: "));
}

BOOST_AUTO_TEST_CASE(a_syntax_error_or_a_missing_file_is_a_config_error_with_its_place) {
  auto e = refusal("[[timer]\nname = \"t\"\n");
  BOOST_TEST(has(e, "actors.toml: line 1: "));
  service svc{"edge", {}};
  BOOST_CHECK_EXCEPTION(add_from_config(svc, "/nonexistent/actors.toml"), config_error,
                        [](const config_error& x) { return has(x.what(), "/nonexistent/actors.toml"); });
}

BOOST_AUTO_TEST_SUITE_END()
