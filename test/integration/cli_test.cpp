// SPDX-License-Identifier: Apache-2.0
// The command-line tools as a user runs them: exit codes and messages of
// `plexus` and `plexus-broker`, clean shutdown on SIGTERM.
#include <algorithm>
#include <fstream>
#include <future>

#include <msgpack.hpp>

#include "harness.hpp"

using namespace plexus::itest;
using plexus::client;
using plexus::publish_options;
namespace wire = plexus::wire;

namespace {

// A confirmed publish until the broker confirms it with 0: then the
// subscriber the test started is in, and has this message.
void publish_until_delivered(client& c, const std::string& topic, const std::string& payload,
                             const publish_options& o = {}) {
  BOOST_REQUIRE(poll_until([&] {
    auto code = std::make_shared<std::promise<std::uint32_t>>();
    auto f = code->get_future();
    c.publish_confirmed(topic, payload, [code](std::uint32_t k) { code->set_value(k); }, o);
    return f.wait_for(default_wait) == std::future_status::ready && f.get() == 0;
  }));
}

std::size_t lines_in(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }

// What GLIBC_TUNABLES says in a running process's environment ("" when unset).
std::string tunables_of(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/environ", std::ios::binary};
  std::string entry;
  while (std::getline(in, entry, '\0'))
    if (entry.starts_with("GLIBC_TUNABLES=")) return entry.substr(15);
  return {};
}

// Whether the kernel gives transparent huge pages to a process that asks.
bool thp_available() {
  std::ifstream in{"/sys/kernel/mm/transparent_hugepage/enabled"};
  std::string modes;
  std::getline(in, modes);
  return !modes.empty() && modes.find("[never]") == std::string::npos;
}

} // namespace

BOOST_AUTO_TEST_SUITE(cli)

BOOST_AUTO_TEST_CASE(plexus_pub_gives_up_on_an_unreachable_broker_with_a_message) {
  auto start = std::chrono::steady_clock::now();
  auto r = run({cli_bin, "--broker", "tcp://127.0.0.1:1", "--connect-timeout", "300ms", "pub", "a", "b"});
  auto took = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
  BOOST_TEST(r.code == 1);
  BOOST_TEST(lines_in(r.err) == 1u, "stderr: " << r.err);
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

// The broker starts itself again once with glibc's huge-page switch for
// malloc (README, "Try the broker"), and leaves an environment that names
// the switch as it is: that is how it is turned off.
BOOST_AUTO_TEST_CASE(plexus_broker_asks_for_huge_pages_for_its_heap_unless_told_not_to) {
  // The brokers start from this process's environment: without the
  // variable, whatever the test was run with (it is put back after).
  struct restore_tunables {
    std::optional<std::string> saved;
    restore_tunables() {
      if (const char* t = std::getenv("GLIBC_TUNABLES")) saved = t;
      ::unsetenv("GLIBC_TUNABLES");
    }
    ~restore_tunables() {
      if (saved) ::setenv("GLIBC_TUNABLES", saved->c_str(), 1);
    }
  } restore;
  {
    // Set before the fork, for the child: no client (no other thread) exists yet.
    ::setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=0", 1);
    broker_process off;
    ::unsetenv("GLIBC_TUNABLES");
    BOOST_TEST(tunables_of(off.process().pid()) == "glibc.malloc.hugetlb=0");
  }
  broker_process broker;
  const auto tunables = tunables_of(broker.process().pid());
#if defined(__SANITIZE_ADDRESS__)
  BOOST_TEST(tunables.empty(), "ASan's allocator is not glibc's: " << tunables);
#else
  if (thp_available()) BOOST_TEST(tunables == "glibc.malloc.hugetlb=1");
  else BOOST_TEST(tunables.empty(), "THP is off in this kernel: " << tunables);
#endif
  auto c = broker.connect(); // and it serves as before
  sync_with_broker(*c);
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

BOOST_AUTO_TEST_CASE(a_garbage_broker_endpoint_is_one_line_and_exit_2_after_any_subcommand) {
  // --broker after the subcommand, for each of them: parsed, and refused
  // before anything starts (it used to abort with a core dump).
  std::vector<std::vector<std::string>> commands = {
    {"pub", "t", "x"}, {"sub", "t", "--count", "1"}, {"req", "t", "x"},
    {"trace", "--count", "1"}, {"graph"}, {"top", "--once"}};
  for (auto endpoint : {"nonsense", "tcp://host:notaport"}) {
    for (auto& cmd : commands) {
      std::vector<std::string> args{cli_bin};
      args.insert(args.end(), cmd.begin(), cmd.end());
      args.insert(args.end(), {"--broker", endpoint});
      auto r = run(args);
      BOOST_TEST(r.code == 2, cmd[0] << " --broker " << endpoint << ": exit " << r.code << ", stderr: " << r.err);
      BOOST_TEST(lines_in(r.err) == 1u, cmd[0] << ": " << r.err);
      BOOST_TEST(r.err.find("plexus: bad broker endpoint '" + std::string{endpoint} + "'") == 0u,
                 cmd[0] << ": " << r.err);
    }
  }
}

BOOST_AUTO_TEST_CASE(plexus_pub_refuses_a_payload_over_the_brokers_max_payload_plain_or_confirmed) {
  broker_process broker{{"--max-payload", "1024"}};
  std::string big(2000, 'x');
  for (bool confirm : {false, true}) {
    std::vector<std::string> args{cli_bin, "--broker", broker.endpoint(), "pub", "t", big};
    if (confirm) args.push_back("--confirm");
    auto start = std::chrono::steady_clock::now();
    auto r = run(args);
    auto took = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
    BOOST_TEST(r.code == 1, "confirm " << confirm << ": stderr: " << r.err);
    BOOST_TEST(r.err == "plexus: payload is 2000 bytes; the broker's max_payload is 1024\n",
               "confirm " << confirm);
    BOOST_TEST(took.count() < 5000, "took " << took.count() << " ms"); // not the 30 s confirm wait
  }
  auto ok = run({cli_bin, "--broker", broker.endpoint(), "pub", "t", std::string(1024, 'x')});
  BOOST_TEST(ok.code == 0, "stderr: " << ok.err);
}

BOOST_AUTO_TEST_CASE(plexus_pub_on_a_reserved_topic_says_the_brokers_reason_and_exits_1) {
  broker_process broker;
  auto plain = run({cli_bin, "--broker", broker.endpoint(), "pub", "$SYS.broker.x", "hi"});
  BOOST_TEST(plain.code == 1, "stderr: " << plain.err);
  BOOST_TEST(lines_in(plain.err) == 1u, "stderr: " << plain.err);
  BOOST_TEST(plain.err.find("clients may not publish on $SYS.broker.") != std::string::npos, // the broker's words
             "stderr: " << plain.err);
  auto confirmed = run({cli_bin, "--broker", broker.endpoint(), "pub", "$SYS.broker.x", "hi", "--confirm"});
  BOOST_TEST(confirmed.code == 1, "stderr: " << confirmed.err);
  BOOST_TEST(confirmed.err.find("forbidden") != std::string::npos, "stderr: " << confirmed.err);
  // And a publish the broker takes still exits 0, with nothing said.
  auto fine = run({cli_bin, "--broker", broker.endpoint(), "pub", "cli.fine", "hi"});
  BOOST_TEST(fine.code == 0, "stderr: " << fine.err);
  BOOST_TEST(fine.err.empty(), "stderr: " << fine.err);
}

BOOST_AUTO_TEST_CASE(plexus_sub_shows_a_dead_letters_headers_and_msgpack_as_json) {
  broker_process broker;
  spawn_options so;
  so.args = {cli_bin, "--broker", broker.endpoint(), "sub", "$DLQ.>", "--count", "1"};
  so.out = redirect::pipe;
  child_process sub{so};
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk{buf};
  pk.pack_map(3);
  pk.pack(std::string{"order"});
  pk.pack(42);
  pk.pack(std::string{"items"});
  pk.pack(std::vector<std::string>{"a", "b\"c"});
  pk.pack(std::string{"ok"});
  pk.pack(true);
  std::string packed_headers;
  std::vector<std::pair<std::string_view, std::string_view>> pairs{{"plexus-dlq-reason", "handler crashed"}};
  publish_options o;
  o.headers = wire::pack_string_map(pairs, packed_headers);
  auto probe = broker.connect();
  publish_until_delivered(*probe, "$DLQ.orders.new", std::string{buf.data(), buf.size()}, o);
  BOOST_TEST(sub.read_line(default_wait).value_or("<nothing>")
             == R"($DLQ.orders.new: {"order":42,"items":["a","b\"c"],"ok":true})");
  BOOST_TEST(sub.read_line(default_wait).value_or("<nothing>") == "  plexus-dlq-reason: handler crashed");
  BOOST_TEST(sub.wait(default_wait).value_or(-1) == 0);
}

BOOST_AUTO_TEST_CASE(plexus_sub_prints_headers_only_when_asked_outside_the_dead_letters) {
  broker_process broker;
  auto probe = broker.connect();
  std::string packed_headers;
  std::vector<std::pair<std::string_view, std::string_view>> pairs{{"k", "v"}};
  publish_options o;
  o.headers = wire::pack_string_map(pairs, packed_headers);
  for (bool asked : {false, true}) {
    spawn_options so;
    so.args = {cli_bin, "--broker", broker.endpoint(), "sub", "cli.h", "--count", "1"};
    if (asked) so.args.push_back("--headers");
    so.out = redirect::pipe;
    child_process sub{so};
    publish_until_delivered(*probe, "cli.h", "probe", o);
    BOOST_TEST(sub.read_line(default_wait).value_or("<nothing>") == "cli.h: probe");
    BOOST_TEST(sub.wait(default_wait).value_or(-1) == 0); // --count 1: all it prints is out
    auto next = sub.read_line(1s); // the pipe is closed: returns at once
    BOOST_TEST(next.value_or("<nothing>") == (asked ? "  k: v" : "<nothing>"), "--headers " << asked);
  }
}

BOOST_AUTO_TEST_CASE(numeric_options_show_their_type_in_help) {
  for (std::string cmd : {"pub", "sub", "req", "trace", "graph", "top"}) {
    auto r = run({cli_bin, cmd, "--help"});
    BOOST_TEST(r.code == 0);
    // Every option that takes a value names its type: a count, a duration, ...
    for (auto opt : {"--count", "--connect-timeout", "--timeout", "--wait", "--window", "--interval"}) {
      auto at = r.out.find(std::string{opt} + " ");
      if (at == std::string::npos) continue;
      auto type = r.out.substr(at + std::string{opt}.size() + 1, 4);
      BOOST_TEST(type != "TEXT", cmd << " " << opt << " shows TEXT:\n" << r.out);
    }
  }
  auto top = run({cli_bin, "--help"});
  BOOST_TEST(top.out.find("--connect-timeout DURATION") != std::string::npos, top.out);
  auto sub = run({cli_bin, "sub", "--help"});
  BOOST_TEST(sub.out.find("--count UINT") != std::string::npos, sub.out);
}

BOOST_AUTO_TEST_SUITE_END()
