// SPDX-License-Identifier: Apache-2.0
// Spans as Zipkin v2 JSON: the fields a collector reads, in its units,
// strings that stay valid JSON whatever bytes a cause holds, and the POST
// to a collector (an httplib server of the test's own).
#include <boost/test/unit_test.hpp>

#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

#include "plexus/trace.hpp"

using namespace plexus;

namespace {

span invocation(std::string id, std::string parent, std::string function) {
  span s;
  s.trace_id = "4BF92F3577B34DA6A3CE929D0E0E4736";
  s.span_id = std::move(id);
  s.parent_id = std::move(parent);
  s.kind = "invocation";
  s.node = "n1";
  s.service = "shipping";
  s.function = std::move(function);
  s.topic = "orders.shipped";
  s.msg_id = "m-1";
  s.delivery = 1;
  s.start_ns = 1'700'000'000'123'456'789;
  s.duration_ns = 4'200'500; // 4200.5 us: rounded up
  return s;
}

/// A collector on a free loopback port that keeps what is POSTed to
/// /api/v2/spans and answers 500 on /broken.
struct collector {
  httplib::Server server;
  int port = 0;
  std::mutex m;
  std::string body, content_type; // under m
  std::thread thread;

  collector() {
    server.Post("/api/v2/spans", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock{m};
      body = req.body;
      content_type = req.get_header_value("Content-Type");
      res.status = 202;
    });
    server.Post("/broken", [](const httplib::Request&, httplib::Response& res) {
      res.status = 500;
      res.set_content("storage is down", "text/plain");
    });
    port = server.bind_to_any_port("127.0.0.1"); // listening from here: the backlog holds a client
    BOOST_TEST_REQUIRE(port > 0);
    thread = std::thread{[this] { server.listen_after_bind(); }};
  }
  ~collector() { stop(); }
  void stop() {
    server.stop();
    if (thread.joinable()) thread.join();
  }
  [[nodiscard]] std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
};

} // namespace

BOOST_AUTO_TEST_SUITE(zipkin)

BOOST_AUTO_TEST_CASE(a_root_invocation_renders_every_field_in_microseconds_without_a_parent) {
  auto s = invocation("00F067AA0BA902B7", "", "validate-address");
  auto json = zipkin_json({s});
  BOOST_TEST(json ==
             "[\n"
             "{\"traceId\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"id\":\"00f067aa0ba902b7\","
             "\"name\":\"validate-address\",\"kind\":\"CONSUMER\",\"timestamp\":1700000000123456,"
             "\"duration\":4201,\"localEndpoint\":{\"serviceName\":\"shipping\"},"
             "\"tags\":{\"function\":\"validate-address\",\"topic\":\"orders.shipped\","
             "\"msg_id\":\"m-1\",\"delivery\":\"1\",\"cold_start\":\"false\",\"status\":\"ok\","
             "\"node\":\"n1\"}}\n"
             "]\n");
  BOOST_TEST(json.find("parentId") == std::string::npos); // a root has none
  BOOST_TEST(json.find("\"error\"") == std::string::npos); // nor an error tag when ok
  BOOST_TEST(zipkin_json({}) == "[]\n");
}

BOOST_AUTO_TEST_CASE(a_failed_call_gives_client_and_server_spans_with_parents_and_error_tags) {
  auto root = invocation("a000000000000001", "", "send-confirmation");
  root.status = span_status::downstream;
  root.cause = "crash in shipping.lookup-customer: boom";
  root.callee = "shipping.lookup-customer";
  auto req = invocation("a000000000000002", "a000000000000001", "send-confirmation");
  req.kind = "request";
  req.topic = "customers.lookup";
  req.status = span_status::downstream;
  req.cause = root.cause;
  req.callee = root.callee;
  req.duration_ns = 999; // under a microsecond: 1, never 0
  auto callee = invocation("a000000000000003", "a000000000000002", "lookup-customer");
  callee.topic = "customers.lookup";
  callee.status = span_status::crash;
  callee.cause = "boom";
  callee.cold_start = true;
  callee.delivery = 3;
  auto late = invocation("a000000000000004", "", "create-label");
  late.status = span_status::no_responders; // no cause: the error tag is the status
  late.duration_ns = 0;
  auto json = zipkin_json({root, req, callee, late});

  auto object = [&](const std::string& id) { // the span object with this id
    auto at = json.find("\"id\":\"" + id + "\"");
    BOOST_TEST_REQUIRE(at != std::string::npos, id);
    auto begin = json.rfind('{', at);
    return json.substr(begin, json.find("}}", at) + 2 - begin);
  };
  auto r = object("a000000000000001"), q = object("a000000000000002"),
       c = object("a000000000000003"), l = object("a000000000000004");
  BOOST_TEST(r.find("\"kind\":\"CONSUMER\"") != std::string::npos, r);
  BOOST_TEST(r.find("\"callee\":\"shipping.lookup-customer\"") != std::string::npos, r);
  BOOST_TEST(r.find("\"status\":\"downstream\"") != std::string::npos, r);
  BOOST_TEST(r.find("\"error\":\"crash in shipping.lookup-customer: boom\"") != std::string::npos, r);
  BOOST_TEST(q.find("\"parentId\":\"a000000000000001\"") != std::string::npos, q);
  BOOST_TEST(q.find("\"kind\":\"CLIENT\"") != std::string::npos, q);
  BOOST_TEST(q.find("\"name\":\"request customers.lookup\"") != std::string::npos, q);
  BOOST_TEST(q.find("\"duration\":1,") != std::string::npos, q);
  BOOST_TEST(c.find("\"parentId\":\"a000000000000002\"") != std::string::npos, c);
  BOOST_TEST(c.find("\"kind\":\"SERVER\"") != std::string::npos, c); // answering a request
  BOOST_TEST(c.find("\"cold_start\":\"true\"") != std::string::npos, c);
  BOOST_TEST(c.find("\"delivery\":\"3\"") != std::string::npos, c);
  BOOST_TEST(c.find("\"cause\":\"boom\",") != std::string::npos, c);
  BOOST_TEST(c.find("\"error\":\"boom\"") != std::string::npos, c);
  BOOST_TEST(l.find("\"error\":\"no_responders\"") != std::string::npos, l);
  BOOST_TEST(l.find("\"duration\":1,") != std::string::npos, l);
  BOOST_TEST(l.find("\"cause\"") == std::string::npos, l);
  BOOST_TEST(l.find("\"callee\"") == std::string::npos, l);
}

BOOST_AUTO_TEST_CASE(strings_are_escaped_and_bytes_that_are_not_utf8_become_replacement_characters) {
  auto s = invocation("b000000000000001", "", "fn");
  s.status = span_status::error;
  s.cause = std::string{"say \"hi\"\\\n\r\t\b\f\x01\x1f\x7f|caf\xc3\xa9 \xe2\x82\xac|"} +
            "\xff|\xc0\xaf|\xed\xa0\x80|\xe2\x82|\xf4\x90\x80\x80|\xf0\x9f\x98\x80";
  s.msg_id = std::string{"\x00\x01\xfe", 3}; // binary: hex
  auto json = zipkin_json({s});
  const std::string cause =
    "say \\\"hi\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u001f\\u007f|caf\xc3\xa9 \xe2\x82\xac|"
    "\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd\\ufffd|"
    "\xf0\x9f\x98\x80";
  BOOST_TEST(json.find("\"cause\":\"" + cause + "\"") != std::string::npos, json);
  BOOST_TEST(json.find("\"error\":\"" + cause + "\"") != std::string::npos, json);
  BOOST_TEST(json.find("\"msg_id\":\"0x0001fe\"") != std::string::npos, json);
  // No raw control character is left anywhere (the newlines between spans aside).
  for (std::size_t i = 0; i < json.size(); ++i) {
    auto c = static_cast<unsigned char>(json[i]);
    BOOST_TEST_REQUIRE((c >= 0x20 || c == '\n'), "raw byte " << int(c) << " at " << i);
  }
  BOOST_TEST(json.find('\n', 2) == json.size() - 3); // only "[\n" and "\n]\n"
}

BOOST_AUTO_TEST_CASE(post_zipkin_delivers_the_same_json_and_names_each_failure) {
  collector c;
  auto json = zipkin_json({invocation("c000000000000001", "", "fn")});
  auto failed = post_zipkin(c.url("/api/v2/spans"), json);
  BOOST_TEST(!failed.has_value(), failed.value_or(""));
  {
    std::lock_guard lock{c.m};
    BOOST_TEST(c.body == json);
    BOOST_TEST(c.content_type == "application/json");
  }

  auto status = post_zipkin(c.url("/broken"), json);
  BOOST_TEST_REQUIRE(status.has_value());
  BOOST_TEST(status->find("answered 500: storage is down") != std::string::npos, *status);

  BOOST_TEST(post_zipkin("localhost:9411/api/v2/spans", json).value_or("").find("not an http") == 0u);
  c.stop();
  auto refused = post_zipkin(c.url("/api/v2/spans"), json, std::chrono::milliseconds{2000});
  BOOST_TEST_REQUIRE(refused.has_value());
  BOOST_TEST(refused->find("cannot POST to " + c.url("/api/v2/spans")) == 0u, *refused);
}

BOOST_AUTO_TEST_SUITE_END()
