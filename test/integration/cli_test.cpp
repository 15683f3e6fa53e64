// SPDX-License-Identifier: Apache-2.0
// The command-line tools as a user runs them: exit codes and messages of
// `plexus` and `plexus-broker`, clean shutdown on SIGTERM.
#include <algorithm>
#include <fstream>
#include <future>

#include "harness.hpp"

using namespace plexus::itest;

namespace {

struct outcome {
  int code = -1;
  std::string out, err;
};

// Runs a program to completion (within 10 s) and collects what it printed.
outcome run(std::vector<std::string> args) {
  spawn_options o;
  o.args = std::move(args);
  o.out = redirect::pipe;
  o.err = redirect::pipe;
  child_process p{o};
  outcome r;
  auto code = p.wait(default_wait);
  BOOST_REQUIRE_MESSAGE(code, o.args[0] << " did not exit within 10 s");
  r.code = *code;
  r.err = p.read_stderr(1s);
  while (auto line = p.read_line(0ms)) r.out += *line + "\n";
  return r;
}

std::size_t lines_in(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }

} // namespace

BOOST_AUTO_TEST_SUITE(cli)

BOOST_AUTO_TEST_CASE(plexus_pub_gives_up_on_an_unreachable_broker_with_a_message) {
  auto start = std::chrono::steady_clock::now();
  auto r = run({cli_bin, "--broker", "tcp://127.0.0.1:1", "--connect-timeout", "300ms", "pub", "a", "b"});
  auto took = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
  BOOST_TEST(r.code != 0);
  BOOST_TEST(r.err.find("no answer from broker") != std::string::npos, "stderr: " << r.err);
  BOOST_TEST(took.count() < 5000, "took " << took.count() << " ms with a 300 ms connect timeout");
}

BOOST_AUTO_TEST_CASE(plexus_broker_rejects_a_heartbeat_out_of_range_with_one_line) {
  auto r = run({broker_bin, "--heartbeat-ms", "5"});
  BOOST_TEST(r.code == 2);
  BOOST_TEST(lines_in(r.err) == 1u, "stderr: " << r.err);
  BOOST_TEST(r.err.find("heartbeat-ms") != std::string::npos, "stderr: " << r.err);
  BOOST_TEST(r.out.empty(), "stdout: " << r.out);
}

BOOST_AUTO_TEST_CASE(plexus_broker_rejects_a_config_file_with_an_unknown_key) {
  temp_file config{"plexus-itest-config"};
  {
    std::ofstream f{config.path()};
    f << "heartbeat_ms = 500\nheartbeet_ms = 500\n";
  }
  auto r = run({broker_bin, "--config", config.path()});
  BOOST_TEST(r.code == 2);
  BOOST_TEST(r.err.find("heartbeet_ms") != std::string::npos, "stderr: " << r.err);
  BOOST_TEST(lines_in(r.err) == 1u, "stderr: " << r.err);
}

BOOST_AUTO_TEST_CASE(plexus_broker_exits_cleanly_on_sigterm_with_a_client_connected) {
  broker_process broker;
  auto c = broker.connect();
  sync_with_broker(*c);
  broker.process().signal(SIGTERM);
  auto code = broker.process().wait(default_wait);
  BOOST_REQUIRE_MESSAGE(code, "plexus-broker still running 10 s after SIGTERM");
  BOOST_TEST(*code == 0);
}

BOOST_AUTO_TEST_CASE(plexus_sub_prints_what_plexus_pub_publishes) {
  broker_process broker;
  spawn_options so;
  so.args = {cli_bin, "--broker", broker.endpoint(), "sub", "cli.t", "--count", "2", "--raw"};
  so.out = redirect::pipe;
  child_process sub{so};
  // Subscribed once a confirmed publish is no longer "no interest": that
  // probe is the first of the two messages it waits for.
  auto probe = broker.connect();
  BOOST_REQUIRE(poll_until([&] {
    auto code = std::make_shared<std::promise<std::uint32_t>>();
    auto f = code->get_future();
    probe->publish_confirmed("cli.t", "probe", [code](std::uint32_t c) { code->set_value(c); });
    return f.wait_for(default_wait) == std::future_status::ready && f.get() == 0;
  }));
  auto pub = run({cli_bin, "--broker", broker.endpoint(), "pub", "cli.t", "hello from the shell"});
  BOOST_TEST(pub.code == 0, "plexus pub: " << pub.err);
  BOOST_TEST(sub.read_line(default_wait).value_or("<nothing>") == "probe");
  BOOST_TEST(sub.read_line(default_wait).value_or("<nothing>") == "hello from the shell");
  BOOST_TEST(sub.wait(default_wait).value_or(-1) == 0); // --count 2 reached

  auto req = run({cli_bin, "--broker", broker.endpoint(), "req", "cli.nobody", "x", "--timeout", "5s"});
  BOOST_TEST(req.code == 1);
  BOOST_TEST(req.err.find("no responders") != std::string::npos, "stderr: " << req.err);
}

BOOST_AUTO_TEST_SUITE_END()
