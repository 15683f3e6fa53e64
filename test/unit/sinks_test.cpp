// SPDX-License-Identifier: Apache-2.0
// The sinks (actors/sinks): their core without I/O (records, URLs, what an
// HTTP answer means, backoff), then each sink on a real node over a TCP
// broker. The file sink: confirmed messages are in the file, in order,
// once their confirms say 0; rotation; a write error is never ACKed and the
// sink serves on. The webhook sink, against a cpp-httplib server here:
// body and headers arrive; 500s are retried, a 400 and exhausted attempts
// are dead-lettered with the answer in the reason; a server that comes up
// late still gets the message.

#define BOOST_TEST_MODULE plexus_sinks
#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <httplib.h>

#include "plexus/actors/sinks.hpp"
#include "plexus/node.hpp"
#include "runtime_helpers.hpp"
#include "sink_core.hpp"
#include "waiter.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using namespace plexus::actors;
using namespace plexus::actors::detail;
using plexus::test::confirmed;
using plexus::test::read_file;
using plexus::test::stats_of;
using plexus::test::tcp_broker;
using plexus::test::temp_dir;
using plexus::test::waiter;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in{s};
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

/// A confirmed publish whose code is read later.
std::shared_future<std::uint32_t> publish_later(client& c, std::string_view topic, std::string_view payload,
                                                std::string_view msg_id = {}) {
  auto p = std::make_shared<std::promise<std::uint32_t>>();
  std::shared_future<std::uint32_t> f = p->get_future();
  publish_options o;
  o.msg_id = msg_id;
  c.publish_confirmed(topic, payload, [p](std::uint32_t code) { p->set_value(code); }, o);
  return f;
}
std::uint32_t code_of(const std::shared_future<std::uint32_t>& f, std::chrono::seconds deadline = 20s) {
  return f.wait_for(deadline) == std::future_status::ready ? f.get() : 999u;
}

/// Dead letters on `$DLQ.<topic>`: payload and reason, once live.
struct dead_letters {
  waiter w;
  std::vector<std::pair<std::string, std::string>> seen;
  dead_letters(node& n, const std::string& topic) {
    n.client().subscribe("$DLQ." + topic, [this](const message_view& m) {
      w.update([&] { seen.emplace_back(m.payload, m.headers.find("plexus-dlq-reason")); });
    });
    BOOST_TEST_REQUIRE(confirmed(n.client(), "$DLQ." + topic, "probe") == 0u);
    w.update([&] { seen.clear(); });
  }
  std::pair<std::string, std::string> first() {
    BOOST_TEST_REQUIRE(w.until([&] { return !seen.empty(); }));
    std::lock_guard lock{w.m};
    return seen.front();
  }
};

/// An HTTP server on 127.0.0.1 answering POST /hook by `answer(n)` (n: the
/// request's index from 0), recording what came.
struct hook_server {
  struct seen_request {
    std::string body;
    httplib::Headers headers;
  };
  using answer_fn = std::function<std::pair<int, std::string>(std::size_t)>;

  httplib::Server srv;
  int port = 0;
  waiter w;
  std::vector<seen_request> seen;
  std::thread t;

  explicit hook_server(answer_fn answer, int at_port = 0) {
    srv.Post("/hook", [this, answer](const httplib::Request& req, httplib::Response& res) {
      std::size_t n = 0;
      w.update([&] {
        n = seen.size();
        seen.push_back({req.body, req.headers});
      });
      auto [status, body] = answer(n);
      res.status = status;
      res.set_content(body, "text/plain");
    });
    port = at_port == 0 ? srv.bind_to_any_port("127.0.0.1") : (srv.bind_to_port("127.0.0.1", at_port) ? at_port : -1);
    BOOST_TEST_REQUIRE(port > 0);
    t = std::thread{[this] { srv.listen_after_bind(); }}; // connections queue in the backlog till then
  }
  ~hook_server() {
    w.until([&] { return srv.is_running(); }, 5s); // stop() before listening would not stop it
    srv.stop();
    t.join();
  }
  std::size_t hits() {
    std::lock_guard lock{w.m};
    return seen.size();
  }
  seen_request at(std::size_t i) {
    std::lock_guard lock{w.m};
    return seen.at(i);
  }
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port) + "/hook"; }
};

/// A loopback port nothing listens on (bound, then closed): connecting is refused.
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  auto* sa = reinterpret_cast<sockaddr*>(&a);
  BOOST_TEST_REQUIRE((fd >= 0 && ::bind(fd, sa, len) == 0 && ::getsockname(fd, sa, &len) == 0));
  ::close(fd);
  return ntohs(a.sin_port);
}

template <class Add, class Options>
std::string refusal(Add add, Options o) {
  service svc{"out", {}};
  try {
    add(svc, std::move(o));
  } catch (const std::invalid_argument& e) {
    BOOST_TEST(svc.functions().empty());
    return e.what();
  }
  BOOST_FAIL("the options were taken");
  return {};
}

} // namespace

BOOST_AUTO_TEST_SUITE(sinks)

BOOST_AUTO_TEST_CASE(records_are_framed_per_format_and_a_line_with_a_newline_is_refused) {
  std::string out;
  BOOST_TEST(!append_record(record_format::line, "t", "id", "hello", out));
  BOOST_TEST(out == "hello\n");
  BOOST_TEST(append_record(record_format::line, "t", "id", "a\nb", out).has_value());
  out.clear();
  BOOST_TEST(!append_record(record_format::length_prefixed, "t", "id", std::string(258, 'x'), out));
  BOOST_TEST(out.substr(0, 4) == std::string("\0\0\1\2", 4));
  BOOST_TEST(out.size() == 262u);
  out.clear();
  BOOST_TEST(!append_record(record_format::json_line, "orders.x", "m\"1\n", std::string{"\x00\xff", 2}, out));
  BOOST_TEST(out == "{\"topic\":\"orders.x\",\"msg_id\":\"m\\\"1\\n\",\"payload\":\"AP8=\"}\n");
  for (auto [in, want] : {std::pair{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foobar", "Zm9vYmFy"}}) {
    std::string b;
    append_base64(in, b);
    BOOST_TEST(b == want);
  }
}

BOOST_AUTO_TEST_CASE(urls_answers_and_backoff_are_decided_without_io) {
  auto u = parse_url("http://example.com:8080/a/b?x=1");
  BOOST_TEST_REQUIRE(u.has_value());
  BOOST_TEST(!u->https);
  BOOST_TEST(u->host == "example.com");
  BOOST_TEST(u->port == 8080);
  BOOST_TEST(u->path == "/a/b?x=1");
  auto s = parse_url("https://[::1]");
  BOOST_TEST_REQUIRE(s.has_value());
  BOOST_TEST((s->https && s->host == "::1" && s->port == 443 && s->path == "/"));
  for (auto* bad : {"ftp://x/", "http://", "http://h:0/", "http://h:99999/", "http://u:p@h/", "h:80/x"})
    BOOST_TEST(!parse_url(bad).has_value(), bad);

  BOOST_TEST((classify_answer(200) == webhook_verdict::delivered && classify_answer(204) == webhook_verdict::delivered));
  for (int st : {0, 408, 425, 429, 500, 503})
    BOOST_TEST((classify_answer(st) == webhook_verdict::retry), st);
  for (int st : {301, 400, 401, 404, 413, 422})
    BOOST_TEST((classify_answer(st) == webhook_verdict::refused), st);

  BOOST_TEST(backoff_after(1, 100ms, 1000ms, 0.999).count() == 99);
  BOOST_TEST(backoff_after(1, 100ms, 1000ms, 0.0).count() == 50);
  BOOST_TEST(backoff_after(3, 100ms, 1000ms, 0.0).count() == 200);
  BOOST_TEST(backoff_after(10, 100ms, 1000ms, 0.0).count() == 500); // capped at max
  BOOST_TEST(backoff_after(200, 100ms, 1000ms, 0.0).count() == 500); // no overflow

  BOOST_TEST(answer_text(400, "bad\r\nthing", "") == "HTTP 400: bad  thing");
  BOOST_TEST(answer_text(0, "", "Connection") == "no answer: Connection");
  BOOST_TEST(answer_text(503, std::string(300, 'x'), "").size() == std::string{"HTTP 503: "}.size() + 203);
}

BOOST_AUTO_TEST_CASE(confirmed_messages_are_in_the_file_in_order_once_their_confirms_are_0) {
  temp_dir d{"order"};
  auto path = d.path / "outbox.txt";
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  add_file_sink(n.service("out"), {.name = "outbox", .on = "mail.>", .path = path.string()});
  n.start();
  constexpr int count = 300;
  std::vector<std::shared_future<std::uint32_t>> codes;
  for (int i = 0; i < count; ++i) codes.push_back(publish_later(n.client(), "mail.send", "mail " + std::to_string(i)));
  for (int i = 0; i < count; ++i) BOOST_TEST_REQUIRE(code_of(codes[i]) == 0u, i);
  auto lines = lines_of(read_file(path));
  BOOST_TEST_REQUIRE(lines.size() == std::size_t{count});
  for (int i = 0; i < count; ++i) BOOST_TEST(lines[i] == "mail " + std::to_string(i));
  auto st = stats_of(n, file_sink_function_name("outbox"));
  BOOST_TEST(st.ok == std::uint64_t{count});
  BOOST_TEST(st.errors == 0u);
  n.stop();
}

BOOST_AUTO_TEST_CASE(json_lines_carry_topic_msg_id_and_payload_and_a_rotated_file_is_followed) {
  temp_dir d{"rotate"};
  auto path = d.path / "audit.jsonl";
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  add_file_sink(n.service("out"), {.name = "audit", .on = "audit.*", .path = path.string(),
                                   .format = record_format::json_line});
  n.start();
  BOOST_TEST_REQUIRE(confirmed(n.client(), "audit.login", "ada", "m-1") == 0u);
  fs::rename(path, d.path / "audit.jsonl.1"); // logrotate's move
  BOOST_TEST_REQUIRE(confirmed(n.client(), "audit.logout", "bob", "m-2") == 0u);
  BOOST_TEST(read_file(d.path / "audit.jsonl.1") == "{\"topic\":\"audit.login\",\"msg_id\":\"m-1\",\"payload\":\"YWRh\"}\n");
  BOOST_TEST(read_file(path) == "{\"topic\":\"audit.logout\",\"msg_id\":\"m-2\",\"payload\":\"Ym9i\"}\n");
  fs::remove(path); // removed: a new file
  BOOST_TEST_REQUIRE(confirmed(n.client(), "audit.login", "cy", "m-3") == 0u);
  BOOST_TEST(lines_of(read_file(path)).size() == 1u);
  n.stop();
}

BOOST_AUTO_TEST_CASE(a_write_error_is_never_acked_and_the_sink_serves_on_once_the_file_can_be_written) {
  temp_dir d{"error"};
  auto dir = d.path / "spool";
  fs::create_directories(dir);
  auto path = dir / "outbox.txt";
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  add_file_sink(n.service("out"), {.name = "outbox", .on = "mail.send", .path = path.string(), .max_deliver = 3});
  n.start();
  dead_letters dlq{n, "mail.send"};
  BOOST_TEST_REQUIRE(confirmed(n.client(), "mail.send", "first") == 0u);
  fs::remove_all(dir); // the open file is unlinked with it: the sink must see it gone, not write into it
  BOOST_TEST(confirmed(n.client(), "mail.send", "lost") == 102u); // dead-lettered, never ACKed
  auto [payload, reason] = dlq.first();
  BOOST_TEST(payload == "lost");
  BOOST_TEST(reason.find("open: No such file or directory") != std::string::npos, reason);
  BOOST_TEST(stats_of(n, file_sink_function_name("outbox")).errors == 3u); // max_deliver attempts
  // A payload the format cannot frame is dead-lettered at once.
  fs::create_directories(dir);
  BOOST_TEST(confirmed(n.client(), "mail.send", "two\nlines") == 102u);
  BOOST_TEST(stats_of(n, file_sink_function_name("outbox")).rejected == 1u);
  BOOST_TEST_REQUIRE(confirmed(n.client(), "mail.send", "after") == 0u);
  BOOST_TEST(read_file(path) == "after\n");
  n.stop();
}

BOOST_AUTO_TEST_CASE(a_device_that_refuses_writes_leaves_messages_unacked) {
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  add_file_sink(n.service("out"), {.name = "full", .on = "mail.send", .path = "/dev/full", .max_deliver = 2});
  n.start();
  dead_letters dlq{n, "mail.send"};
  BOOST_TEST(confirmed(n.client(), "mail.send", "x") == 102u);
  auto [payload, reason] = dlq.first();
  BOOST_TEST(reason.find("write: No space left on device") != std::string::npos, reason);
  n.stop();
}

BOOST_AUTO_TEST_CASE(bad_file_sink_options_are_refused_at_add_time_naming_each_one) {
  temp_dir d{"options"};
  auto all = refusal(add_file_sink, file_sink_options{.name = "a b", .on = "$SYS.x", .path = "",
                                                      .sync = sync_policy::interval, .sync_interval = 0ms,
                                                      .max_deliver = 0});
  BOOST_TEST(all.find("file sink \"a b\": name \"a b\"") == 0u, all);
  for (auto* part : {"on \"$SYS.x\": a reserved", "path: empty", "sync_interval 0ms", "max_deliver 0"})
    BOOST_TEST(all.find(part) != std::string::npos, all);
  auto missing = (d.path / "no" / "such").string();
  auto dir = refusal(add_file_sink, file_sink_options{.name = "x", .on = "a.b", .path = missing});
  BOOST_TEST(dir.find("path \"" + missing + "\": open: No such file") != std::string::npos, dir);
  service svc{"out", {}};
  add_file_sink(svc, {.name = "x", .on = "a.*", .path = (d.path / "ok").string()});
  BOOST_TEST(svc.functions().size() == 1u);
  BOOST_TEST(svc.functions()[0]->options().blocking);
  BOOST_TEST(fs::exists(d.path / "ok"));
}

BOOST_AUTO_TEST_CASE(a_webhook_gets_the_payload_and_headers_and_its_2xx_acks) {
  hook_server hook{[](std::size_t) { return std::pair{204, std::string{}}; }};
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  add_webhook_sink(n.service("out"), {.name = "crm", .on = "orders.*", .url = hook.url(),
                                      .content_type = "application/json",
                                      .headers = {{"Authorization", "Bearer s3cret"}}});
  n.start();
  BOOST_TEST(confirmed(n.client(), "orders.shipped", R"({"id":42})", "order-42") == 0u);
  BOOST_TEST_REQUIRE(hook.hits() == 1u);
  auto r = hook.at(0);
  BOOST_TEST(r.body == R"({"id":42})");
  auto header = [&](const char* k) {
    auto it = r.headers.find(k);
    return it == r.headers.end() ? std::string{"(none)"} : it->second;
  };
  BOOST_TEST(header("Content-Type") == "application/json");
  BOOST_TEST(header("X-Plexus-Topic") == "orders.shipped");
  BOOST_TEST(header("X-Plexus-Msg-Id") == "order-42");
  BOOST_TEST(header("X-Plexus-Delivery") == "1");
  BOOST_TEST(header("Authorization") == "Bearer s3cret");
  auto tp = header("traceparent");
  BOOST_TEST(tp.size() == 55u, tp);
  BOOST_TEST(tp.substr(0, 3) == "00-");
  BOOST_TEST(stats_of(n, webhook_function_name("crm")).ok == 1u);
  n.stop();
}

BOOST_AUTO_TEST_CASE(a_webhook_answering_500_twice_then_200_gets_the_message_once_acked) {
  hook_server hook{[](std::size_t i) { return i < 2 ? std::pair{500, std::string{"busy"}} : std::pair{200, std::string{"ok"}}; }};
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  add_webhook_sink(n.service("out"), {.name = "crm", .on = "orders.shipped", .url = hook.url(),
                                      .backoff_initial = 10ms, .backoff_max = 50ms});
  n.start();
  BOOST_TEST(confirmed(n.client(), "orders.shipped", "o-1") == 0u);
  BOOST_TEST_REQUIRE(hook.hits() == 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    BOOST_TEST(hook.at(i).body == "o-1");
    BOOST_TEST(hook.at(i).headers.find("X-Plexus-Delivery")->second == std::to_string(i + 1));
  }
  auto st = stats_of(n, webhook_function_name("crm"));
  BOOST_TEST(st.errors == 2u); // the retries: two NACKs
  BOOST_TEST(st.ok == 1u);
  n.stop();
}

BOOST_AUTO_TEST_CASE(a_webhook_answering_400_dead_letters_at_once_with_the_answer_in_the_reason) {
  hook_server hook{[](std::size_t) { return std::pair{400, std::string{"no such customer"}}; }};
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  add_webhook_sink(n.service("out"), {.name = "crm", .on = "orders.shipped", .url = hook.url()});
  n.start();
  dead_letters dlq{n, "orders.shipped"};
  BOOST_TEST(confirmed(n.client(), "orders.shipped", "o-2") == 102u);
  auto [payload, reason] = dlq.first();
  BOOST_TEST(payload == "o-2");
  BOOST_TEST(reason.find("HTTP 400: no such customer") != std::string::npos, reason);
  BOOST_TEST(hook.hits() == 1u); // no retry
  BOOST_TEST(stats_of(n, webhook_function_name("crm")).rejected == 1u);
  n.stop();
}

BOOST_AUTO_TEST_CASE(a_webhook_failing_max_deliver_times_dead_letters_with_the_last_answer) {
  hook_server hook{[](std::size_t) { return std::pair{503, std::string{"down for maintenance"}}; }};
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  add_webhook_sink(n.service("out"), {.name = "crm", .on = "orders.shipped", .url = hook.url(), .max_deliver = 3,
                                      .backoff_initial = 10ms, .backoff_max = 20ms});
  n.start();
  dead_letters dlq{n, "orders.shipped"};
  BOOST_TEST(confirmed(n.client(), "orders.shipped", "o-3") == 102u);
  auto [payload, reason] = dlq.first();
  BOOST_TEST(reason.find("gave up after 3 attempts: HTTP 503: down for maintenance") != std::string::npos, reason);
  BOOST_TEST(hook.hits() == 3u);
  n.stop();
}

BOOST_AUTO_TEST_CASE(a_webhook_refusing_connections_gets_the_message_once_its_server_comes_up) {
  int port = free_port();
  std::optional<hook_server> hook; // before the node: the node's sink closes its connections first
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  add_webhook_sink(n.service("out"), {.name = "late", .on = "orders.shipped",
                                      .url = "http://127.0.0.1:" + std::to_string(port) + "/hook",
                                      .timeout = 1000ms, .max_deliver = 50, .backoff_initial = 20ms,
                                      .backoff_max = 100ms});
  n.start();
  auto code = publish_later(n.client(), "orders.shipped", "o-4");
  waiter w;
  BOOST_TEST_REQUIRE(w.until([&] { return stats_of(n, webhook_function_name("late")).errors >= 3u; }));
  BOOST_TEST((code.wait_for(0s) == std::future_status::timeout)); // not ACKed while refused
  hook.emplace([](std::size_t) { return std::pair{200, std::string{}}; }, port);
  BOOST_TEST(code_of(code) == 0u);
  BOOST_TEST(hook->hits() == 1u);
  BOOST_TEST(hook->at(0).body == "o-4");
  n.stop();
}

BOOST_AUTO_TEST_CASE(bad_webhook_options_are_refused_at_add_time_naming_each_one) {
  auto all = refusal(add_webhook_sink, webhook_options{.name = "", .on = "a..b", .url = "ftp://x", .timeout = 0ms,
                                                       .max_deliver = 0, .backoff_initial = 0ms,
                                                       .content_type = "", .headers = {{"Bad Name", "v"}},
                                                       .concurrency = 0});
  BOOST_TEST(all.find("webhook \"\": name \"\"") == 0u, all);
  for (auto* part : {"on \"a..b\"", "url \"ftp://x\"", "timeout 0ms", "max_deliver 0", "backoff 0ms",
                     "content_type \"\"", "header \"Bad Name\"", "concurrency 0"})
    BOOST_TEST(all.find(part) != std::string::npos, all);
  auto slow = refusal(add_webhook_sink, webhook_options{.name = "x", .on = "a", .url = "http://h/",
                                                        .timeout = 10000ms, .backoff_max = 5000ms});
  BOOST_TEST(slow.find("timeout + backoff_max 15000ms") != std::string::npos, slow);
  service svc{"out", {}};
  add_webhook_sink(svc, {.name = "x", .on = "a.>", .url = "https://hooks.example.com/x", .concurrency = 8});
  BOOST_TEST_REQUIRE(svc.functions().size() == 1u);
  BOOST_TEST(svc.functions()[0]->options().scale.max == 8u);
  BOOST_TEST(svc.functions()[0]->options().max_deliver == 5u);
}

BOOST_AUTO_TEST_SUITE_END()
