// SPDX-License-Identifier: Apache-2.0
// CurveZMQ and the broker's auth file (issue #18), as a user sets them up:
// keys made with `plexus keys`, a plexus-broker with --auth, clients and
// the CLI with credentials files. Only listed keys get a session; a
// user's permissions hold.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <future>

#include <zmq.hpp>

#include "harness.hpp"
#include "plexus/creds.hpp"

using namespace plexus::itest;
using plexus::client;
using plexus::client_options;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in{path};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

/// A scratch folder with a broker key pair, users alice (may publish and
/// subscribe orders.> and its inbox) and mallory (keys made, not listed),
/// and the auth file naming them: all made with the CLI.
class keyring {
public:
  keyring() {
    dir_ = (std::filesystem::temp_directory_path()
            / ("plexus-auth-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++)))
             .string();
    std::filesystem::create_directories(dir_);
    auto b = run({cli_bin, "keys", "broker", path("broker")});
    BOOST_REQUIRE_MESSAGE(b.code == 0, b.err);
    broker_public = first_line(b.out);
    BOOST_REQUIRE(plexus::is_z85_key(broker_public));
    alice_public = user("alice", path("broker.pub"));
    (void)user("mallory", path("broker.pub"));
    std::ofstream f{path("auth.toml")};
    f << "secret_key_file = \"broker.key\"\n"
         "[[users]]\n"
         "name = \"alice\"\n"
         "public_key = \"" << alice_public << "\"\n"
         "publish_allow = [\"orders.>\", \"$itest.>\"] # $itest: sync_with_broker\n"
         "subscribe_allow = [\"orders.>\"]\n";
  }
  ~keyring() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  keyring(const keyring&) = delete;
  keyring& operator=(const keyring&) = delete;

  [[nodiscard]] std::string path(const std::string& name) const { return dir_ + "/" + name; }

  std::string user(const std::string& name, const std::string& broker_key) {
    auto u = run({cli_bin, "keys", "user", path(name), "--broker-key", broker_key});
    BOOST_REQUIRE_MESSAGE(u.code == 0, u.err);
    return first_line(u.out);
  }

  std::string broker_public, alice_public;

private:
  static std::atomic<int>& counter() {
    static std::atomic<int> n{0};
    return n;
  }
  std::string dir_;
};

client_options options_for(const broker_process& b, const std::string& creds_path) {
  client_options o;
  o.endpoint = b.endpoint();
  o.connect_timeout = 1500ms;
  if (!creds_path.empty()) {
    auto c = plexus::read_credentials(creds_path);
    o.curve_public_key = c.public_key;
    o.curve_secret_key = c.secret_key;
    o.curve_server_key = c.broker_key;
  }
  return o;
}

} // namespace

BOOST_AUTO_TEST_SUITE(auth)

BOOST_AUTO_TEST_CASE(a_listed_user_connects_publishes_and_receives) {
  keyring keys;
  broker_process b{{"--auth", keys.path("auth.toml")}};
  collector got;
  client alice{options_for(b, keys.path("alice.creds"))};
  alice.subscribe("orders.>", got.handler());
  sync_with_broker(alice);
  alice.publish("orders.new", "from alice");
  // The CLI with the same credentials file (--creds).
  auto r = run({cli_bin, "--broker", b.endpoint(), "--creds", keys.path("alice.creds"), "pub",
                "orders.cli", "from the cli", "--confirm"});
  BOOST_TEST(r.code == 0, r.err);
  BOOST_REQUIRE(got.wait_count(2));
  BOOST_TEST(got.payloads() == (std::vector<std::string>{"from alice", "from the cli"}));
}

BOOST_AUTO_TEST_CASE(plaintext_and_unknown_keys_never_get_a_session) {
  keyring keys;
  broker_process b{{"--auth", keys.path("auth.toml")}};
  BOOST_CHECK_THROW(client{options_for(b, "")}, plexus::connect_error);
  try {
    client mallory{options_for(b, keys.path("mallory.creds"))};
    BOOST_FAIL("mallory got a session");
  } catch (const plexus::connect_error& e) {
    BOOST_TEST(std::string{e.what()}.find("refused") != std::string::npos, e.what());
  }
  for (auto creds : {std::string{}, keys.path("mallory.creds")}) {
    std::vector<std::string> args{cli_bin, "--broker", b.endpoint(), "--connect-timeout", "1s"};
    if (!creds.empty()) args.insert(args.end(), {"--creds", creds});
    args.insert(args.end(), {"pub", "orders.x", "y"});
    auto r = run(args);
    BOOST_TEST(r.code == 1, r.err);
    BOOST_TEST(r.err.find("no answer from broker") != std::string::npos, r.err);
  }
  // What they tried never reached a subscriber: alice, listed, hears nothing.
  collector got;
  client alice{options_for(b, keys.path("alice.creds"))};
  alice.subscribe("orders.>", got.handler());
  sync_with_broker(alice);
  alice.publish("orders.marker", "m");
  BOOST_REQUIRE(got.wait_count(1));
  BOOST_TEST(got.payloads() == std::vector<std::string>{"m"});
}

BOOST_AUTO_TEST_CASE(a_wrong_broker_key_fails_the_handshake) {
  keyring keys;
  auto other = run({cli_bin, "keys", "broker", keys.path("other")});
  BOOST_REQUIRE(other.code == 0);
  // alice's key pair, but another broker's public key.
  auto c = plexus::read_credentials(keys.path("alice.creds"));
  c.broker_key = first_line(other.out);
  {
    std::ofstream f{keys.path("wrong.creds")};
    f << plexus::format_credentials(c);
  }
  broker_process b{{"--auth", keys.path("auth.toml")}};
  BOOST_CHECK_THROW(client{options_for(b, keys.path("wrong.creds"))}, plexus::connect_error);
  auto r = run({cli_bin, "--broker", b.endpoint(), "--connect-timeout", "1s", "--creds",
                keys.path("wrong.creds"), "pub", "orders.x", "y"});
  BOOST_TEST(r.code == 1, r.err);
}

BOOST_AUTO_TEST_CASE(a_user_may_not_publish_outside_its_permissions) {
  keyring keys;
  broker_process b{{"--auth", keys.path("auth.toml")}};
  auto r = run({cli_bin, "--broker", b.endpoint(), "--creds", keys.path("alice.creds"), "pub",
                "$SYS.x", "nope", "--confirm"});
  BOOST_TEST(r.code == 1);
  BOOST_TEST(r.err.find("permission denied") != std::string::npos, r.err);
  client alice{options_for(b, keys.path("alice.creds"))};
  auto code = std::make_shared<std::promise<std::uint32_t>>();
  auto f = code->get_future();
  alice.publish_confirmed("billing.x", "nope", [code](std::uint32_t k) { code->set_value(k); });
  BOOST_REQUIRE(f.wait_for(default_wait) == std::future_status::ready);
  BOOST_TEST(f.get() == static_cast<std::uint32_t>(plexus::status::permission_denied));
}

BOOST_AUTO_TEST_CASE(keys_are_not_overwritten_without_force_and_secrets_are_private) {
  keyring keys;
  auto before = slurp(keys.path("broker.key"));
  auto again = run({cli_bin, "keys", "broker", keys.path("broker")});
  BOOST_TEST(again.code == 1);
  BOOST_TEST(again.err.find("exists") != std::string::npos, again.err);
  BOOST_TEST(std::count(again.err.begin(), again.err.end(), '\n') == 1);
  BOOST_TEST(slurp(keys.path("broker.key")) == before);
  auto user_again = run({cli_bin, "keys", "user", keys.path("alice"), "--broker-key",
                         keys.path("broker.pub")});
  BOOST_TEST(user_again.code == 1);
  for (auto* f : {"broker.key", "alice.creds"}) {
    struct stat st{};
    BOOST_REQUIRE(::stat(keys.path(f).c_str(), &st) == 0);
    BOOST_TEST((st.st_mode & 0777) == 0600u, f);
  }
  auto forced = run({cli_bin, "keys", "broker", keys.path("broker"), "--force"});
  BOOST_TEST(forced.code == 0, forced.err);
  BOOST_TEST(slurp(keys.path("broker.key")) != before);
}

BOOST_AUTO_TEST_CASE(a_bad_credentials_file_is_one_line_and_exit_2) {
  keyring keys;
  {
    std::ofstream f{keys.path("bad.creds")};
    f << "user = \"x\"\npublic_key = \"short\"\n";
  }
  for (auto* file : {"bad.creds", "missing.creds"}) {
    auto r = run({cli_bin, "--broker", "tcp://127.0.0.1:1", "--creds", keys.path(file), "pub", "a", "b"});
    BOOST_TEST(r.code == 2, file);
    BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, r.err);
    BOOST_TEST(r.err.find(file) != std::string::npos, r.err);
  }
  // And the broker's --auth naming a file that is not there.
  auto broker = run({broker_bin, "--auth", keys.path("nope.toml")});
  BOOST_TEST(broker.code == 2);
  BOOST_TEST(broker.err.find("nope.toml") != std::string::npos, broker.err);
}

BOOST_AUTO_TEST_CASE(a_node_connects_with_creds_and_not_without) {
  keyring keys;
  {
    // alice without limits: a node publishes and subscribes on topics of its own.
    std::ofstream f{keys.path("open.toml")};
    f << "secret_key_file = \"broker.key\"\n[[users]]\nname = \"alice\"\npublic_key = \""
      << keys.alice_public << "\"\n";
  }
  broker_process b{{"--auth", keys.path("open.toml")}};
  auto ok = run_node({"--broker", b.endpoint(), "--creds", keys.path("alice.creds"), "--duration", "1"});
  BOOST_TEST(ok.code == 0, ok.err);
  auto plain = run_node({"--broker", b.endpoint(), "--duration", "1"});
  BOOST_TEST(plain.code == 1, plain.err); // exit_start_failed: no answer
  auto missing = run_node({"--broker", b.endpoint(), "--creds", keys.path("nope.creds")});
  BOOST_TEST(missing.code == 2, missing.err); // exit_bad_config
  BOOST_TEST(missing.err.find("--creds") != std::string::npos, missing.err);
}

BOOST_AUTO_TEST_CASE(brokers_sharing_the_key_link_and_an_unlisted_link_key_is_refused) {
  keyring keys;
  {
    std::ofstream f{keys.path("cluster.secret")};
    f << "a cluster secret of 32 bytes...\n";
  }
  std::vector<std::string> common{"--auth", keys.path("auth.toml"), "--cluster-secret-file",
                                  keys.path("cluster.secret")};
  broker_process b{{common.begin(), common.end()}};
  auto with_peer = common;
  with_peer.insert(with_peer.end(), {"--id", "a", "--peer", b.endpoint()});
  broker_process a{with_peer};
  // mallory's keys are no peer's: her broker's link to b is refused.
  auto refused = common;
  refused.insert(refused.end(), {"--id", "m", "--peer", b.endpoint(), "--creds", keys.path("mallory.creds")});
  broker_process m{refused};

  collector got;
  client on_b{options_for(b, keys.path("alice.creds"))};
  on_b.subscribe("orders.>", got.handler());
  sync_with_broker(on_b);
  client on_a{options_for(a, keys.path("alice.creds"))};
  client on_m{options_for(m, keys.path("alice.creds"))};
  // Until the link is up and b's interest known at a, a's copy goes nowhere.
  BOOST_REQUIRE(poll_until([&] {
    on_a.publish("orders.across", "via a");
    return got.size() > 0;
  }, default_wait, 50ms));
  // m's link to b was refused (its log says so) and m has no other: what
  // m takes, once it has handled it, has gone nowhere.
  bool refused_line = false;
  while (!refused_line)
    if (auto line = m.process().read_line(default_wait))
      refused_line = line->find("link to peer " + b.endpoint() + " refused") != std::string::npos;
    else
      break;
  BOOST_REQUIRE_MESSAGE(refused_line, "m never said its link to b was refused");
  on_m.publish("orders.across", "via m");
  sync_with_broker(on_m);
  sync_with_broker(on_b);
  for (auto& p : got.payloads()) BOOST_TEST(p == "via a");
}

// Secure by default: an address other machines can reach needs --auth, or
// --insecure saying so in so many words; loopback stays open.
BOOST_AUTO_TEST_CASE(a_broker_reachable_from_outside_needs_auth_or_insecure) {
  for (const char* listen : {"tcp://0.0.0.0:*", "tcp://*:*"}) {
    auto r = run({broker_bin, "--listen", listen});
    BOOST_TEST(r.code == 2, listen << ": " << r.err);
    BOOST_TEST(r.err.find("is reachable from other machines and there is no --auth") != std::string::npos,
               r.err);
    BOOST_TEST(r.err.find("--insecure") != std::string::npos, r.err);
  }
  // --insecure starts it, and it says so in its log.
  spawn_options o;
  o.args = {broker_bin, "--listen", "tcp://0.0.0.0:*", "--insecure"};
  o.out = redirect::pipe;
  o.err = redirect::pipe;
  child_process open_broker{o};
  auto line = open_broker.read_line(default_wait);
  BOOST_TEST_REQUIRE(line.has_value());
  BOOST_TEST(line->starts_with("listening on tcp://0.0.0.0:"), *line);
  bool warned = false; // its log (stdout) says it at once, then each minute
  for (int i = 0; i < 5 && !warned; ++i)
    if (auto l = open_broker.read_line(default_wait)) warned = l->find("--insecure") != std::string::npos;
  BOOST_TEST(warned);
  open_broker.signal(SIGTERM);
  BOOST_TEST(open_broker.wait(default_wait).value_or(-1) == 0);
  // Loopback needs neither.
  auto loop = run({broker_bin, "--listen", "tcp://127.0.0.1:7999", "--check"});
  BOOST_TEST(loop.code == 0, loop.err);
}

namespace {

// The broker's resident memory (VmRSS), KiB.
std::size_t rss_kib(pid_t pid) {
  std::ifstream status{"/proc/" + std::to_string(pid) + "/status"};
  for (std::string line; std::getline(status, line);)
    if (line.starts_with("VmRSS:")) return std::stoul(line.substr(6));
  return 0;
}

// `n` DEALERs with random CURVE keys dial the broker at once, each says
// something, and each waits (a socket monitor) for its handshake to be
// refused.
void knock_with_random_keys(zmq::context_t& ctx, const std::string& endpoint,
                            const std::string& broker_key, int n) {
  struct attempt {
    zmq::socket_t dealer, monitor;
  };
  std::vector<std::unique_ptr<attempt>> all;
  for (int i = 0; i < n; ++i) {
    auto a = std::make_unique<attempt>();
    a->dealer = zmq::socket_t{ctx, zmq::socket_type::dealer};
    auto k = plexus::make_curve_key_pair();
    a->dealer.set(zmq::sockopt::curve_serverkey, broker_key);
    a->dealer.set(zmq::sockopt::curve_publickey, k.public_key);
    a->dealer.set(zmq::sockopt::curve_secretkey, k.secret_key);
    a->dealer.set(zmq::sockopt::linger, 0);
    a->dealer.set(zmq::sockopt::reconnect_ivl, -1); // one attempt each
    static int monitors = 0; // inproc addresses are not reused at once after a close
    auto addr = "inproc://knock-" + std::to_string(monitors++);
    BOOST_REQUIRE(zmq_socket_monitor(a->dealer.handle(), addr.c_str(),
                                     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                                       | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                                       | ZMQ_EVENT_HANDSHAKE_SUCCEEDED) == 0);
    a->monitor = zmq::socket_t{ctx, zmq::socket_type::pair};
    a->monitor.connect(addr);
    a->dealer.connect(endpoint);
    a->dealer.send(zmq::str_buffer("orders.x"), zmq::send_flags::dontwait);
    all.push_back(std::move(a));
  }
  for (auto& a : all) {
    zmq::message_t event;
    a->monitor.set(zmq::sockopt::rcvtimeo, static_cast<int>(default_wait.count()));
    BOOST_REQUIRE_MESSAGE(a->monitor.recv(event), "no handshake outcome within 10 s");
    std::uint16_t kind = 0;
    std::memcpy(&kind, event.data(), sizeof kind);
    BOOST_TEST(kind != ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
    zmq::message_t address;
    (void)a->monitor.recv(address); // the second frame of an event
  }
}

} // namespace

// 1,000 connection attempts with random keys, 200 at a time: none gets a
// session, nothing they sent is delivered, and the broker's memory after
// them stays within 32 MiB of before (what it keeps per refused attempt
// is nothing: a leak of even 32 KiB each would show).
BOOST_AUTO_TEST_CASE(a_thousand_random_keys_get_nothing_and_leave_nothing) {
  keyring keys;
  auto admin_public = keys.user("admin", keys.path("broker.pub"));
  {
    std::ofstream f{keys.path("auth.toml"), std::ios::app};
    f << "[[users]]\nname = \"admin\"\npublic_key = \"" << admin_public << "\"\n"
      << "subscribe_allow = [\"$SYS.>\"]\npublish_allow = [\"$itest.>\"]\n";
  }
  broker_process b{{"--auth", keys.path("auth.toml"), "--id", "knocked", "--stats-interval-ms", "100"}};
  collector got;
  client alice{options_for(b, keys.path("alice.creds"))};
  alice.subscribe("orders.>", got.handler());
  sync_with_broker(alice);
  const auto before = rss_kib(b.process().pid());
  BOOST_REQUIRE(before > 0);
  zmq::context_t ctx;
  ctx.set(zmq::ctxopt::max_sockets, 4096);
  for (int batch = 0; batch < 5; ++batch) knock_with_random_keys(ctx, b.endpoint(), keys.broker_public, 200);
  alice.publish("orders.marker", "m");
  BOOST_REQUIRE(got.wait_count(1));
  sync_with_broker(alice);
  BOOST_TEST(got.payloads() == std::vector<std::string>{"m"});
  // The broker's own count: alice and admin, no one else, ever.
  collector stats;
  client admin{options_for(b, keys.path("admin.creds"))};
  admin.subscribe("$SYS.broker.knocked.stats", stats.handler());
  sync_with_broker(admin);
  BOOST_REQUIRE(stats.wait_count(1));
  auto json = stats.messages().back().payload;
  BOOST_TEST(json_number(json, "connections_opened").value_or(99) == 2u, json);
  // Each has its explicit subscription and its reply inbox: 4, none of the knockers'.
  BOOST_TEST(json_number(json, "subscriptions").value_or(99) == 4u, json);
  const auto after = rss_kib(b.process().pid());
#if !defined(__SANITIZE_ADDRESS__) // ASan's quarantine keeps freed memory resident on purpose
  BOOST_TEST(after < before + 32 * 1024, "VmRSS " << before << " KiB before, " << after << " KiB after");
#else
  BOOST_TEST_MESSAGE("VmRSS " << before << " KiB before, " << after << " KiB after (ASan: not judged)");
#endif
}

namespace {

// A TCP connection to the broker that never says a word.
int dial_silently(const std::string& endpoint) {
  auto port = std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  BOOST_REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  return fd;
}

// Reads what the broker sends (its ZMTP greeting) until it hangs up:
// true if it did within `wait`, false if the connection is still open.
bool hung_up(int fd, std::chrono::milliseconds wait) {
  timeval tv{static_cast<time_t>(wait.count() / 1000),
             static_cast<suseconds_t>((wait.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[256];
  for (;;) {
    auto n = ::recv(fd, buf, sizeof buf, wait.count() == 0 ? MSG_DONTWAIT : 0);
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
  }
}

} // namespace

// --max-handshakes 4: four silent dialers hold the four places (for the
// minute their handshake may take); the six after them are closed as soon
// as they are accepted, and once the four leave, a user gets in.
BOOST_AUTO_TEST_CASE(connections_past_the_handshake_cap_are_closed_at_once) {
  keyring keys;
  broker_process b{{"--auth", keys.path("auth.toml"), "--max-handshakes", "4",
                    "--handshake-timeout-ms", "60000"}};
  std::vector<int> held, extra;
  for (int i = 0; i < 4; ++i) held.push_back(dial_silently(b.endpoint()));
  for (int i = 0; i < 6; ++i) extra.push_back(dial_silently(b.endpoint()));
  for (auto fd : extra) BOOST_TEST(hung_up(fd, default_wait), "a connection past the cap stayed open");
  for (auto fd : held) BOOST_TEST(!hung_up(fd, 0ms), "a connection within the cap was closed");
  for (auto fd : held) ::close(fd);
  for (auto fd : extra) ::close(fd);
  collector got;
  client alice{options_for(b, keys.path("alice.creds"))};
  alice.subscribe("orders.>", got.handler());
  sync_with_broker(alice);
  alice.publish("orders.after", "in");
  BOOST_REQUIRE(got.wait_count(1));
  BOOST_TEST(got.payloads() == std::vector<std::string>{"in"});
}

// Replies cannot be forged: bob answers dave's request (it was delivered
// to him); carol, who may publish anywhere but reserved subjects, cannot
// put a message in dave's inbox.
BOOST_AUTO_TEST_CASE(only_the_responder_may_answer_and_a_forged_reply_is_refused) {
  keyring keys;
  auto bob_public = keys.user("bob", keys.path("broker.pub"));
  auto carol_public = keys.user("carol", keys.path("broker.pub"));
  auto dave_public = keys.user("dave", keys.path("broker.pub"));
  {
    std::ofstream f{keys.path("auth.toml"), std::ios::app};
    f << "[[users]]\nname = \"bob\"\npublic_key = \"" << bob_public << "\"\n"
      << "publish_allow = [\"$itest.>\"]\nsubscribe_allow = [\"svc.>\"]\n"
      << "[[users]]\nname = \"carol\"\npublic_key = \"" << carol_public << "\"\n"
      << "publish_allow = [\">\"]\n"
      << "[[users]]\nname = \"dave\"\npublic_key = \"" << dave_public << "\"\n"
      << "publish_allow = [\"svc.>\"]\n";
  }
  broker_process b{{"--auth", keys.path("auth.toml")}};
  client bob{options_for(b, keys.path("bob.creds"))};
  bob.subscribe("svc.echo", [&bob](const plexus::message_view& m) { bob.publish(m.reply_to, m.payload); });
  sync_with_broker(bob);
  client dave{options_for(b, keys.path("dave.creds"))};
  auto r = dave.request("svc.echo", "hi", default_wait);
  BOOST_TEST(r.code == 0u, r.code << " " << r.text);
  BOOST_TEST(r.payload == "hi");
  client carol{options_for(b, keys.path("carol.creds"))};
  std::promise<std::uint32_t> outcome;
  carol.publish_confirmed("_INBOX." + dave.node_id() + ".1", "forged",
                          [&outcome](std::uint32_t code) { outcome.set_value(code); });
  auto f = outcome.get_future();
  BOOST_REQUIRE(f.wait_for(default_wait) == std::future_status::ready);
  BOOST_TEST(f.get() == plexus::code_of(plexus::status::permission_denied));
}

// A client fails over to the next broker of the cluster and authenticates
// there as it did on the first (the cluster shares one key pair).
BOOST_AUTO_TEST_CASE(a_client_fails_over_and_authenticates_on_the_next_broker) {
  keyring keys;
  {
    std::ofstream f{keys.path("cluster.secret")};
    f << "a cluster secret of 32 bytes...\n";
  }
  std::vector<std::string> common{"--auth", keys.path("auth.toml"), "--cluster-secret-file",
                                  keys.path("cluster.secret")};
  auto with_id = [&](const char* id) {
    auto v = common;
    v.insert(v.end(), {"--id", id});
    return v;
  };
  broker_process second{with_id("second")};
  auto first_args = with_id("first");
  first_args.insert(first_args.end(), {"--peer", second.endpoint()});
  auto first = std::make_unique<broker_process>(first_args);
  collector got;
  client listener{options_for(second, keys.path("alice.creds"))};
  listener.subscribe("orders.>", got.handler());
  sync_with_broker(listener);
  auto o = options_for(*first, keys.path("alice.creds"));
  o.fallback = {second.endpoint()};
  client alice{o};
  BOOST_TEST(alice.broker_id() == "first");
  first->process().signal(SIGKILL);
  BOOST_TEST(first->process().wait(default_wait).has_value());
  // Published until it arrives: before the failover it goes nowhere.
  BOOST_REQUIRE(poll_until([&] {
    alice.publish("orders.after", "after the failover");
    return got.size() > 0;
  }, default_wait, 50ms));
  BOOST_TEST(alice.broker_id() == "second");
  BOOST_TEST(alice.stats().failovers >= 1u);
}

BOOST_AUTO_TEST_SUITE_END()
