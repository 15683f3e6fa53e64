// SPDX-License-Identifier: Apache-2.0
// The HTTP gateway's sans-IO core (actors/http/gateway_core): options
// checked, routes matched, the outcome -> status table, request headers
// (X-Request-Timeout, traceparent, X-Msg-Id), error bodies and header values.
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <msgpack.hpp>

#include "gateway_core.hpp"
#include "json_msgpack.hpp"
#include "plexus/actors/http.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using namespace plexus::actors;
namespace core = plexus::actors::detail;

namespace {

std::string header(const core::http_answer& a, const std::string& name) {
  for (const auto& [k, v] : a.headers)
    if (k == name) return v;
  return "-";
}

reply failed(std::string failure, std::string from, std::string text) {
  return {status_failed, {}, std::move(text), std::move(from), std::move(failure)};
}

} // namespace

BOOST_AUTO_TEST_SUITE(http_gateway_core)

BOOST_AUTO_TEST_CASE(routes_match_configured_paths_then_events_and_rpc) {
  http_options o;
  o.routes = {{"POST", "/orders", "orders.create", true, 250ms}, {"PUT", "/orders", "orders.put", false}};
  auto m = core::match_route(o, "POST", "/orders");
  BOOST_TEST_REQUIRE(m.target.has_value());
  BOOST_TEST(m.target->topic == "orders.create");
  BOOST_TEST(m.target->timeout.count() == 250);
  m = core::match_route(o, "GET", "/orders");
  BOOST_TEST(m.refusal.status == 405);
  BOOST_TEST(header(m.refusal, "Allow") == "POST, PUT");
  m = core::match_route(o, "POST", "/events/a.b");
  BOOST_TEST_REQUIRE(m.target.has_value());
  BOOST_TEST((m.target->topic == "a.b" && !m.target->request));
  m = core::match_route(o, "POST", "/rpc/a.b");
  BOOST_TEST_REQUIRE(m.target.has_value());
  BOOST_TEST(m.target->request);
  BOOST_TEST(core::match_route(o, "GET", "/rpc/a.b").refusal.status == 405);
  BOOST_TEST(core::match_route(o, "POST", "/rpc/a..b").refusal.status == 400);
  BOOST_TEST(core::match_route(o, "POST", "/rpc/a.*").refusal.status == 400);
  BOOST_TEST(core::match_route(o, "POST", "/events/$SYS.x").refusal.status == 403);
  BOOST_TEST(core::match_route(o, "POST", "/rpc/").refusal.status == 404);
  BOOST_TEST(core::match_route(o, "POST", "/nothing").refusal.status == 404);
  o.rpc = false;
  BOOST_TEST(core::match_route(o, "POST", "/rpc/a.b").refusal.status == 404);
}

BOOST_AUTO_TEST_CASE(options_are_checked_together_naming_each_bad_one) {
  http_options o;
  o.port = 70000;
  o.max_concurrent = 0;
  o.threads = 0;
  o.default_timeout = 2min;
  o.routes = {{"FETCH", "orders", "orders.create"},
              {"POST", "/a", "$SYS.x"},
              {"POST", "/a", "a"},
              {"POST", "/rpc/x", "x"}};
  try {
    gateway g{o};
    BOOST_FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    std::string w = e.what();
    BOOST_TEST_MESSAGE(w);
    for (auto part : {"http gateway: ", "port 70000", "max_concurrent", "threads: 0 (1-64)", "default_timeout",
                      "routes[0] \"orders\": method", "path: starts with", "routes[1] \"/a\": topic",
                      "routes[2] \"/a\": a second route", "routes[3] \"/rpc/x\": path: under"})
      BOOST_TEST(w.find(part) != std::string::npos, "missing " << part);
  }
  BOOST_TEST(core::check_options(http_options{}).empty());
}

BOOST_AUTO_TEST_CASE(replies_and_failures_map_to_status_codes) {
  auto ms = 100ms;
  struct row {
    reply r;
    int status;
    std::string error;
  };
  std::vector<row> rows = {
    {{0, "pong", {}, {}, {}}, 200, ""},
    {{code_of(status::no_responders), {}, {}, {}, {}}, 503, "no_responders"},
    {{status_timeout, {}, {}, {}, {}}, 504, "timeout"},
    {{code_of(status::expired), {}, {}, {}, {}}, 504, "expired"},
    {{code_of(status::overloaded), {}, {}, {}, {}}, 429, "overloaded"},
    {{status_outbox_full, {}, {}, {}, {}}, 429, "overloaded"},
    {{code_of(status::permission_denied), {}, "no", {}, {}}, 403, "permission_denied"},
    {{12, {}, "too big", {}, {}}, 413, "payload_too_large"},
    {{status_circuit_open, {}, {}, {}, {}}, 503, "circuit_open"},
    {failed("error", "app.f", "boom"), 502, "error"},
    {failed("crash", "app.f", "segv"), 502, "crash"},
    {failed("downstream", "app.f", "crash in app.g: x"), 502, "downstream"},
    {failed("timeout", "app.f", "ran 5 ms past its deadline"), 504, "timeout"},
    {failed("no_responders", "app.f", "nobody serves x"), 503, "no_responders"},
    {failed("circuit_open", "app.f", "the circuit breaker for x is open"), 503, "circuit_open"},
    {failed("rejected", "app.f", "overloaded on the way to x"), 429, "rejected"},
    {failed("dead_lettered", "app.f", "not an order"), 422, "dead_lettered"},
  };
  for (const auto& row : rows) {
    auto a = core::answer_reply(row.r, "t", ms);
    BOOST_TEST(a.status == row.status, "code " << row.r.code << " " << row.r.failure);
    if (row.status == 200) {
      BOOST_TEST(a.body == "pong");
      continue;
    }
    BOOST_TEST(a.body.find("\"error\":\"" + row.error + "\"") != std::string::npos, a.body);
    bool retry = row.status == 429 || row.status == 503;
    BOOST_TEST((header(a, "Retry-After") == "1") == retry, row.status);
    if (row.r.code == status_failed) {
      BOOST_TEST(header(a, "X-Plexus-Failure") == row.r.failure);
      BOOST_TEST(header(a, "X-Plexus-From") == "app.f");
      BOOST_TEST(header(a, "X-Plexus-Cause") == row.r.text);
      BOOST_TEST(a.body.find("\"from\":\"app.f\"") != std::string::npos);
    }
  }
}

BOOST_AUTO_TEST_CASE(confirm_codes_map_to_status_codes) {
  std::vector<std::pair<std::uint32_t, int>> rows = {
    {0, 202}, {101, 503}, {102, 422}, {103, 429}, {104, 504}, {105, 403}, {900, 504}, {902, 429}, {901, 503}};
  for (auto [code, want] : rows) {
    auto a = core::answer_confirm(code, "id-1", "t", 100ms);
    BOOST_TEST(a.status == want, "code " << code);
    BOOST_TEST(header(a, "X-Msg-Id") == "id-1");
  }
  BOOST_TEST(core::answer_confirm(0, "id-1", "t", 100ms).body == R"({"msg_id":"id-1"})");
}

BOOST_AUTO_TEST_CASE(request_timeout_header_overrides_the_default_capped_at_max) {
  http_options o;
  o.default_timeout = 2s;
  o.max_timeout = 5s;
  BOOST_TEST(core::choose_timeout(nullptr, 0ms, o).value.count() == 2000);
  BOOST_TEST(core::choose_timeout(nullptr, 300ms, o).value.count() == 300);
  std::string h = "250";
  auto c = core::choose_timeout(&h, 300ms, o);
  BOOST_TEST((c.value.count() == 250 && c.from_header && c.error.empty()));
  h = "999999";
  BOOST_TEST(core::choose_timeout(&h, 0ms, o).value.count() == 5000);
  for (std::string bad : {"", "0", "-5", "1.5", "10s", "99999999999999"}) {
    h = bad;
    BOOST_TEST(!core::choose_timeout(&h, 0ms, o).error.empty(), "accepted \"" << bad << "\"");
  }
  BOOST_TEST(core::deadline_ns(1'000, 250ms) == 250'001'000u);
}

BOOST_AUTO_TEST_CASE(traceparent_msg_ids_and_headers_are_checked_and_made) {
  BOOST_TEST(core::valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  BOOST_TEST(core::valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more"));
  BOOST_TEST(!core::valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more"));
  BOOST_TEST(!core::valid_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
  BOOST_TEST(!core::valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
  BOOST_TEST(!core::valid_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
  BOOST_TEST(!core::valid_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  BOOST_TEST(!core::valid_traceparent(""));
  auto tp = core::make_traceparent(0x0123, 0x4567, 0);
  BOOST_TEST(tp == "00-00000000000001230000000000004567-0000000000000001-01");
  BOOST_TEST(core::valid_traceparent(core::make_traceparent(0, 0, 0)));
  BOOST_TEST(core::hex_id(1, 2) == "00000000000000010000000000000002");
  BOOST_TEST(core::valid_msg_id("order-42"));
  BOOST_TEST(!core::valid_msg_id(""));
  BOOST_TEST(!core::valid_msg_id("a b"));
  BOOST_TEST(!core::valid_msg_id(std::string(65, 'a')));
  BOOST_TEST(core::header_safe("a\r\nb\tc") == "a  b c");
  BOOST_TEST(core::header_safe("ab\xc3\xa9", 3) == "ab"); // not half of an é
  BOOST_TEST(core::error_json("e", "say \"hi\"\n", "s.f") ==
             R"({"error":"e","from":"s.f","cause":"say \"hi\"\n"})");
  BOOST_TEST(core::answer_status(413, 10).body.find("over 10 bytes") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(json_becomes_msgpack_and_back) {
  auto round = [](std::string_view json) {
    std::string mp, why, back;
    BOOST_TEST_REQUIRE(core::json_to_msgpack(json, mp, why), why);
    BOOST_TEST_REQUIRE(core::msgpack_to_json(mp, back));
    return back;
  };
  BOOST_TEST(round(R"( {"a": [1, -2, 3.5, true, false, null], "b": {"c": "d"}} )")
             == R"({"a":[1,-2,3.5,true,false,null],"b":{"c":"d"}})");
  BOOST_TEST(round(R"("tab\tq\"u\u00e9\ud83d\ude00")") == "\"tab\\tq\\\"u\u00e9\U0001F600\"");
  BOOST_TEST(round("18446744073709551615") == "18446744073709551615"); // u64 max stays whole
  BOOST_TEST(round("-9223372036854775808") == "-9223372036854775808");
  BOOST_TEST(round("1e3") == "1000");
  BOOST_TEST(round("[]") == "[]");
  BOOST_TEST(round("{}") == "{}");
  BOOST_TEST(round("\"\\ud800\"") == "\"\xef\xbf\xbd\""); // a lone surrogate: U+FFFD, as plexus::parse_json
  // What a typed handler decodes: the map of its struct.
  std::string mp, why;
  BOOST_TEST_REQUIRE(core::json_to_msgpack(R"({"x": 7})", mp, why));
  auto h = msgpack::unpack(mp.data(), mp.size());
  BOOST_TEST(h.get().type == msgpack::type::MAP);
  BOOST_TEST(h.get().via.map.ptr[0].val.as<int>() == 7);
  // Not JSON: refused, saying where.
  for (std::string_view bad : {"", "{", "[1,]", "{\"a\" 1}", "01", "1.", "\"\\x\"", "tru", "[1] 2",
                               "\"a\nb\"", "1e400"}) {
    std::string out, err;
    BOOST_TEST(!core::json_to_msgpack(bad, out, err), bad);
    BOOST_TEST(err.starts_with("at byte "), err);
  }
  std::string deep(core::max_json_depth + 1, '[');
  std::string err, out;
  BOOST_TEST(!core::json_to_msgpack(deep, out, err));
  BOOST_TEST(err.find("nested too deep") != std::string::npos, err);
  // Not one msgpack value: passed on as bytes (false).
  msgpack::sbuffer two;
  msgpack::pack(two, 1);
  msgpack::pack(two, 2);
  std::string text;
  BOOST_TEST(!core::msgpack_to_json({two.data(), two.size()}, text));
  BOOST_TEST(!core::msgpack_to_json("\xdd\xff\xff\xff\xff", text)); // claims 4 Gi elements
  BOOST_TEST(!core::msgpack_to_json("", text));
}

BOOST_AUTO_TEST_SUITE_END()
