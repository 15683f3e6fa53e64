// SPDX-License-Identifier: Apache-2.0
// Request circuit breakers end to end: a client against a TCP broker and a
// node on its embedded broker, with a callee that fails (nobody serves it,
// or it never answers) and then recovers. The breaker opens within its
// window, refuses at once with circuit_open (or its fallback answers),
// half-opens after its wait and closes on a good trial; each change is a
// $SYS.breaker event, a gauge, and the span of a refused request says so.
#define BOOST_TEST_MODULE plexus_breaker
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "plexus/node.hpp"
#include "plexus/trace.hpp"
#include "runtime_helpers.hpp"
#include "waiter.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using plexus::test::confirmed;
using plexus::test::tcp_broker;
using plexus::test::waiter;

namespace {

// Everything published on a pattern, decoded by `decode`, kept for the
// test; shared with the handler (a late message lands safely).
template <class T>
class collector {
public:
  template <class Decode>
  collector(client& c, std::string_view pattern, Decode decode) : s_(std::make_shared<held>()) {
    c.subscribe(pattern, [s = s_, decode](const message_view& v) {
      auto items = decode(v.payload);
      s->w.update([&] { s->items.insert(s->items.end(), items.begin(), items.end()); });
    });
  }
  // Waits until `pred` holds for what arrived; false past the deadline.
  template <class Pred>
  bool until(Pred pred, std::chrono::milliseconds deadline = 20s) {
    return s_->w.until([&] { return pred(s_->items); }, deadline);
  }
  std::vector<T> items() {
    std::vector<T> out;
    s_->w.update([&] { out = s_->items; });
    return out;
  }

private:
  struct held {
    waiter w;
    std::vector<T> items;
  };
  std::shared_ptr<held> s_;
};

collector<breaker_event> breaker_events(client& c) {
  return collector<breaker_event>{c, "$SYS.breaker.>", [](std::string_view p) {
                                    return std::vector<breaker_event>{decode_breaker_event(p)};
                                  }};
}

std::vector<std::string> states_of(const std::vector<breaker_event>& events, std::string_view topic) {
  std::vector<std::string> out;
  for (const auto& e : events)
    if (e.topic == topic) out.push_back(e.state);
  return out;
}

std::optional<breaker_info> breaker_of(const client& c, std::string_view topic) {
  for (auto& b : c.breakers())
    if (b.topic == topic) return b;
  return std::nullopt;
}

bool reads(const client& c, std::string_view topic, breaker_state s) {
  auto b = breaker_of(c, topic);
  return b && b->state == s;
}

// Waits (with a deadline, on the real clock) until the breaker of `topic`
// reads `s`: how a test sees an open breaker's wait end.
bool becomes(const client& c, std::string_view topic, breaker_state s) {
  waiter w;
  return w.until([&] { return reads(c, topic, s); }, 20s);
}

client_options at(std::string endpoint) {
  client_options o;
  o.endpoint = std::move(endpoint);
  return o;
}

} // namespace

BOOST_AUTO_TEST_SUITE(breakers)

BOOST_AUTO_TEST_CASE(a_callee_nobody_serves_opens_the_breaker_which_refuses_at_once_then_closes_after_recovery) {
  tcp_broker b;
  auto o = at(b.endpoint());
  o.breaker.enabled = true;
  o.breaker.min_requests = 5;
  o.breaker.window = 30s;
  o.breaker.half_open_after = 300ms;
  client caller{o};
  client watcher{at(b.endpoint())};
  auto events = breaker_events(watcher);
  BOOST_TEST(confirmed(watcher, "$sync", "") == 101u); // the watcher's SUB is in

  // Down: nobody serves svc.price. Five failures in the window open it.
  for (int i = 0; i < 5; ++i) {
    BOOST_TEST_REQUIRE(reads(caller, "svc.price", breaker_state::open) == false);
    BOOST_TEST(caller.request("svc.price", "x", 5s).code == code_of(status::no_responders));
  }
  BOOST_TEST(reads(caller, "svc.price", breaker_state::open));
  auto info = *breaker_of(caller, "svc.price");
  BOOST_TEST(info.requests == 5u);
  BOOST_TEST(info.failures == 5u);
  BOOST_TEST(info.opened == 1u);

  // Open: refused without being sent, whatever the timeout.
  auto refused = caller.request("svc.price", "x", 60s);
  BOOST_TEST(refused.code == status_circuit_open);
  BOOST_TEST(!refused.fallback);
  BOOST_TEST(refused.text.find("circuit open for svc.price: 5 of 5 requests failed") == 0u, refused.text);
  BOOST_TEST(caller.stats().circuit_open == 1u);
  BOOST_TEST(std::string{status_text(refused.code)}.find("circuit open") == 0u);
  // Other topics have breakers of their own.
  BOOST_TEST(caller.request("svc.other", "x", 5s).code == code_of(status::no_responders));

  // A fallback answers while it is open.
  caller.fallback("svc.*", [](std::string_view topic, std::string_view payload) {
    return reply{0, "cached " + std::string{topic} + " " + std::string{payload}, {}, {}, {}};
  });
  auto answered = caller.request("svc.price", "p1", 5s);
  BOOST_TEST(answered.code == 0u);
  BOOST_TEST(answered.fallback);
  BOOST_TEST(answered.payload == "cached svc.price p1");
  BOOST_TEST(caller.stats().fallbacks == 1u);
  BOOST_TEST(caller.stats().circuit_open == 2u);

  // Recovery: a responder comes; after its wait the breaker lets a trial
  // through, which succeeds and closes it.
  client callee{at(b.endpoint())};
  auto* cp = &callee;
  callee.subscribe("svc.price", [cp](const message_view& m) { cp->publish(m.reply_to, "fresh"); });
  BOOST_TEST(confirmed(callee, "$sync", "") == 101u);
  BOOST_TEST_REQUIRE(becomes(caller, "svc.price", breaker_state::half_open));
  auto trial = caller.request("svc.price", "x", 5s);
  BOOST_TEST(trial.code == 0u);
  BOOST_TEST(!trial.fallback);
  BOOST_TEST(trial.payload == "fresh");
  BOOST_TEST(reads(caller, "svc.price", breaker_state::closed));
  BOOST_TEST(caller.request("svc.price", "x", 5s).payload == "fresh");

  // Each change of state was published, in order, by the caller.
  BOOST_TEST_REQUIRE(events.until([](const std::vector<breaker_event>& es) {
    return states_of(es, "svc.price").size() >= 3;
  }));
  auto es = events.items();
  std::vector<std::string> want{"opened", "half_open", "closed"};
  BOOST_TEST(states_of(es, "svc.price") == want, boost::test_tools::per_element());
  for (auto& e : es) BOOST_TEST(e.node == caller.node_id());
  BOOST_TEST(es[0].requests == 5u);
  BOOST_TEST(es[0].failures == 5u);
  BOOST_TEST(es[2].trials == 1u);
}

BOOST_AUTO_TEST_CASE(a_callee_that_times_out_opens_it_and_a_trial_that_times_out_opens_it_again) {
  tcp_broker b;
  auto o = at(b.endpoint());
  o.breaker.enabled = true;
  o.breaker.min_requests = 3;
  o.breaker.half_open_after = 200ms;
  client caller{o};
  client callee{at(b.endpoint())};
  auto healthy = std::make_shared<std::atomic<bool>>(false);
  auto* cp = &callee;
  callee.subscribe("svc.slow", [cp, healthy](const message_view& m) {
    if (*healthy) cp->publish(m.reply_to, "ok"); // else: never answers
  });
  BOOST_TEST(confirmed(callee, "$sync", "") == 101u);
  auto events = breaker_events(caller);
  BOOST_TEST(confirmed(caller, "$sync", "") == 101u);

  for (int i = 0; i < 3; ++i) BOOST_TEST(caller.request("svc.slow", "x", 50ms).code == status_timeout);
  BOOST_TEST(reads(caller, "svc.slow", breaker_state::open));
  BOOST_TEST(caller.request("svc.slow", "x", 50ms).code == status_circuit_open);

  // The trial times out too: open again, for another wait.
  BOOST_TEST_REQUIRE(becomes(caller, "svc.slow", breaker_state::half_open));
  BOOST_TEST(caller.request("svc.slow", "x", 50ms).code == status_timeout);
  BOOST_TEST(reads(caller, "svc.slow", breaker_state::open));
  BOOST_TEST(breaker_of(caller, "svc.slow")->opened == 2u);

  *healthy = true;
  BOOST_TEST_REQUIRE(becomes(caller, "svc.slow", breaker_state::half_open));
  BOOST_TEST(caller.request("svc.slow", "x", 5s).payload == "ok");
  BOOST_TEST(reads(caller, "svc.slow", breaker_state::closed));

  BOOST_TEST_REQUIRE(events.until([](const std::vector<breaker_event>& es) {
    return states_of(es, "svc.slow").size() >= 5;
  }));
  std::vector<std::string> want{"opened", "half_open", "opened", "half_open", "closed"};
  BOOST_TEST(states_of(events.items(), "svc.slow") == want, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(a_breaker_that_is_off_never_refuses) {
  tcp_broker b;
  client caller{at(b.endpoint())};
  for (int i = 0; i < 30; ++i)
    BOOST_TEST_REQUIRE(caller.request("svc.none", "x", 5s).code == code_of(status::no_responders));
  BOOST_TEST(caller.breakers().empty());
  BOOST_TEST(caller.stats().circuit_open == 0u);
}

BOOST_AUTO_TEST_CASE(a_handler_s_request_refused_by_an_open_breaker_has_a_circuit_open_span) {
  tcp_broker b;
  node_options no;
  no.broker = b.endpoint();
  no.breaker.enabled = true;
  no.breaker.min_requests = 3;
  no.breaker.half_open_after = 300ms;
  node n{no};
  n.service("svc").function("caller").on("t.call").max_deliver(1) // one span per message
    .handle([](std::string_view, context& ctx) -> result<void> {
      return ctx.request("t.down", "x", 5s, [](const reply& r, context& c) -> result<void> {
        if (r.code != 0) return error{std::string{"t.down: "} + status_text(r.code)};
        c.reply(r.payload);
        return {};
      });
    });
  n.start();
  auto& c = n.client();
  collector<span> spans{c, "$SYS.trace.>", [](std::string_view p) { return decode_spans(p); }};
  auto events = breaker_events(c);
  BOOST_TEST(confirmed(c, "$sync", "") == 101u); // both SUBs are in

  auto find = [&](span_status st, std::string_view kind) {
    std::optional<span> out;
    spans.until([&](const std::vector<span>& ss) {
      for (auto& s : ss)
        if (s.function == "caller" && s.status == st && s.kind == kind) {
          out = s;
          return true;
        }
      return false;
    });
    BOOST_TEST_REQUIRE(out.has_value(), "no " << kind << " span with status " << to_string(st));
    return *out;
  };

  for (int i = 0; i < 3; ++i) {
    auto r = c.request("t.call", "x", 5s);
    BOOST_TEST(r.code == status_failed);
    BOOST_TEST(r.failure == "no_responders");
  }
  BOOST_TEST(reads(c, "t.down", breaker_state::open));

  // Refused at once: the handler hears circuit_open and fails on it; the
  // failure reply and both spans say circuit_open.
  auto r = c.request("t.call", "x", 5s);
  BOOST_TEST(r.code == status_failed);
  BOOST_TEST(r.failure == "circuit_open");
  auto req = find(span_status::circuit_open, "request");
  BOOST_TEST(req.topic == "t.down");
  BOOST_TEST(req.cause.find("circuit open for t.down: 3 of 3 requests failed") == 0u, req.cause);
  auto inv = find(span_status::circuit_open, "invocation");
  BOOST_TEST(inv.span_id == req.parent_id);

  auto metrics = n.metrics_text();
  BOOST_TEST(metrics.find(R"(plexus_breaker_state{topic="t.down",state="open"} 1)") != std::string::npos,
             metrics);
  BOOST_TEST(metrics.find(R"(plexus_breaker_opened_total{topic="t.down"} 1)") != std::string::npos);

  // With a fallback the handler gets an answer; the request's span still
  // says the breaker refused it, and the invocation succeeds.
  c.fallback("t.down", [](std::string_view, std::string_view) {
    return reply{0, "cached", {}, {}, {}};
  });
  auto fb = c.request("t.call", "x", 5s);
  BOOST_TEST(fb.code == 0u);
  BOOST_TEST(fb.payload == "cached");
  BOOST_TEST_REQUIRE(spans.until([](const std::vector<span>& ss) {
    for (auto& s : ss)
      if (s.kind == "request" && s.status == span_status::circuit_open
          && s.cause.find("its fallback answered") != std::string::npos)
        return true;
    return false;
  }));

  // The callee recovers: the breaker half-opens, the trial passes, it closes.
  client callee{at(b.endpoint())};
  auto* cp = &callee;
  callee.subscribe("t.down", [cp](const message_view& m) { cp->publish(m.reply_to, "fresh"); });
  BOOST_TEST(confirmed(callee, "$sync", "") == 101u);
  BOOST_TEST_REQUIRE(becomes(c, "t.down", breaker_state::half_open));
  auto fresh = c.request("t.call", "x", 5s);
  BOOST_TEST(fresh.code == 0u);
  BOOST_TEST(fresh.payload == "fresh");
  BOOST_TEST(reads(c, "t.down", breaker_state::closed));
  metrics = n.metrics_text();
  BOOST_TEST(metrics.find(R"(plexus_breaker_state{topic="t.down",state="closed"} 1)") != std::string::npos,
             metrics);
  BOOST_TEST_REQUIRE(events.until([](const std::vector<breaker_event>& es) {
    return states_of(es, "t.down").size() >= 3;
  }));
  std::vector<std::string> want{"opened", "half_open", "closed"};
  BOOST_TEST(states_of(events.items(), "t.down") == want, boost::test_tools::per_element());
  n.stop();
}

BOOST_AUTO_TEST_SUITE_END()
