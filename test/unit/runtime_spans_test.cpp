// SPDX-License-Identifier: Apache-2.0
// Spans: every invocation and every request says how it ended and why,
// derived from what happened; the table of causes from issue #7; their
// stream, their query and the node's metrics endpoint.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <latch>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

#include "plexus/node.hpp"
#include "plexus/trace.hpp"
#include "runtime_helpers.hpp"
#include "waiter.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using plexus::test::confirmed;
using plexus::test::stats_of;
using plexus::test::tcp_broker;
using plexus::test::waiter;

BOOST_AUTO_TEST_SUITE(spans)

namespace {

/// Every span the node publishes on $SYS.trace.<node>. What it holds is
/// shared with the subscription's handler: a batch that arrives as the
/// test ends (the node's client outlives this object) lands in it safely.
class span_log {
public:
  explicit span_log(client& c) : s_(std::make_shared<held>()) {
    c.subscribe("$SYS.trace.>", [s = s_](const message_view& v) {
      auto batch = decode_spans(v.payload);
      s->w.update([&] { for (auto& x : batch) s->spans.push_back(std::move(x)); });
    });
  }

  /// How many spans arrived so far.
  std::size_t count() {
    std::size_t n = 0;
    s_->w.until([&] {
      n = s_->spans.size();
      return true;
    });
    return n;
  }
  /// How many spans of the message `msg_id` arrived so far.
  std::size_t count_msg(std::string_view msg_id) {
    std::size_t n = 0;
    s_->w.until([&] {
      n = static_cast<std::size_t>(std::count_if(s_->spans.begin(), s_->spans.end(),
                                                 [&](const span& x) { return x.msg_id == msg_id; }));
      return true;
    });
    return n;
  }
  /// The span of the message `msg_id`, waiting for it.
  span find_msg(std::string_view msg_id) {
    span out;
    bool found = s_->w.until([&] {
      for (auto& x : s_->spans)
        if (x.msg_id == msg_id) {
          out = x;
          return true;
        }
      return false;
    });
    BOOST_TEST_REQUIRE(found, "no span of message " << msg_id << " arrived");
    return out;
  }
  /// The first span of `function` (and `kind`) with `status`, waiting for it.
  span find(std::string_view function, span_status status, std::string_view kind = "invocation") {
    span out;
    bool found = s_->w.until([&] {
      for (auto& x : s_->spans)
        if (x.function == function && x.status == status && x.kind == kind) {
          out = x;
          return true;
        }
      return false;
    });
    BOOST_TEST_REQUIRE(found, "no " << kind << " span of " << function << " with status "
                                    << to_string(status) << " arrived");
    return out;
  }

private:
  struct held {
    waiter w;
    std::vector<span> spans;
  };
  std::shared_ptr<held> s_;
};

result<void> fail_if_failed(const reply& r, context&) {
  if (r.code != 0) return error{std::string{"the request failed: "} + status_text(r.code)};
  return {};
}

} // namespace

BOOST_AUTO_TEST_CASE(each_failure_is_classified_on_the_right_span_with_its_cause) {
  node n{node_options{}};
  auto& svc = n.service("svc");
  svc.function("fails").on("t.error").max_deliver(1)
    .handle([](std::string_view, context&) -> result<void> { return error{"bad input"}; });
  svc.function("refuses").on("t.reject")
    .handle([](std::string_view, context&) -> result<void> { return reject{"not an order"}; });
  svc.function("crashes").on("t.crash").poison_after(2)
    .handle([](std::string_view, context&) -> result<void> { throw std::runtime_error("boom"); });
  svc.function("slow").on("t.slow").blocking()
    .handle([](std::string_view, context&) -> result<void> {
      std::this_thread::sleep_for(300ms); // past the 100 ms its requester gives it
      return {};
    });
  svc.function("caller").on("t.call").max_deliver(1) // no retry: one span per case
    .handle([](std::string_view target, context& ctx) -> result<void> {
      return ctx.request(target, "x", 100ms, &fail_if_failed);
    });
  n.start();
  span_log log{n.client()};
  BOOST_TEST(confirmed(n.client(), "$sync", "") == 101u); // the log's SUB is in

  (void)n.client().request("t.error", "x", 5s);
  auto err = log.find("fails", span_status::error);
  BOOST_TEST(err.cause == "bad input");
  BOOST_TEST(err.service == "svc");
  BOOST_TEST(err.topic == "t.error");

  (void)n.client().request("t.reject", "x", 5s);
  BOOST_TEST(log.find("refuses", span_status::dead_lettered).cause == "not an order");

  n.client().publish("t.crash", "x");
  BOOST_TEST(log.find("crashes", span_status::crash).cause == "boom");
  auto poison = log.find("crashes", span_status::dead_lettered); // its 2nd crash: quarantined
  BOOST_TEST(poison.delivery == 2u);
  BOOST_TEST(poison.cause.find("poison") == 0u);

  publish_options with_deadline; // as a plexus caller sends: the deadline travels
  with_deadline.deadline_ns = static_cast<std::uint64_t>(
    std::chrono::duration_cast<std::chrono::nanoseconds>(
      (std::chrono::system_clock::now() + 100ms).time_since_epoch()).count());
  auto own = n.client().request("t.slow", "x", 100ms, with_deadline); // the callee overruns it
  BOOST_TEST(own.code == status_timeout);
  BOOST_TEST(log.find("slow", span_status::timeout).cause.find("past its deadline") != std::string::npos);

  // Downstream: a crash there comes back as the cause, at once.
  (void)n.client().request("t.call", "t.crash", 5s);
  auto req = log.find("caller", span_status::downstream, "request");
  BOOST_TEST(req.callee == "svc.crashes");
  BOOST_TEST(req.cause == "crash in svc.crashes: boom");
  auto inv = log.find("caller", span_status::downstream);
  BOOST_TEST(inv.cause == "crash in svc.crashes: boom");
  BOOST_TEST(req.parent_id == inv.span_id);
  BOOST_TEST(req.trace_id == inv.trace_id);

  // Downstream timeout: the callee overran; the caller's request timed out.
  (void)n.client().request("t.call", "t.slow", 5s);
  auto late = log.find("caller", span_status::timeout, "request");
  BOOST_TEST(late.cause.find("no reply from t.slow within") == 0u, late.cause);

  // No responders: nobody serves the topic.
  (void)n.client().request("t.call", "t.nobody", 5s);
  BOOST_TEST(log.find("caller", span_status::no_responders, "request").cause == "nobody serves t.nobody");
  BOOST_TEST(log.find("caller", span_status::no_responders).cause == "nobody serves t.nobody");
}

BOOST_AUTO_TEST_CASE(a_request_to_a_full_queue_group_is_rejected_at_once_not_timed_out) {
  tcp_broker b{1}; // one request may wait in a queue group; the next is dropped
  node n{node_options{.broker = b.endpoint(), .duration = {}}};
  auto& svc = n.service("svc");
  std::promise<void> release;
  auto released = release.get_future().share();
  std::atomic<int> busy_started{0};
  svc.function("busy").on("t.busy").instances(1).prefetch(1).blocking()
    .handle([&, released](std::string_view, context& ctx) -> result<void> {
      ++busy_started;
      released.wait();
      ctx.reply("done");
      return {};
    });
  std::atomic<int> answered{0};
  svc.function("caller").on("t.call").max_deliver(1)
    .handle([&](std::string_view, context& ctx) -> result<void> {
      return ctx.request("t.busy", "x", 30s, [&](const reply& r, context& c) -> result<void> {
        if (r.code == 0) ++answered;
        return fail_if_failed(r, c);
      });
    });
  n.start();
  span_log log{n.client()};
  BOOST_TEST(confirmed(n.client(), "$sync", "") == 101u); // the log's SUB is in
  waiter w;
  n.client().publish("t.call", "1"); // busy takes it, and holds it
  BOOST_TEST_REQUIRE(w.until([&] { return busy_started == 1; }));
  n.client().publish("t.call", "2"); // busy's pool holds it (credit: 1 instance + prefetch 1)
  n.client().publish("t.call", "3"); // waits in the group
  n.client().publish("t.call", "4"); // no room: rejected, long before its 30 s
  auto req = log.find("caller", span_status::rejected, "request");
  BOOST_TEST(req.cause == "overloaded on the way to t.busy");
  BOOST_TEST(req.duration_ns < 10'000'000'000ull);
  BOOST_TEST(log.find("caller", span_status::rejected).cause == "overloaded on the way to t.busy");
  release.set_value(); // the three that got in are answered
  BOOST_TEST(w.until([&] { return answered == 3; }));
  n.stop();
  b.stop();
}

/// A started node that records every span, with one function that succeeds
/// on `topic`.
std::unique_ptr<node> every_span_node(const std::string& topic) {
  node_options every_span;
  every_span.trace_sample = 1;
  auto n = std::make_unique<node>(every_span);
  n->service("s").function("f").on(topic)
    .handle([](std::string_view, context&) -> result<void> { return {}; });
  n->start();
  return n;
}

BOOST_AUTO_TEST_CASE(spans_nobody_listens_to_are_kept_and_a_new_listener_gets_every_later_one) {
  auto traced = every_span_node("t.f");
  auto& n = *traced;
  // Nobody subscribes to $SYS.trace: the node stops sending spans...
  for (int i = 0; i < 600; ++i) BOOST_TEST_REQUIRE(confirmed(n.client(), "t.f", "x") == 0u);
  // ...but keeps them for a query.
  waiter w;
  std::size_t kept = 0;
  BOOST_TEST(w.until([&] {
    auto r = n.client().request("$SYS.trace-query", "*", 5s);
    kept = r.code == 0 ? decode_spans(r.payload).size() : 0;
    return kept >= 600;
  }), kept);
  // A listener gets every span recorded after it subscribed, also those of
  // the moment before the node's next probe noticed it, and each once.
  span_log log{n.client()};
  BOOST_TEST(confirmed(n.client(), "$sync", "") == 101u); // the log's SUB is in
  std::vector<std::string> ids;
  for (int i = 0; i < 300; ++i) {
    ids.push_back("after-" + std::to_string(i));
    BOOST_TEST_REQUIRE(confirmed(n.client(), "t.f", "x", ids.back()) == 0u);
  }
  for (auto& id : ids) log.find_msg(id);
  // Spans go out in the order they were kept: once this one is in, no
  // repeat of the others can still be on its way.
  BOOST_TEST_REQUIRE(confirmed(n.client(), "t.f", "x", "marker") == 0u);
  log.find_msg("marker");
  for (auto& id : ids) BOOST_TEST(log.count_msg(id) == 1u, id);
}

// The sink's interest follows its listeners: one that leaves stops the
// stream (the broker answers the next probe 101), one that comes back
// gets every span recorded after it subscribed, each once.
BOOST_AUTO_TEST_CASE(a_listener_that_leaves_and_comes_back_gets_every_later_span_once) {
  auto traced = every_span_node("t.f");
  auto& n = *traced;
  waiter w;
  std::map<std::string, int> seen; // msg id: spans of it
  auto listen = [&] {
    auto sid = n.client().subscribe("$SYS.trace.>", [&](const message_view& v) {
      auto batch = decode_spans(v.payload);
      w.update([&] { for (auto& x : batch) ++seen[x.msg_id]; });
    });
    BOOST_TEST(confirmed(n.client(), "$sync", "") == 101u); // the SUB is in
    return sid;
  };
  auto run = [&](const std::string& prefix, int count) {
    std::vector<std::string> ids;
    for (int i = 0; i < count; ++i) {
      ids.push_back(prefix + std::to_string(i));
      BOOST_TEST_REQUIRE(confirmed(n.client(), "t.f", "x", ids.back()) == 0u);
    }
    return ids;
  };
  auto all_once = [&](const std::vector<std::string>& ids) {
    // Spans go out in the order they were kept: once the marker is in,
    // no repeat of the others can still be on its way.
    auto marker = run(ids.front() + "-marker", 1).front();
    BOOST_TEST_REQUIRE(w.until([&] { return seen.count(marker) == 1; }));
    w.update([&] {
      for (auto& id : ids) BOOST_TEST(seen[id] == 1, id << " arrived " << seen[id] << " times");
    });
  };
  auto streaming = [&] {
    const std::string gauge = "\nplexus_node_spans_streaming ";
    auto m = n.metrics_text();
    auto at = m.find(gauge);
    BOOST_TEST_REQUIRE(at != std::string::npos);
    return m.compare(at + gauge.size(), 1, "1") == 0;
  };
  auto first = listen();
  all_once(run("a-", 100));
  BOOST_TEST(streaming());
  n.client().unsubscribe(first);
  BOOST_TEST(confirmed(n.client(), "$sync", "") == 101u); // the UNSUB is in
  // Spans to nobody, until a probe tells the node so (within 250 ms: each
  // round is a confirmed publish, no sleep).
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  for (int i = 0; streaming() && std::chrono::steady_clock::now() < deadline; ++i)
    (void)run("b-" + std::to_string(i) + "-", 1);
  BOOST_TEST_REQUIRE(!streaming());
  (void)listen();
  all_once(run("c-", 200));
  BOOST_TEST(streaming());
}

// A query for every span kept is answered in parts when they do not fit
// in one payload (1 MiB): 4000 spans of ~330 bytes each.
BOOST_AUTO_TEST_CASE(a_query_for_more_spans_than_a_payload_holds_is_answered_in_parts) {
  const std::string topic = "t." + std::string(240, 'x'); // each span carries it
  auto traced = every_span_node(topic);
  auto& n = *traced;
  constexpr std::size_t spans = 4000;
  for (std::size_t i = 0; i + 1 < spans; ++i) n.client().publish(topic, "x");
  BOOST_TEST_REQUIRE(confirmed(n.client(), topic, "x") == 0u);
  waiter w;
  std::map<std::string, std::pair<std::size_t, std::size_t>> got; // inbox: spans, answers
  n.client().subscribe("_INBOX.parts.>", [&](const message_view& v) {
    auto batch = decode_spans(v.payload);
    w.update([&] {
      auto& [count, answers] = got[std::string{v.topic}];
      count += batch.size();
      ++answers;
    });
  });
  BOOST_TEST(confirmed(n.client(), "$sync", "") == 101u); // the SUB is in
  // The last spans reach the node's keeping within its flush (50 ms):
  // ask again until one answer has them all.
  std::pair<std::size_t, std::size_t> last{};
  for (int round = 0; round < 20 && last.first < spans; ++round) {
    auto inbox = "_INBOX.parts." + std::to_string(round);
    publish_options o;
    o.reply_to = inbox;
    n.client().publish("$SYS.trace-query", "*", o);
    (void)w.until([&] { return got[inbox].first >= spans; }, 1s);
    w.update([&] { last = got[inbox]; });
  }
  BOOST_TEST(last.first == spans);
  BOOST_TEST(last.second >= 2u); // 1.3 MB of spans: more than one answer
}

BOOST_AUTO_TEST_CASE(a_callee_s_span_is_the_child_of_the_request_that_called_it) {
  node_options every_span;
  every_span.trace_sample = 1; // successful spans too (failed ones always go out)
  node n{every_span};
  n.service("a").function("front").on("front")
    .handle([](std::string_view, context& ctx) -> result<void> {
      return ctx.request("back", "x", 5s, [](const reply&, context& c) -> result<void> {
        c.reply("done");
        return {};
      });
    });
  n.service("b").function("back").on("back")
    .handle([](std::string_view, context& ctx) -> result<void> {
      ctx.reply("ok");
      return {};
    });
  n.start();
  span_log log{n.client()};
  BOOST_TEST(confirmed(n.client(), "$sync", "") == 101u);
  BOOST_TEST(n.client().request("front", "x", 5s).payload == "done");
  auto front = log.find("front", span_status::ok);
  auto request = log.find("front", span_status::ok, "request");
  auto back = log.find("back", span_status::ok);
  BOOST_TEST(back.trace_id == front.trace_id);
  BOOST_TEST(request.parent_id == front.span_id);
  BOOST_TEST(back.parent_id == request.span_id);
  BOOST_TEST(request.topic == "back");
  BOOST_TEST(back.duration_ns <= request.duration_ns);
}

BOOST_AUTO_TEST_CASE(the_metrics_endpoint_serves_prometheus_text_that_parses_back) {
  node_options o;
  o.metrics_port = -1; // any free port
  node n{o};
  std::atomic<int> calls{0};
  n.service("m").function("f").on("m.f").max_deliver(1)
    .handle([&](std::string_view v, context&) -> result<void> {
      ++calls;
      if (v == "bad") return error{"bad"};
      return {};
    });
  n.service("m").function("g").on("m.g")
    .handle([](std::string_view, context& ctx) -> result<void> {
      if (ctx.delivery() == 1 && ctx.msg_id() == "again") return error{"once"}; // then redelivered
      return {};
    });
  n.start();
  BOOST_TEST_REQUIRE(n.metrics_port() > 0);
  for (int i = 0; i < 7; ++i) BOOST_TEST(confirmed(n.client(), "m.f", "good") == 0u);
  BOOST_TEST(confirmed(n.client(), "m.f", "bad") == 102u);
  for (int i = 0; i < 2; ++i) BOOST_TEST(confirmed(n.client(), "m.g", "x") == 0u);
  BOOST_TEST(confirmed(n.client(), "m.g", "x", "again") == 0u); // ok on its second delivery
  httplib::Client http{"127.0.0.1", n.metrics_port()};
  auto res = http.Get("/metrics");
  BOOST_TEST_REQUIRE(res);
  BOOST_TEST(res->status == 200);
  BOOST_TEST(res->get_header_value("Content-Type").find("text/plain; version=0.0.4") == 0u);
  // Parse it back: every sample belongs to a family declared before it.
  std::map<std::string, std::string> type_of;
  std::map<std::string, double> value;
  std::istringstream in{res->body};
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream t{line.substr(7)};
      std::string name, type;
      t >> name >> type;
      type_of[name] = type;
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    auto space = line.rfind(' ');
    auto series = line.substr(0, space);
    auto name = series.substr(0, series.find('{'));
    auto family = name;
    for (auto suffix : {"_bucket", "_sum", "_count"})
      if (!type_of.contains(family) && family.ends_with(suffix))
        family = family.substr(0, family.size() - std::string_view{suffix}.size());
    BOOST_TEST(type_of.contains(family), "undeclared: " << line);
    value[series] = std::stod(line.substr(space + 1));
  }
  const std::string f = "service=\"m\",function=\"f\"";
  BOOST_TEST(type_of["plexus_function_invocations_total"] == "counter");
  BOOST_TEST(type_of["plexus_function_duration_seconds"] == "histogram");
  BOOST_TEST(value["plexus_function_invocations_total{" + f + ",status=\"ok\"}"] == 7.0);
  BOOST_TEST(value["plexus_function_invocations_total{" + f + ",status=\"error\"}"] == 1.0);
  BOOST_TEST(value["plexus_function_duration_seconds_count{" + f + "}"] == 8.0);
  BOOST_TEST(value["plexus_function_duration_seconds_bucket{" + f + ",le=\"+Inf\"}"] == 8.0);
  auto p50 = value["plexus_function_duration_quantile_seconds{" + f + ",quantile=\"0.5\"}"];
  auto p999 = value["plexus_function_duration_quantile_seconds{" + f + ",quantile=\"0.999\"}"];
  BOOST_TEST(p50 > 0.0);
  BOOST_TEST(p50 <= p999);
  // The service's histogram holds both functions' durations.
  BOOST_TEST(type_of["plexus_service_duration_seconds"] == "histogram");
  BOOST_TEST(value["plexus_service_duration_seconds_count{service=\"m\"}"] == 12.0); // 8 + 4 runs of g
  BOOST_TEST(value["plexus_service_duration_seconds_bucket{service=\"m\",le=\"+Inf\"}"] == 12.0);
  BOOST_TEST(value["plexus_function_redeliveries_total{service=\"m\",function=\"g\"}"] == 1.0);
  BOOST_TEST(value["plexus_function_redeliveries_total{" + f + "}"] == 0.0);
  BOOST_TEST(value["plexus_service_duration_seconds_sum{service=\"m\"}"]
             >= value["plexus_function_duration_seconds_sum{" + f + "}"]);
  BOOST_TEST(value["plexus_service_duration_quantile_seconds{service=\"m\",quantile=\"0.5\"}"] > 0.0);
  auto st = stats_of(n, "f");
  BOOST_TEST(st.invocations == 8u);
  BOOST_TEST(st.duration_p50_ns > 0u);
}

BOOST_AUTO_TEST_CASE(the_gauges_count_messages_in_flight_waiting_and_credit_then_return_to_zero) {
  constexpr std::uint32_t instances = 3, sent = 10, prefetch = 64;
  struct gate { // every handler waits until the test opens it (once, also on a failed REQUIRE)
    std::latch latch{1};
    std::atomic<bool> opened{false};
    void open() {
      if (!opened.exchange(true)) latch.count_down();
    }
  } held;
  waiter started;
  std::uint32_t running = 0;
  node_options o;
  o.metrics_port = -1;
  node n{o};
  struct opens_on_exit {
    gate& g;
    ~opens_on_exit() { g.open(); } // before the node stops: its handlers must end
  } guard{held};
  n.service("g").function("held").on("g.held").instances(instances).prefetch(prefetch).blocking()
    .handle([&](std::string_view, context&) -> result<void> {
      started.update([&] { ++running; });
      held.latch.wait();
      return {};
    });
  n.start();
  BOOST_TEST(stats_of(n, "held").credit == instances + prefetch); // granted at SUB
  for (std::uint32_t i = 0; i < sent; ++i) n.client().publish("g.held", "x");
  BOOST_TEST_REQUIRE(started.until([&] { return running == instances; }));
  // The pool sets its gauges after each of its messages: the last batch may still come.
  waiter w;
  bool settled = w.until([&] {
    auto st = stats_of(n, "held");
    return st.in_flight == instances && st.queue_depth == sent - instances;
  });
  auto st = stats_of(n, "held");
  BOOST_TEST_REQUIRE(settled, "in_flight " << st.in_flight << ", queue_depth " << st.queue_depth);
  BOOST_TEST(st.credit == instances + prefetch - sent); // each delivery used one, none is back
  BOOST_TEST(running == instances); // nobody else started

  // The same on /metrics, as gauges.
  auto sample = [&](const std::string& name) -> std::optional<std::string> {
    httplib::Client http{"127.0.0.1", n.metrics_port()};
    auto res = http.Get("/metrics");
    BOOST_TEST_REQUIRE(res);
    auto series = name + "{service=\"g\",function=\"held\"} ";
    auto at = res->body.find("\n" + series);
    if (res->body.find("# TYPE " + name + " gauge\n") == std::string::npos || at == std::string::npos)
      return std::nullopt;
    auto from = at + 1 + series.size();
    return res->body.substr(from, res->body.find('\n', from) - from);
  };
  BOOST_TEST(sample("plexus_function_in_flight").value_or("none") == std::to_string(instances));
  BOOST_TEST(sample("plexus_function_queue_depth").value_or("none") == std::to_string(sent - instances));
  BOOST_TEST(sample("plexus_function_credit").value_or("none") ==
             std::to_string(instances + prefetch - sent));

  held.open();
  bool drained = w.until([&] {
    auto now = stats_of(n, "held");
    return now.ok == sent && now.in_flight == 0 && now.queue_depth == 0 &&
           now.credit == instances + prefetch;
  });
  st = stats_of(n, "held");
  BOOST_TEST(drained, "ok " << st.ok << ", in_flight " << st.in_flight << ", queue_depth "
                            << st.queue_depth << ", credit " << st.credit);
  BOOST_TEST(sample("plexus_function_in_flight").value_or("none") == "0");
  BOOST_TEST(sample("plexus_function_queue_depth").value_or("none") == "0");
  BOOST_TEST(sample("plexus_function_credit").value_or("none") == std::to_string(instances + prefetch));
  n.stop();
}

BOOST_AUTO_TEST_SUITE_END()
