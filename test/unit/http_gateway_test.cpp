// SPDX-License-Identifier: Apache-2.0
// The HTTP gateway (actors/http) on a real node and TCP broker, spoken to
// over HTTP with cpp-httplib's client: /rpc, /events, each failure class,
// traceparent, a configured route, max_concurrent, stop()'s drain; and a
// throughput line beside direct requests; wrk at 64 connections for 10 s.
// Its core: http_gateway_core_test.cpp.
#define BOOST_TEST_MODULE plexus_http_gateway
#include <boost/test/unit_test.hpp>

#include <httplib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <regex>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "gateway_core.hpp"
#include "plexus/actors/http.hpp"
#include "plexus/node.hpp"
#include "runtime_helpers.hpp"
#include "waiter.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using namespace plexus::actors;
using plexus::test::tcp_broker;
using plexus::test::waiter;
namespace core = plexus::actors::detail;

namespace {

// A typed handler's payload: the gateway turns JSON into this map and back.
struct order {
  int id = 0;
  std::string customer;
  MSGPACK_DEFINE_MAP(id, customer)
};

// What the node's functions saw.
struct seen {
  waiter w;
  std::string traceparent, trace_id, held_reply_to, event_id;
  std::uint64_t deadline_ns = 0;
};

// A TCP broker, a node with the test's functions, and a gateway on a free port.
struct rig {
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  std::shared_ptr<seen> s = std::make_shared<seen>();
  std::unique_ptr<gateway> gw;

  explicit rig(http_options o = {}) {
    auto& app = n.service("app");
    auto s_ = s;
    app.function("echo").on("echo").handle([s_](std::string_view body, context& ctx) -> result<void> {
      s_->w.update([&] {
        s_->traceparent = ctx.traceparent();
        s_->trace_id = ctx.trace_id();
        s_->deadline_ns = ctx.deadline_ns();
      });
      ctx.reply(body);
      return {};
    });
    app.function("silent").on("silent").handle([](std::string_view, context&) -> result<void> { return {}; });
    app.function("fail").on("fail").max_deliver(1).handle(
      [](std::string_view, context&) -> result<void> { return error{"boom\r\nX-Injected: 1"}; });
    app.function("refuse").on("refuse").handle(
      [](std::string_view, context&) -> result<void> { return reject{"not an order"}; });
    app.function("hold").on("hold").handle([s_](std::string_view, context& ctx) -> result<void> {
      s_->w.update([&] { s_->held_reply_to = ctx.reply_to(); });
      return {}; // the test answers on reply_to itself
    });
    app.function("orders")
      .on("orders.create")
      .handle([](std::string_view body, context& ctx) -> result<void> {
        ctx.reply("created:" + std::string{body});
        return {};
      });
    app.function("typed").on("typed").handle([](const order& in, context& ctx) -> result<void> {
      ctx.reply(order{in.id + 1, in.customer + "!"});
      return {};
    });
    app.function("sink").on("events.in").handle([s_](std::string_view, context& ctx) -> result<void> {
      s_->w.update([&] { s_->event_id = ctx.msg_id(); });
      return {};
    });
    n.start();
    o.port = 0;
    gw = std::make_unique<gateway>(std::move(o));
    gw->start(n); // its counters join the node's metrics
  }
  ~rig() {
    gw->stop();
    n.stop();
  }
  std::unique_ptr<httplib::Client> http() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", gw->port());
    c->set_keep_alive(true);
    c->set_tcp_nodelay(true); // as curl and wrk: no 40 ms Nagle stall between headers and body
    c->set_read_timeout(30, 0);
    return c;
  }
  // Waits until a request holds in `hold` and returns its reply-to.
  std::string held() {
    BOOST_TEST_REQUIRE(s->w.until([&] { return !s->held_reply_to.empty(); }));
    std::lock_guard lock{s->w.m};
    return s->held_reply_to;
  }
};

// A connection spoken to byte by byte: what curl and wrk do that
// httplib's client does not (pipelining, Expect: 100-continue, garbage).
class raw_connection {
public:
  explicit raw_connection(int port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    BOOST_TEST_REQUIRE(fd_ >= 0);
    timeval tv{20, 0}; // a read that never ends fails the test instead of hanging it
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_TEST_REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~raw_connection() { ::close(fd_); }
  raw_connection(const raw_connection&) = delete;
  raw_connection& operator=(const raw_connection&) = delete;

  void send(const std::string& bytes) {
    BOOST_TEST_REQUIRE(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
  }
  /// One response: its head (status line and headers) and its body (by
  /// Content-Length); an empty head when the connection closed first.
  std::pair<std::string, std::string> response() {
    auto end = buf_.find("\r\n\r\n");
    while (end == std::string::npos) {
      if (!fill()) return {};
      end = buf_.find("\r\n\r\n");
    }
    auto head = buf_.substr(0, end + 4);
    buf_.erase(0, end + 4);
    std::size_t length = 0;
    if (auto at = head.find("Content-Length: "); at != std::string::npos) length = std::stoul(head.substr(at + 16));
    while (buf_.size() < length)
      if (!fill()) return {};
    auto body = buf_.substr(0, length);
    buf_.erase(0, length);
    return {head, body};
  }
  /// True when the gateway closed the connection (EOF) before sending more.
  bool closed_by_peer() { return buf_.empty() && !fill(); }
  /// Bytes waiting now, without waiting for any.
  bool has_input() {
    char c;
    return ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
  }

private:
  bool fill() {
    char b[4096];
    auto n = ::recv(fd_, b, sizeof b, 0);
    if (n <= 0) return false;
    buf_.append(b, static_cast<std::size_t>(n));
    return true;
  }
  int fd_;
  std::string buf_;
};

std::string echo_request(const std::string& body, const std::string& extra = {}) {
  return "POST /rpc/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;
}

httplib::Result post(httplib::Client& c, const std::string& path, const std::string& body = "x",
                     const httplib::Headers& h = {}) {
  return c.Post(path, h, body, "application/octet-stream");
}

} // namespace

BOOST_AUTO_TEST_SUITE(http_gateway)

BOOST_AUTO_TEST_CASE(rpc_body_goes_in_and_the_reply_comes_back_200) {
  rig r;
  auto c = r.http();
  for (const auto& body :
       std::vector<std::string>{"hello", std::string(100'000, 'z'), std::string("\0\x01\xff", 3)}) {
    auto res = post(*c, "/rpc/echo", body, {{"X-Request-Timeout", "4000"}});
    BOOST_TEST_REQUIRE(res);
    BOOST_TEST(res->status == 200);
    BOOST_TEST(res->body == body);
    BOOST_TEST(res->get_header_value("Content-Type") == "application/octet-stream");
  }
  // The header's timeout is the request's deadline, as the handler sees it.
  auto now = static_cast<std::uint64_t>(
    std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count());
  std::lock_guard lock{r.s->w.m};
  BOOST_TEST(r.s->deadline_ns > now + 3'000'000'000u);
  BOOST_TEST(r.s->deadline_ns <= now + 4'000'000'000u);
  BOOST_TEST(r.gw->stats().ok == 3u);
}

BOOST_AUTO_TEST_CASE(events_answer_202_with_the_msg_id_once_a_consumer_acks) {
  rig r;
  auto c = r.http();
  auto res = post(*c, "/events/events.in", "{\"id\":42}");
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 202);
  auto id = res->get_header_value("X-Msg-Id");
  BOOST_TEST(id.size() == 32u);
  BOOST_TEST(res->body == "{\"msg_id\":\"" + id + "\"}");
  {
    std::lock_guard lock{r.s->w.m};
    BOOST_TEST(r.s->event_id == id); // confirmed after the handler had it
  }
  res = post(*c, "/events/events.in", "again", {{"X-Msg-Id", "order-42"}});
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 202);
  BOOST_TEST(res->body == R"({"msg_id":"order-42"})");
  res = post(*c, "/events/nobody.listens");
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 503);
  BOOST_TEST(res->body.find("no_subscriber") != std::string::npos);
  res = post(*c, "/events/refuse");
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 422);
  res = post(*c, "/events/events.in", "x", {{"X-Msg-Id", "has space"}});
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 400);
}

BOOST_AUTO_TEST_CASE(failure_classes_map_to_their_status_codes) {
  http_options o;
  o.max_body = 1024;
  rig r{o};
  auto c = r.http();
  auto res = post(*c, "/rpc/nobody.home");
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 503);
  BOOST_TEST(res->get_header_value("Retry-After") == "1");
  // A handler that never answers, within the caller's timeout (not the 10 s default).
  auto t0 = std::chrono::steady_clock::now();
  res = post(*c, "/rpc/silent", "x", {{"X-Request-Timeout", "300"}});
  auto waited = std::chrono::steady_clock::now() - t0;
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 504);
  BOOST_TEST((waited >= 290ms && waited < 5s));
  res = post(*c, "/rpc/fail");
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 502);
  BOOST_TEST(res->get_header_value("X-Plexus-Failure") == "error");
  BOOST_TEST(res->get_header_value("X-Plexus-From") == "app.fail");
  BOOST_TEST(res->get_header_value("X-Plexus-Cause") == "boom  X-Injected: 1");
  BOOST_TEST(!res->has_header("X-Injected"));
  BOOST_TEST(res->body == R"({"error":"error","from":"app.fail","cause":"boom\r\nX-Injected: 1"})");
  res = post(*c, "/rpc/refuse");
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 422);
  BOOST_TEST(res->get_header_value("X-Plexus-Cause") == "not an order");
  res = post(*c, "/rpc/echo", std::string(1025, 'b'));
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 413);
  BOOST_TEST(res->body.find("payload_too_large") != std::string::npos);
  c = r.http(); // a 413 closes the connection (the body was not read)
  res = post(*c, "/nowhere");
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 404);
  auto get = c->Get("/rpc/echo");
  BOOST_TEST_REQUIRE(get);
  BOOST_TEST(get->status == 405);
  BOOST_TEST(get->get_header_value("Allow") == "POST");
  res = post(*c, "/rpc/echo", "x", {{"X-Request-Timeout", "soon"}});
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 400);
}

BOOST_AUTO_TEST_CASE(traceparent_in_reaches_the_handler_and_comes_back_out) {
  rig r;
  auto c = r.http();
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  auto res = post(*c, "/rpc/echo", "x", {{"traceparent", tp}});
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 200);
  BOOST_TEST(res->get_header_value("traceparent") == tp);
  {
    std::lock_guard lock{r.s->w.m};
    BOOST_TEST(r.s->traceparent == tp);
    BOOST_TEST(r.s->trace_id == "4bf92f3577b34da6a3ce929d0e0e4736");
  }
  // None (or a malformed one) in: the gateway starts the trace the handler continues.
  res = post(*c, "/rpc/echo", "x", {{"traceparent", "garbage"}});
  BOOST_TEST_REQUIRE(res);
  auto out = res->get_header_value("traceparent");
  BOOST_TEST(core::valid_traceparent(out));
  BOOST_TEST(out != tp);
  std::lock_guard lock{r.s->w.m};
  BOOST_TEST(r.s->traceparent == out);
  BOOST_TEST(r.s->trace_id == out.substr(3, 32));
}

BOOST_AUTO_TEST_CASE(a_configured_route_sends_to_its_topic) {
  http_options o;
  o.routes = {{"POST", "/orders", "orders.create"}, {"PUT", "/audit", "events.in", false}};
  o.rpc = false;
  rig r{o};
  auto c = r.http();
  auto res = post(*c, "/orders", "{\"id\":42}");
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 200);
  BOOST_TEST(res->body == "created:{\"id\":42}");
  auto put = c->Put("/audit", "seen", "text/plain");
  BOOST_TEST_REQUIRE(put);
  BOOST_TEST(put->status == 202);
  res = post(*c, "/rpc/orders.create");
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 404); // rpc is off
}

BOOST_AUTO_TEST_CASE(past_max_concurrent_a_request_gets_429_with_retry_after) {
  http_options o;
  o.max_concurrent = 1;
  rig r{o};
  auto first = std::async(std::launch::async, [&] {
    auto c = r.http();
    auto res = post(*c, "/rpc/hold", "x", {{"X-Request-Timeout", "20000"}});
    return res ? std::pair{res->status, res->body} : std::pair{-1, std::string{}};
  });
  auto reply_to = r.held(); // the first request waits on the broker now
  auto c = r.http();
  auto res = post(*c, "/rpc/echo");
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 429);
  BOOST_TEST(res->get_header_value("Retry-After") == "1");
  BOOST_TEST(r.gw->stats().too_many == 1u);
  r.n.client().publish(reply_to, "released");
  auto [status, body] = first.get();
  BOOST_TEST(status == 200);
  BOOST_TEST(body == "released");
  res = post(*c, "/rpc/echo", "after");
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 200);
}

BOOST_AUTO_TEST_CASE(stop_lets_a_request_in_flight_finish) {
  rig r;
  auto first = std::async(std::launch::async, [&] {
    auto c = r.http();
    auto res = post(*c, "/rpc/hold", "x", {{"X-Request-Timeout", "20000"}});
    return res ? std::pair{res->status, res->body} : std::pair{-1, std::string{}};
  });
  auto reply_to = r.held();
  auto stopping = std::async(std::launch::async, [&] { r.gw->stop(); });
  // Once it stops accepting, a new connection is refused.
  waiter refused;
  BOOST_TEST_REQUIRE(refused.until([&] {
    httplib::Client probe{"127.0.0.1", r.gw->port()};
    return !probe.Get("/x");
  }));
  BOOST_TEST((stopping.wait_for(0s) != std::future_status::ready)); // it waits for the one in flight
  r.n.client().publish(reply_to, "finished");
  auto [status, body] = first.get();
  BOOST_TEST(status == 200);
  BOOST_TEST(body == "finished");
  BOOST_TEST((stopping.wait_for(10s) == std::future_status::ready));
}

BOOST_AUTO_TEST_CASE(stop_closes_idle_keep_alive_connections_at_once) {
  http_options o;
  o.drain_timeout = 20s;
  o.keep_alive_timeout = 60s;
  rig r{o};
  auto idle = r.http(); // a keep-alive connection, idle once answered
  auto res = post(*idle, "/rpc/echo");
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 200);
  BOOST_TEST(r.gw->stats().connections == 1u);
  auto t0 = std::chrono::steady_clock::now();
  r.gw->stop();
  auto took = std::chrono::steady_clock::now() - t0;
  BOOST_TEST((took < 5s)); // neither the drain timeout (20 s) nor the idle timeout (60 s)
  BOOST_TEST(r.gw->stats().connections == 0u);
}

BOOST_AUTO_TEST_CASE(stop_answers_503_past_the_drain_timeout) {
  http_options o;
  o.drain_timeout = 300ms;
  rig r{o};
  auto first = std::async(std::launch::async, [&] {
    auto c = r.http();
    auto res = post(*c, "/rpc/hold", "x", {{"X-Request-Timeout", "20000"}});
    return res ? std::pair{res->status, res->body} : std::pair{-1, std::string{}};
  });
  r.held();
  auto t0 = std::chrono::steady_clock::now();
  r.gw->stop();
  auto took = std::chrono::steady_clock::now() - t0;
  BOOST_TEST((took >= 290ms && took < 5s));
  auto [status, body] = first.get();
  BOOST_TEST(status == 503);
  BOOST_TEST(body.find("stopping") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_port_in_use_is_a_config_error) {
  rig r;
  http_options o;
  o.port = r.gw->port();
  gateway second{o};
  try {
    second.start(r.n.client());
    BOOST_FAIL("a second gateway listens on the same port");
  } catch (const config_error& e) {
    BOOST_TEST(std::string{e.what()}.find("port in use") != std::string::npos, e.what());
  }
}

BOOST_AUTO_TEST_CASE(a_json_body_reaches_a_typed_handler_and_its_reply_comes_back_as_json) {
  rig r;
  auto c = r.http();
  auto res = c->Post("/rpc/typed", R"({"id": 41, "customer": "ada"})", "application/json");
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 200, res->body);
  BOOST_TEST(res->get_header_value("Content-Type") == "application/json");
  BOOST_TEST(res->body == R"({"id":42,"customer":"ada!"})");
  // Not JSON: 400 saying where, and nothing reaches the handler.
  auto bad = c->Post("/rpc/typed", R"({"id": 41,})", "application/json");
  BOOST_TEST_REQUIRE(bad);
  BOOST_TEST(bad->status == 400);
  BOOST_TEST(bad->body.find("not JSON: at byte") != std::string::npos, bad->body);
  // Bytes stay bytes: the typed handler refuses them (422), untouched.
  auto raw = c->Post("/rpc/typed", R"({"id": 41})", "application/octet-stream");
  BOOST_TEST_REQUIRE(raw);
  BOOST_TEST(raw->status == 422, raw->body);
}

BOOST_AUTO_TEST_CASE(the_gateway_s_counters_are_in_the_node_s_metrics) {
  rig r;
  auto c = r.http();
  for (int i = 0; i < 3; ++i) BOOST_TEST(post(*c, "/rpc/echo")->status == 200);
  BOOST_TEST(post(*c, "/rpc/refuse")->status == 422);
  BOOST_TEST(post(*c, "/nowhere")->status == 404);
  const auto text = r.n.metrics_text();
  const auto gw = "gateway=\"127.0.0.1:" + std::to_string(r.gw->port()) + "\"";
  auto line = [&](const std::string& l) {
    bool found = text.find("\n" + l + "\n") != std::string::npos;
    if (!found) BOOST_TEST_MESSAGE("no line " << l << " in\n" << text);
    return found;
  };
  BOOST_TEST(line("plexus_http_requests_total{" + gw + ",class=\"2xx\"} 3"));
  BOOST_TEST(line("plexus_http_requests_total{" + gw + ",class=\"4xx\"} 2"));
  BOOST_TEST(line("plexus_http_requests_total{" + gw + ",class=\"5xx\"} 0"));
  BOOST_TEST(line("plexus_http_request_duration_seconds_count{" + gw + "} 5"));
  BOOST_TEST(line("plexus_http_in_flight{" + gw + "} 0"));
  BOOST_TEST(text.find("plexus_function_invocations_total") < text.find("plexus_http_requests_total"));
}

BOOST_AUTO_TEST_CASE(what_is_not_http_gets_400_and_the_gateway_serves_on) {
  rig r;
  raw_connection bad{r.gw->port()};
  bad.send("GARBAGE\r\n\r\n");
  auto [head, body] = bad.response();
  BOOST_TEST(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), head);
  BOOST_TEST(head.find("Connection: close") != std::string::npos);
  BOOST_TEST(body.find("bad_request") != std::string::npos);
  BOOST_TEST(bad.closed_by_peer());
  raw_connection good{r.gw->port()};
  good.send(echo_request("fine"));
  auto [h2, b2] = good.response();
  BOOST_TEST(h2.starts_with("HTTP/1.1 200 OK\r\n"), h2);
  BOOST_TEST(b2 == "fine");
  BOOST_TEST(r.gw->stats().client_errors == 1u);
}

BOOST_AUTO_TEST_CASE(pipelined_requests_are_answered_in_order_on_one_connection) {
  rig r;
  raw_connection c{r.gw->port()};
  c.send(echo_request("one") + echo_request("two") + echo_request("three"));
  for (auto want : {"one", "two", "three"}) {
    auto [head, body] = c.response();
    BOOST_TEST(head.starts_with("HTTP/1.1 200 OK\r\n"), head);
    BOOST_TEST(body == want);
  }
}

BOOST_AUTO_TEST_CASE(expect_100_continue_gets_continue_or_413_before_the_body_is_sent) {
  http_options o;
  o.max_body = 1024;
  rig r{o};
  raw_connection c{r.gw->port()};
  c.send("POST /rpc/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  auto [cont, none] = c.response(); // as curl does with a body over 1 KiB
  BOOST_TEST(cont == "HTTP/1.1 100 Continue\r\n\r\n");
  c.send("hello");
  auto [head, body] = c.response();
  BOOST_TEST(head.starts_with("HTTP/1.1 200 OK\r\n"), head);
  BOOST_TEST(body == "hello");
  // Too large: 413 at once, the connection closes, the body is never read.
  raw_connection big{r.gw->port()};
  big.send("POST /rpc/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n");
  auto [h2, b2] = big.response();
  BOOST_TEST(h2.starts_with("HTTP/1.1 413 Payload Too Large\r\n"), h2);
  BOOST_TEST(b2.find("over 1024 bytes") != std::string::npos);
  BOOST_TEST(big.closed_by_peer());
}

BOOST_AUTO_TEST_CASE(idle_and_half_sent_connections_close_past_the_keep_alive_timeout) {
  http_options o;
  o.keep_alive_timeout = 200ms;
  rig r{o};
  raw_connection idle{r.gw->port()}, half{r.gw->port()};
  idle.send(echo_request("x"));
  BOOST_TEST(idle.response().second == "x");
  half.send("POST /rpc/echo HTTP/1.1\r\nHost: x\r\n"); // and never the rest
  auto t0 = std::chrono::steady_clock::now();
  BOOST_TEST(idle.closed_by_peer()); // blocks until the gateway closes it
  BOOST_TEST(half.closed_by_peer());
  BOOST_TEST((std::chrono::steady_clock::now() - t0 < 5s));
  waiter w;
  BOOST_TEST(w.until([&] { return r.gw->stats().connections == 0; }));
}

BOOST_AUTO_TEST_CASE(connections_past_max_connections_wait_until_one_closes) {
  http_options o;
  o.max_connections = 2;
  rig r{o};
  auto a = std::make_unique<raw_connection>(r.gw->port());
  raw_connection b{r.gw->port()};
  a->send(echo_request("a"));
  BOOST_TEST(a->response().second == "a");
  b.send(echo_request("b"));
  BOOST_TEST(b.response().second == "b");
  raw_connection third{r.gw->port()}; // connected (the kernel's backlog), not accepted
  third.send(echo_request("third"));
  b.send(echo_request("b2")); // a round trip on the same loop since
  BOOST_TEST(b.response().second == "b2");
  BOOST_TEST(!third.has_input());
  BOOST_TEST(r.gw->stats().connections == 2u);
  a.reset(); // one closes: the third is accepted and answered
  BOOST_TEST(third.response().second == "third");
}

BOOST_AUTO_TEST_CASE(hundreds_of_connections_are_served_by_one_event_loop) {
  constexpr int n = 300; // the thread-per-connection gateway this replaced capped at 512 threads
  http_options o;
  o.threads = 1;
  o.max_concurrent = n; // all in flight at once: none is turned away
  rig r{o};
  std::vector<std::unique_ptr<raw_connection>> cs;
  for (int i = 0; i < n; ++i) cs.push_back(std::make_unique<raw_connection>(r.gw->port()));
  for (int i = 0; i < n; ++i) cs[static_cast<std::size_t>(i)]->send(echo_request("c" + std::to_string(i)));
  for (int i = 0; i < n; ++i) {
    auto [head, body] = cs[static_cast<std::size_t>(i)]->response();
    BOOST_TEST_REQUIRE(head.starts_with("HTTP/1.1 200 OK\r\n"), head);
    BOOST_TEST(body == "c" + std::to_string(i));
  }
  BOOST_TEST(r.gw->stats().connections == static_cast<std::uint64_t>(n));
}

// Not a benchmark (the bench suite's `http` scenario is wrk's): one
// keep-alive client in a loop, beside the same requests made directly.
BOOST_AUTO_TEST_CASE(throughput_through_the_gateway_beside_direct_requests) {
  rig r;
  constexpr int n = 2000;
  const std::string body(128, 'p');
  auto c = r.http();
  auto rate = [&](auto&& one) {
    for (int i = 0; i < 100; ++i) BOOST_TEST_REQUIRE(one()); // warm
    auto t0 = std::chrono::steady_clock::now();
    int good = 0;
    for (int i = 0; i < n; ++i) good += one() ? 1 : 0;
    BOOST_TEST(good == n);
    return n / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  double http = rate([&] {
    auto res = post(*c, "/rpc/echo", body);
    return res && res->status == 200 && res->body == body;
  });
  double direct = rate([&] {
    auto rep = r.n.client().request("echo", body, 5s);
    return rep.code == 0 && rep.payload == body;
  });
  std::printf("http gateway, 1 keep-alive client, 128 B echo: %.0f req/s (%.1f us each); "
              "client.request: %.0f req/s (%.1f us each); ratio %.2f\n",
              http, 1e6 / http, direct, 1e6 / direct, http / direct);
}

// The issue's load check: wrk at 64 keep-alive connections for 10 s, and
// every answer a 200 with the body it sent (a Lua check on each response),
// no socket error, no timeout. wrk comes with `make test`'s set-up
// (scripts/install-deps.sh test); $PLEXUS_WRK overrides where it is.
BOOST_AUTO_TEST_CASE(wrk_at_64_connections_for_10_s_gets_only_200s_with_their_echoes) {
  const char* env = std::getenv("PLEXUS_WRK");
  const std::string wrk = env != nullptr && *env != '\0' ? env : (::access("/usr/bin/wrk", X_OK) == 0 ? "/usr/bin/wrk" : "wrk");
  rig r;
  char dir_template[] = "/tmp/plexus-wrk-XXXXXX";
  BOOST_TEST_REQUIRE(::mkdtemp(dir_template) != nullptr);
  const std::string dir = dir_template, script = dir + "/check.lua";
  {
    std::ofstream lua{script};
    lua << "wrk.method = \"POST\"\n"
           "wrk.body = string.rep(\"x\", 128)\n"
           "wrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n"
           "local threads = {}\n"
           "function setup(thread) table.insert(threads, thread) end\n"
           "function init(args) bad = 0 end\n"
           "function response(status, headers, body)\n"
           "  if status ~= 200 or body ~= wrk.body then bad = bad + 1 end\n"
           "end\n"
           "function done(summary, latency, requests)\n"
           "  local b = 0\n"
           "  for _, t in ipairs(threads) do b = b + t:get(\"bad\") end\n"
           "  local e = summary.errors\n"
           "  io.write(string.format(\"plexus: %d requests, %d bad, errors %d %d %d %d %d\\n\",\n"
           "    summary.requests, b, e.connect, e.read, e.write, e.status, e.timeout))\n"
           "end\n";
  }
  const auto cmd = wrk + " -t2 -c64 -d10s -s " + script + " http://127.0.0.1:" + std::to_string(r.gw->port()) +
                   "/rpc/echo 2>&1";
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  BOOST_TEST_REQUIRE(p != nullptr);
  char buf[4096];
  while (auto n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  std::remove(script.c_str());
  ::rmdir(dir.c_str());
  BOOST_TEST_REQUIRE((WIFEXITED(status) && WEXITSTATUS(status) == 0), cmd << " failed:\n" << out);
  std::smatch m;
  BOOST_TEST_REQUIRE(std::regex_search(out, m, std::regex{R"(plexus: (\d+) requests, (\d+) bad, errors (\d+) (\d+) (\d+) (\d+) (\d+))"}),
                     "no summary from wrk:\n" << out);
  const auto requests = std::stoull(m[1]);
  BOOST_TEST_MESSAGE("wrk: " << requests << " requests in 10 s through the gateway");
  BOOST_TEST(requests > 1000u, out);
  BOOST_TEST(m[2].str() == "0", "answers that were not 200 with the echo:\n" << out);
  for (int i = 3; i <= 7; ++i) BOOST_TEST(m[i].str() == "0", "wrk's errors (connect read write status timeout):\n" << out);
  const auto st = r.gw->stats();
  BOOST_TEST(st.server_errors == 0u);
  BOOST_TEST(st.client_errors == 0u);
  BOOST_TEST(st.requests >= requests);
}

BOOST_AUTO_TEST_SUITE_END()
