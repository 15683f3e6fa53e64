// SPDX-License-Identifier: Apache-2.0
// The PostgreSQL listener (actors/postgres): its core without I/O (backoff,
// LISTEN statement, ids, confirm verdicts), then the actor on a real node
// over a TCP broker against a real PostgreSQL server this test starts
// itself (initdb in a temporary directory, a Unix socket only, as `nobody`
// when run as root): a NOTIFY reaches a function, a transaction's
// notifications arrive in order, a server restart is survived, bad
// options are refused.

#define BOOST_TEST_MODULE plexus_postgres_actor
#include <boost/test/unit_test.hpp>

#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "pg_core.hpp"
#include "plexus/actors/postgres.hpp"
#include "plexus/node.hpp"
#include "runtime_helpers.hpp"
#include "waiter.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using namespace plexus::actors;
using namespace plexus::actors::detail;
using plexus::test::tcp_broker;
using plexus::test::temp_dir;
using plexus::test::waiter;
namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in{p, std::ios::binary};
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// A real PostgreSQL server (Debian's binaries) in a temporary directory,
/// reached by its Unix socket alone (no TCP: the private directory makes
/// any port free), run as `nobody` when the test runs as root (initdb and
/// postgres refuse root). Stopped and removed at the end.
class pg_server {
public:
  explicit pg_server(const std::string& what) : dir_{what} {
    if (::geteuid() == 0) {
      const passwd* pw = ::getpwnam("nobody");
      const group* gr = ::getgrnam("nogroup");
      if (!pw || !gr || ::chown(dir_.path.c_str(), pw->pw_uid, gr->gr_gid) != 0)
        throw std::runtime_error("cannot give " + dir_.path.string() + " to nobody:nogroup");
    }
    run({bin() + "/initdb", "-D", data(), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8",
         "--locale=C"});
    start();
  }
  ~pg_server() {
    if (running_) run({bin() + "/pg_ctl", "-D", data(), "-m", "immediate", "-w", "stop"}, false);
  }
  pg_server(const pg_server&) = delete;
  pg_server& operator=(const pg_server&) = delete;
  /// pg_ctl waits (60 s at most) until the server takes connections.
  void start() {
    run({bin() + "/pg_ctl", "-D", data(), "-l", (dir_.path / "server.log").string(), "-w", "-t", "60", "-o",
         "-k " + dir_.path.string() + " -p 5432 -c listen_addresses=''", "start"});
    running_ = true;
  }
  /// Fast shutdown: sessions (the listener's) are told and cut.
  void stop() {
    run({bin() + "/pg_ctl", "-D", data(), "-m", "fast", "-w", "-t", "60", "stop"});
    running_ = false;
  }
  [[nodiscard]] std::string conninfo() const {
    return "host=" + dir_.path.string() + " port=5432 dbname=postgres user=postgres";
  }

private:
  [[nodiscard]] std::string data() const { return (dir_.path / "data").string(); }
  static std::string bin() {
    std::string best;
    for (auto& e : fs::directory_iterator{"/usr/lib/postgresql"}) // Debian's: /usr/lib/postgresql/<ver>/bin
      if (fs::exists(e.path() / "bin" / "initdb") &&
          (best.empty() || std::stoi(e.path().filename().string()) > std::stoi(fs::path{best}.filename().string())))
        best = e.path().string();
    if (best.empty()) throw std::runtime_error("no PostgreSQL under /usr/lib/postgresql (apt-get install postgresql)");
    return best + "/bin";
  }
  // Runs argv in the directory (as nobody when root), output in cmd.log;
  // throws with that output when it fails.
  void run(std::vector<std::string> argv, bool must = true) {
    auto what = fs::path{argv[0]}.filename().string();
    if (::geteuid() == 0)
      argv.insert(argv.begin(), {"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"});
    auto out = (dir_.path / "cmd.log").string();
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    pid_t pid = ::fork();
    if (pid == 0) {
      int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0 || ::chdir(dir_.path.c_str()) != 0 || ::dup2(fd, 1) < 0 || ::dup2(fd, 2) < 0) ::_exit(126);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    int status = 0;
    if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      if (must) throw std::runtime_error(what + " failed: " + read_text(out));
    }
  }
  temp_dir dir_;
  bool running_ = false;
};

/// What this process writes on stderr while it lives (written out again at the end).
class stderr_capture {
public:
  stderr_capture() : file_{"stderr"}, saved_{::dup(2)} {
    std::fflush(stderr);
    int fd = ::open((file_.path / "err").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ::dup2(fd, 2);
    ::close(fd);
  }
  ~stderr_capture() {
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    std::fputs(text().c_str(), stderr);
  }
  stderr_capture(const stderr_capture&) = delete;
  stderr_capture& operator=(const stderr_capture&) = delete;
  [[nodiscard]] std::string text() const { return read_text(file_.path / "err"); }

private:
  temp_dir file_;
  int saved_;
};

struct seen_event {
  postgres_event e;
  std::string topic, msg_id;
};

/// What a consumer function got, in order (probes aside).
class event_log {
public:
  void consume(service& svc, const std::string& pattern) {
    svc.function("take").on(pattern).instances(1).handle(
      [this](const postgres_event& e, context& ctx) -> result<void> {
        if (e.channel != "probe")
          w_.update([&] { seen_.push_back({e, std::string{ctx.topic()}, std::string{ctx.msg_id()}}); });
        return {};
      });
  }
  bool until(std::size_t n) {
    return w_.until([&] { return seen_.size() >= n; });
  }
  std::vector<seen_event> events() {
    std::lock_guard lock{w_.m};
    return seen_;
  }

private:
  waiter w_;
  std::vector<seen_event> seen_;
};

/// A libpq connection of the test's own, to NOTIFY through.
class sql_session {
public:
  explicit sql_session(const std::string& conninfo) : c_{PQconnectdb(conninfo.c_str())} {
    if (PQstatus(c_) != CONNECTION_OK) throw std::runtime_error(std::string{"test connection: "} + PQerrorMessage(c_));
  }
  ~sql_session() { PQfinish(c_); }
  sql_session(const sql_session&) = delete;
  sql_session& operator=(const sql_session&) = delete;
  void exec(const std::string& sql) {
    PGresult* r = PQexec(c_, sql.c_str());
    auto ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    std::string why = PQresultErrorMessage(r);
    PQclear(r);
    if (!ok) throw std::runtime_error(sql + ": " + why);
  }
  [[nodiscard]] int pid() const { return PQbackendPID(c_); }

private:
  PGconn* c_;
};

postgres_listener_stats stats(const std::string& name = "shop") {
  auto s = postgres_stats("db", name);
  BOOST_TEST_REQUIRE(s.has_value());
  return *s;
}

template <class Pred>
bool eventually(Pred p, std::chrono::milliseconds deadline = 30s) {
  waiter w;
  return w.until(p, deadline);
}

/// The consumer's subscription is live once a probe is confirmed handled.
void probe(node& n, const std::string& topic) {
  BOOST_TEST_REQUIRE(plexus::test::confirmed(n.client(), topic, encode_event({.channel = "probe"})) == 0u);
}

std::string refusal(postgres_options o) {
  service svc{"db", {}};
  try {
    add_postgres_listener(svc, std::move(o));
  } catch (const std::invalid_argument& e) {
    BOOST_TEST(svc.functions().empty());
    return e.what();
  }
  BOOST_FAIL("add_postgres_listener took the options");
  return {};
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
    .count();
}

} // namespace

BOOST_AUTO_TEST_SUITE(postgres_actor)

BOOST_AUTO_TEST_CASE(the_core_backs_off_doubling_to_a_cap_and_starts_over_once_connected) {
  backoff b{100ms, 1000ms};
  std::vector<long> got;
  for (int i = 0; i < 6; ++i) got.push_back(static_cast<long>(b.next().count()));
  BOOST_TEST(got == (std::vector<long>{100, 200, 400, 800, 1000, 1000}), boost::test_tools::per_element());
  b.reset();
  BOOST_TEST(b.next().count() == 100);
  backoff standard;
  for (int i = 0; i < 20; ++i) (void)standard.next();
  BOOST_TEST(standard.next().count() == 30000);
}

BOOST_AUTO_TEST_CASE(the_core_quotes_channels_numbers_ids_and_judges_confirms) {
  BOOST_TEST(listen_statement({"orders", "Audit-1"}) == "LISTEN \"orders\"; LISTEN \"Audit-1\"");
  auto stem = id_stem("shop", 0xabcULL);
  BOOST_TEST(stem == "pg:shop:0000000000000abc");
  BOOST_TEST(event_id(stem, 7, 1) == stem + "-7");
  BOOST_TEST(event_id(stem, 7, 3) == stem + "-7#3");
  BOOST_TEST(event_id(id_stem(std::string(20, 'n'), ~0ULL), ~0ULL, max_attempts).size() <= 64u);
  BOOST_TEST((judge_confirm(0, 1).kind == confirm_verdict::published && !judge_confirm(0, 1).no_interest));
  auto nobody = judge_confirm(code_of(status::no_interest), 1);
  BOOST_TEST((nobody.kind == confirm_verdict::published && nobody.no_interest));
  BOOST_TEST_REQUIRE(find_status(code_of(status::overloaded))->retryable);
  auto busy = code_of(status::overloaded);
  BOOST_TEST((judge_confirm(busy, 1).kind == confirm_verdict::retry && judge_confirm(busy, 1).delay == 250ms));
  BOOST_TEST((judge_confirm(busy, 3).kind == confirm_verdict::retry && judge_confirm(busy, 3).delay == 1000ms));
  BOOST_TEST((judge_confirm(busy, max_attempts).kind == confirm_verdict::dropped));
  BOOST_TEST((judge_confirm(code_of(status::forbidden), 1).kind == confirm_verdict::dropped));
  postgres_event e{"orders", "hello", 42, 7};
  auto back = msgpack::unpack(encode_event(e).data(), encode_event(e).size()).get().as<postgres_event>();
  BOOST_TEST((back.channel == "orders" && back.payload == "hello" && back.pid == 42 && back.received_at == 7));
}

BOOST_AUTO_TEST_CASE(a_notify_reaches_a_function_subscribed_to_its_channels_topic) {
  pg_server pg{"notify"};
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  auto& svc = n.service("db");
  add_postgres_listener(svc, {.name = "shop", .conninfo = pg.conninfo(), .channels = {"orders", "audit"},
                              .topic = "pg.shop"});
  event_log log;
  log.consume(svc, "pg.shop.orders");
  n.start();
  probe(n, "pg.shop.orders");
  BOOST_TEST_REQUIRE(eventually([] { return stats().connected; }));
  sql_session sql{pg.conninfo()};
  auto before = now_ns();
  sql.exec("NOTIFY orders, 'hello'");
  BOOST_TEST_REQUIRE(log.until(1));
  auto seen = log.events();
  BOOST_TEST(seen.size() == 1u);
  BOOST_TEST(seen[0].topic == "pg.shop.orders");
  BOOST_TEST(seen[0].e.channel == "orders");
  BOOST_TEST(seen[0].e.payload == "hello");
  BOOST_TEST(seen[0].e.pid == sql.pid());
  BOOST_TEST((seen[0].e.received_at >= before && seen[0].e.received_at <= now_ns()));
  BOOST_TEST(seen[0].msg_id.starts_with("pg:shop:"));
  BOOST_TEST(seen[0].msg_id.ends_with("-1"));
  BOOST_TEST(eventually([] { return stats().published == 1; }));
  auto s = stats();
  BOOST_TEST((s.connects == 1u && s.reconnects == 0u && s.notifications == 1u && s.dropped == 0u));
  BOOST_TEST(plexus::test::stats_of(n, "pg-shop").live == 1u); // a supervised function
  n.stop();
  BOOST_TEST(!stats().connected); // the connection ends with the instance
}

BOOST_AUTO_TEST_CASE(a_transactions_notifications_all_arrive_in_order) {
  pg_server pg{"order"};
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  auto& svc = n.service("db");
  add_postgres_listener(svc, {.name = "shop", .conninfo = pg.conninfo(), .channels = {"orders", "Audit"},
                              .topic = "pg.shop"});
  event_log log;
  log.consume(svc, "pg.shop.>");
  n.start();
  probe(n, "pg.shop.orders");
  BOOST_TEST_REQUIRE(eventually([] { return stats().connected; }));
  sql_session sql{pg.conninfo()};
  // Nothing arrives before COMMIT; then all, in the order they were sent.
  sql.exec("BEGIN");
  for (int i = 1; i <= 5; ++i) sql.exec("NOTIFY orders, '" + std::to_string(i) + "'");
  sql.exec("NOTIFY \"Audit\", 'quoted keeps case'");
  sql.exec("NOTIFY audit, 'not listened'"); // folded to lower case: another channel
  sql.exec("SELECT pg_notify('orders', '6')");
  sql.exec("COMMIT");
  BOOST_TEST_REQUIRE(log.until(7));
  auto seen = log.events();
  BOOST_TEST(seen.size() == 7u);
  std::vector<std::string> got;
  for (auto& s : seen) got.push_back(s.e.channel + ":" + s.e.payload);
  std::vector<std::string> want{"orders:1", "orders:2", "orders:3", "orders:4", "orders:5",
                                "Audit:quoted keeps case", "orders:6"};
  BOOST_TEST(got == want, boost::test_tools::per_element());
  BOOST_TEST(seen[5].topic == "pg.shop.Audit");
  for (std::size_t i = 0; i < seen.size(); ++i)
    BOOST_TEST(seen[i].msg_id.ends_with("-" + std::to_string(i + 1)), seen[i].msg_id);
  n.stop();
}

BOOST_AUTO_TEST_CASE(the_listener_reconnects_after_a_server_restart_and_says_so) {
  pg_server pg{"restart"};
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  auto& svc = n.service("db");
  add_postgres_listener(svc, {.name = "shop", .conninfo = pg.conninfo(), .channels = {"orders"},
                              .topic = "pg.shop"});
  event_log log;
  log.consume(svc, "pg.shop.orders");
  stderr_capture err;
  n.start();
  probe(n, "pg.shop.orders");
  BOOST_TEST_REQUIRE(eventually([] { return stats().connected; }));
  pg.stop();
  BOOST_TEST_REQUIRE(eventually([] { return stats().connection_losses == 1 && !stats().connected; }));
  pg.start();
  BOOST_TEST_REQUIRE(eventually([] { return stats().connected; }));
  sql_session sql{pg.conninfo()};
  sql.exec("NOTIFY orders, 'after the restart'");
  BOOST_TEST_REQUIRE(log.until(1));
  BOOST_TEST(log.events()[0].e.payload == "after the restart");
  auto s = stats();
  BOOST_TEST(s.connects == 2u);
  BOOST_TEST(s.reconnects == 1u);
  BOOST_TEST(s.connection_losses == 1u);
  n.stop();
  auto text = err.text();
  BOOST_TEST(text.find("db.pg-shop msg=- trace=- connection lost: ") != std::string::npos, text);
  BOOST_TEST(text.find("reconnecting in 100 ms") != std::string::npos, text);
  BOOST_TEST(text.find("reconnected: listening again") != std::string::npos, text);
}

BOOST_AUTO_TEST_CASE(a_message_on_the_reconnect_topic_ends_the_wait_at_once) {
  pg_server pg{"kick"};
  pg.stop(); // the listener starts with no server: its waits grow
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  auto& svc = n.service("db");
  add_postgres_listener(svc, {.name = "kick", .conninfo = pg.conninfo(), .channels = {"orders"},
                              .topic = "pg.kick"});
  n.start();
  // 100+200+...+3200 ms: the next wait is 6.4 s, then 12.8 s.
  BOOST_TEST_REQUIRE(eventually([] { return stats("kick").connect_failures >= 7; }));
  pg.start();
  auto kicked = std::chrono::steady_clock::now();
  BOOST_TEST(plexus::test::confirmed(n.client(), postgres_reconnect_topic("kick"), "") == 0u);
  BOOST_TEST_REQUIRE(eventually([] { return stats("kick").connected; }, 5s));
  BOOST_TEST((std::chrono::steady_clock::now() - kicked < 5s));
  BOOST_TEST(stats("kick").reconnects == 0u); // the first connection, however late
  n.stop();
}

BOOST_AUTO_TEST_CASE(bad_options_are_refused_at_add_time_naming_each_one) {
  postgres_options ok{.name = "x", .conninfo = "host=/tmp dbname=x", .channels = {"a"}, .topic = "pg.x"};
  auto with = [&](auto change) {
    auto o = ok;
    change(o);
    return refusal(o);
  };
  auto name = with([](auto& o) { o.name = "a.b"; });
  BOOST_TEST(name.find("postgres listener \"a.b\": name \"a.b\": 1-20 letters") == 0u, name);
  auto conninfo = with([](auto& o) { o.conninfo = "nonsense"; });
  BOOST_TEST(conninfo.find("conninfo: missing \"=\" after \"nonsense\"") != std::string::npos, conninfo);
  auto reserved = with([](auto& o) { o.topic = "$SYS.pg"; });
  BOOST_TEST(reserved.find("topic \"$SYS.pg\": a reserved namespace") != std::string::npos, reserved);
  auto all = with([](auto& o) {
    o.conninfo = "";
    o.topic = "pg.*";
    o.channels = {"ok", "a.b", std::string(64, 'c'), "ok"};
  });
  for (auto* part : {"conninfo: empty", "topic \"pg.*\": ", "channel \"a.b\": ", "channel \"ccc",
                     "channel \"ok\": listed twice"})
    BOOST_TEST(all.find(part) != std::string::npos, all);
  auto none = with([](auto& o) { o.channels.clear(); });
  BOOST_TEST(none.find("channels: none") != std::string::npos, none);
  service svc{"db", {}};
  add_postgres_listener(svc, ok); // the same options, right, are taken
  BOOST_TEST(svc.functions().size() == 1u);
  BOOST_TEST(postgres_stats("db", "x").has_value());
  BOOST_TEST(!postgres_stats("db", "nobody").has_value());
}

BOOST_AUTO_TEST_SUITE_END()
