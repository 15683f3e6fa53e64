// SPDX-License-Identifier: Apache-2.0
// A node program (the shipping sample) told something wrong on its command
// line, or whose handlers crash, as its user sees it: one line on stderr
// naming the problem and an exit code, never an abort; a line per crash,
// and a summary once crashes come faster than the line limit.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <regex>

#include "harness.hpp"

using namespace plexus::itest;

namespace {

const std::string shipping_bin = PLEXUS_SHIPPING_BIN;

std::size_t lines_in(const std::string& s) {
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

// A TCP socket listening on 127.0.0.1 as cpp-httplib's did (SO_REUSEADDR
// and SO_REUSEPORT): another such socket could bind the same port.
class listener {
public:
  listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    BOOST_REQUIRE(fd_ >= 0);
    int yes = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEPORT, &yes, sizeof yes);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    BOOST_REQUIRE(::listen(fd_, 4) == 0);
    socklen_t len = sizeof a;
    BOOST_REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
  }
  ~listener() { ::close(fd_); }
  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;
  [[nodiscard]] int port() const noexcept { return port_; }

private:
  int fd_ = -1;
  int port_ = 0;
};

// Whether something accepts TCP connections on 127.0.0.1:port.
bool accepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

} // namespace

BOOST_AUTO_TEST_SUITE(node_start)

// The node's standard flags in --help: numbers show their type, so a user
// knows what to give (the sample's own flags follow them).
BOOST_AUTO_TEST_CASE(help_shows_the_type_of_every_standard_flag) {
  spawn_options o;
  o.args = {shipping_bin, "--help"};
  o.out = redirect::pipe;
  o.err = redirect::null;
  child_process p{o};
  std::string help;
  while (auto line = p.read_line(default_wait)) help += *line + "\n";
  BOOST_TEST(p.wait(default_wait).value_or(-1) == 0);
  for (const char* want : {"--broker TEXT", "--duration UINT=0", "--drain-timeout FLOAT=10",
                           "--metrics-port INT=0", "--trace-sample FLOAT=0.01",
                           "--on-failure TEXT:{restart,stop}=restart", "--rate FLOAT=500",
                           "--poison-every UINT=0", "--outbox FILE=shipping-outbox.txt"})
    BOOST_TEST(help.find(want) != std::string::npos, "no '" << want << "' in:\n" << help);
}

// Needs plexus::client to refuse a malformed endpoint with
// std::invalid_argument in its constructor (before that, the client's I/O
// thread threw and the process aborted).
BOOST_AUTO_TEST_CASE(a_malformed_broker_endpoint_is_one_line_and_exit_2) {
  auto r = run_node({"--broker", "nonsense", "--duration", "1"});
  BOOST_TEST(r.code == 2, "stderr: " << r.err);
  BOOST_TEST(lines_in(r.err) == 1u, "stderr: " << r.err);
  BOOST_TEST(r.err.find("--broker: ") != std::string::npos, "stderr: " << r.err);
  BOOST_TEST(r.err.find("'nonsense'") != std::string::npos, "stderr: " << r.err);
}

BOOST_AUTO_TEST_CASE(an_unreachable_broker_is_one_line_and_exit_1_after_the_connect_timeout) {
  auto r = run_node({"--broker", "tcp://127.0.0.1:1", "--duration", "1"});
  BOOST_TEST(r.code == 1, "stderr: " << r.err);
  BOOST_TEST(lines_in(r.err) == 1u, "stderr: " << r.err);
  BOOST_TEST(r.err.find("no answer from broker at tcp://127.0.0.1:1") != std::string::npos,
             "stderr: " << r.err);
}

BOOST_AUTO_TEST_CASE(a_metrics_port_another_socket_listens_on_is_refused_with_exit_2) {
  listener taken;
  auto port = std::to_string(taken.port());
  auto r = run_node({"--metrics-port", port, "--duration", "1"});
  BOOST_TEST(r.code == 2, "stderr: " << r.err);
  BOOST_TEST(lines_in(r.err) == 1u, "stderr: " << r.err);
  BOOST_TEST(r.err.find("metrics port " + port + ": port in use") != std::string::npos,
             "stderr: " << r.err);
}

BOOST_AUTO_TEST_CASE(a_second_node_on_the_same_metrics_port_is_refused_and_the_first_serves_on) {
  int port = 0;
  {
    listener probe; // a port free a moment ago
    port = probe.port();
  }
  spawn_options o;
  o.args = {shipping_bin, "--metrics-port", std::to_string(port), "--duration", "20"};
  o.out = redirect::null;
  o.err = redirect::null;
  child_process first{o};
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return accepts(port) || !first.running(); }) && first.running(),
                        "the first node never served metrics on " << port);
  auto r = run_node({"--metrics-port", std::to_string(port), "--duration", "1"});
  BOOST_TEST(r.code == 2, "stderr: " << r.err);
  BOOST_TEST(r.err.find("metrics port " + std::to_string(port) + ": port in use") != std::string::npos,
             "stderr: " << r.err);
  BOOST_TEST(first.running());
  BOOST_TEST(accepts(port));
  first.signal(SIGTERM);
  BOOST_TEST(first.wait(default_wait).value_or(-1) == 0);
}

// plexus-broker binds its /metrics the same way (one function for both).
BOOST_AUTO_TEST_CASE(a_broker_on_a_metrics_port_in_use_says_so_and_exits) {
  listener taken;
  auto port = std::to_string(taken.port());
  spawn_options o;
  o.args = {broker_bin, "--listen", "tcp://127.0.0.1:*", "--metrics-port", port};
  o.out = redirect::null;
  o.err = redirect::pipe;
  child_process broker{o};
  auto err = broker.read_stderr(default_wait);
  auto code = broker.wait(default_wait);
  BOOST_REQUIRE_MESSAGE(code, "plexus-broker kept running on a taken metrics port");
  BOOST_TEST(*code == 1, "stderr: " << err);
  BOOST_TEST(err == "plexus-broker: metrics port " + port + ": port in use\n");
}

// Every 3rd order crashes validation until it is quarantined (3
// deliveries): ~200 crashes a second, far past the line limit.
BOOST_AUTO_TEST_CASE(each_crash_is_a_line_with_its_message_and_trace_and_a_storm_is_summarised) {
  temp_file err{"plexus-itest-crashes"};
  spawn_options o;
  o.args = {shipping_bin, "--duration", "3", "--rate", "200", "--poison-every", "3"};
  o.out = redirect::null;
  o.err = redirect::file;
  o.err_path = err.path();
  child_process p{o};
  BOOST_REQUIRE(p.wait(20s).value_or(-1) == 0);
  const std::regex crash_line{R"(\S+Z error shipping\.validate-address msg=\S+ trace=[0-9a-f]{32} )"
                              R"(crashed: address parser crashed on order [0-9]+)"};
  const std::regex summary_line{R"(\S+Z error plexus node: \.\.\. and ([0-9]+) more crashes in the )"
                                R"(last second \(at most 10 lines a second\))"};
  std::size_t crashes = 0, summaries = 0, summarised = 0;
  std::vector<std::string> others;
  for (auto& line : complete_lines(err.path())) {
    std::smatch m;
    if (std::regex_match(line, crash_line)) {
      ++crashes;
    } else if (std::regex_match(line, m, summary_line)) {
      ++summaries;
      summarised += std::stoul(m[1]);
    } else {
      others.push_back(line);
    }
  }
  BOOST_TEST(crashes >= 10u);
  BOOST_TEST(summaries >= 1u);
  // At most 10 lines in each one-second window: 3 s of crashes (and the
  // windows' edges) leave room for 5 windows at most.
  BOOST_TEST(crashes <= 50u);
  BOOST_TEST(summarised > crashes, "the storm was mostly summarised");
  BOOST_TEST(others.empty(), "unexpected stderr line: " << (others.empty() ? "" : others.front()));
}

BOOST_AUTO_TEST_SUITE_END()
