// SPDX-License-Identifier: Apache-2.0
// Functions as actors on a node with its embedded broker: typed payloads,
// automatic ACK/NACK, crashes, poison quarantine, restart intensity.
#define BOOST_TEST_MODULE plexus_runtime
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "plexus/actor.hpp"
#include "plexus/node.hpp"
#include "plexus/wire.hpp"
#include "runtime_helpers.hpp"
#include "waiter.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using plexus::test::confirmed;
using plexus::test::stats_of;
using plexus::test::tcp_broker;
using plexus::test::temp_dir;
using plexus::test::waiter;

namespace {

struct order {
  int id = 0;
  std::string city;
  MSGPACK_DEFINE_MAP(id, city)
};


/// A broker played by the test on a ROUTER: it welcomes every client,
/// confirms what asks for it, hands the first acked queue-group
/// subscription `count` deliveries in one batch, and counts the ACKs and
/// CREDITs that come back.
class scripted_broker {
public:
  explicit scripted_broker(std::uint32_t count) : count_(count) {
    router_.set(zmq::sockopt::linger, 0);
    router_.bind("tcp://127.0.0.1:*");
    endpoint_ = router_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread([this] { serve(); });
  }
  ~scripted_broker() {
    stop_ = true;
    thread_.join();
  }
  [[nodiscard]] const std::string& endpoint() const { return endpoint_; }

  std::atomic<std::uint64_t> acked{0}, credits{0}, credit_envelopes{0}, bad_frames{0};

private:
  void serve() {
    std::vector<zmq::message_t> parts;
    std::vector<wire::entry> entries;
    while (!stop_) {
      zmq::pollitem_t items[] = {{router_.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 1, 10ms);
      parts.clear();
      while (zmq::recv_multipart(router_, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
        if (decode(parts, entries)) ++bad_frames;
        else for (auto& e : entries) answer(parts[0], e.h);
        parts.clear();
      }
    }
  }
  // A client's message after its routing id: a batch frame, or a header
  // (and its payload).
  static wire::decode_error decode(const std::vector<zmq::message_t>& parts,
                                   std::vector<wire::entry>& out) {
    std::vector<std::string_view> frames;
    for (std::size_t i = 1; i < parts.size(); ++i) frames.push_back(parts[i].to_string_view());
    if (frames.size() == 1 && wire::is_batch_frame(frames[0]))
      return wire::decode_batch(frames[0], {}, out);
    out.resize(1);
    return wire::decode_message(frames, {}, out[0]);
  }
  void answer(const zmq::message_t& routing, const wire::header& h) {
    switch (h.kind) {
      case wire::op::hello: {
        wire::header w;
        w.kind = wire::op::welcome;
        w.node = "scripted";
        w.heartbeat_ms = 1000;
        w.max_payload = wire::limits{}.max_payload_bytes;
        send(routing, w);
        break;
      }
      case wire::op::sub:
        if (h.ack == wire::ack_mode::explicit_ack && !h.queue.empty() && !delivered_) {
          delivered_ = true;
          std::string frame;
          wire::batch_writer b{frame};
          b.begin();
          for (std::uint32_t i = 1; i <= count_; ++i) {
            wire::header m;
            m.kind = wire::op::msg;
            m.sid = h.sid;
            m.topic = h.topic;
            m.seq = i;
            m.delivery = 1;
            b.add(m, "x");
          }
          b.finish();
          router_.send(zmq::buffer(routing.to_string_view()), zmq::send_flags::sndmore);
          router_.send(zmq::buffer(frame));
        }
        break;
      case wire::op::pub:
        if (h.flags & wire::flag_confirm) { // the node's "up" announcement: start() waits for it
          wire::header c;
          c.kind = wire::op::confirm;
          c.msg_id = h.msg_id;
          send(routing, c);
        }
        break;
      case wire::op::ack: acked += h.count > 1 ? h.count : 1; break;
      case wire::op::credit:
        ++credit_envelopes;
        credits += h.credit;
        break;
      default: break;
    }
  }
  void send(const zmq::message_t& routing, const wire::header& h) {
    std::string bytes;
    wire::encode_header(h, bytes);
    router_.send(zmq::buffer(routing.to_string_view()), zmq::send_flags::sndmore);
    router_.send(zmq::buffer(bytes));
  }

  std::uint32_t count_;
  bool delivered_ = false;
  zmq::context_t ctx_{1};
  zmq::socket_t router_{ctx_, zmq::socket_type::router};
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

} // namespace

BOOST_AUTO_TEST_SUITE(runtime)

BOOST_AUTO_TEST_CASE(a_typed_function_handles_every_message_and_acks_it) {
  node n{node_options{}};
  waiter w;
  std::set<int> seen;
  n.service("shipping").function("count").on("orders.*.shipped")
    .handle([&](const order& o, context& ctx) -> result<void> {
      if (o.city.empty()) return error{"no city"};
      w.update([&] { seen.insert(o.id); });
      ctx.publish("orders.counted", std::to_string(o.id));
      return {};
    });
  n.start();
  // Confirms come after the function's ACK: every one is handled.
  for (int i = 0; i < 200; ++i)
    BOOST_TEST_REQUIRE(confirmed(n.client(), "orders.eu.shipped", encode_payload(order{i, "Lyon"})) == 0u);
  BOOST_TEST(seen.size() == 200u);
  BOOST_TEST(stats_of(n, "count").ok == 200u);
  n.stop();
}

BOOST_AUTO_TEST_CASE(a_payload_of_the_wrong_type_is_dead_lettered_with_the_reason) {
  node n{node_options{}};
  std::atomic<int> handled{0};
  n.service("shipping").function("typed").on("orders.new")
    .handle([&](const order&, context&) -> result<void> {
      ++handled;
      return {};
    });
  n.start();
  waiter w;
  std::string reason;
  n.client().subscribe("$DLQ.>", [&](const message_view& m) {
    w.update([&] { reason = std::string{m.headers.find("plexus-dlq-reason")}; });
  });
  BOOST_TEST(confirmed(n.client(), "orders.new", "not msgpack of an order") == 102u); // dead-lettered
  BOOST_TEST_REQUIRE(w.until([&] { return !reason.empty(); }));
  BOOST_TEST(reason.find("payload does not decode as") == 0u);
  BOOST_TEST(handled == 0);
  BOOST_TEST(stats_of(n, "typed").rejected == 1u);
  n.stop(); // no subscription callback may outlive the locals it captured
}

BOOST_AUTO_TEST_CASE(an_error_result_is_retried_then_dead_lettered) {
  node n{node_options{}};
  std::atomic<int> attempts{0};
  n.service("svc").function("flaky").on("jobs").max_deliver(3)
    .handle([&](std::string_view, context& ctx) -> result<void> {
      ++attempts;
      return error{"attempt " + std::to_string(ctx.delivery()) + " failed"};
    });
  n.start();
  BOOST_TEST(confirmed(n.client(), "jobs", "x") == 102u);
  BOOST_TEST(attempts == 3);
  BOOST_TEST(stats_of(n, "flaky").errors == 3u);
}

BOOST_AUTO_TEST_CASE(a_poison_message_is_quarantined_and_the_function_lives_on) {
  node n{node_options{}};
  n.service("svc").function("fragile").on("work").instances(4)
    .handle([](std::string_view payload, context&) -> result<void> {
      if (payload.ends_with("7")) throw std::runtime_error("boom on " + std::string{payload});
      return {};
    });
  n.start();
  waiter w;
  std::set<std::string> dead;
  std::string reason;
  n.client().subscribe("$DLQ.work", [&](const message_view& m) {
    w.update([&] {
      dead.emplace(m.payload);
      reason = std::string{m.headers.find("plexus-dlq-reason")};
    });
  });
  // The DLQ subscription is live once a message to it arrives in order.
  BOOST_TEST_REQUIRE(confirmed(n.client(), "$DLQ.work", "probe") == 0u);
  w.update([&] { dead.clear(); });
  std::atomic<int> ok{0}, quarantined{0}, other{0};
  for (int i = 0; i < 100; ++i)
    n.client().publish_confirmed("work", std::to_string(i), [&](std::uint32_t code) {
      (code == 0 ? ok : code == 102 ? quarantined : other)++;
    });
  BOOST_TEST_REQUIRE(w.until([&] { return ok + quarantined + other == 100; }, 60s));
  BOOST_TEST(ok == 90);          // every message without a 7 at its end
  BOOST_TEST(quarantined == 10); // 7, 17, ... 97
  BOOST_TEST(other == 0);
  BOOST_TEST_REQUIRE(w.until([&] { return dead.size() == 10; }));
  BOOST_TEST(reason.find("crashed on 3 deliveries: boom on") == 0u);
  auto s = stats_of(n, "fragile");
  BOOST_TEST(s.quarantined == 10u);
  BOOST_TEST(s.crashes == 30u);
  BOOST_TEST(!s.stopped); // poison never counts against restart intensity
  BOOST_TEST(confirmed(n.client(), "work", "still alive") == 0u);
  n.stop(); // no subscription callback may outlive the locals it captured
}

BOOST_AUTO_TEST_CASE(a_handler_requests_another_function_and_goes_on_when_it_answers) {
  node n{node_options{}};
  n.service("rates").function("quote").on("rates.quote")
    .handle([](std::string_view city, context& ctx) -> result<void> {
      ctx.reply(city == "Lyon" ? "12.50" : "9.90");
      return {};
    });
  // One instance: while it waits on its request the scheduler thread is
  // free, and its own message stays in flight until the continuation ends.
  n.service("shop").function("price").on("price").instances(1)
    .handle([](const order& o, context& ctx) -> result<void> {
      return ctx.request("rates.quote", o.city, 5s, [id = o.id](const reply& r, context& c) -> result<void> {
        if (r.code != 0) return error{std::string{"no quote: "} + status_text(r.code)};
        c.reply("order " + std::to_string(id) + " ships for " + r.payload);
        return {};
      });
    });
  n.start();
  BOOST_TEST(confirmed(n.client(), "rates.quote", "warm-up") == 0u);
  for (int i = 0; i < 20; ++i) {
    auto r = n.client().request("price", encode_payload(order{i, i % 2 ? "Lyon" : "Oslo"}), 10s);
    BOOST_TEST_REQUIRE(r.code == 0u);
    BOOST_TEST(r.payload == "order " + std::to_string(i) + " ships for " + (i % 2 ? "12.50" : "9.90"));
  }
  waiter w; // the reply leaves before the pool counts the ACK
  BOOST_TEST(w.until([&] { return stats_of(n, "price").ok == 20u; }));
}

BOOST_AUTO_TEST_CASE(a_request_nobody_answers_reaches_the_continuation_as_a_failure) {
  node n{node_options{}};
  waiter w;
  std::vector<std::uint32_t> codes;
  n.service("shop").function("price").on("price").max_deliver(2)
    .handle([&](std::string_view, context& ctx) -> result<void> {
      return ctx.request("rates.nobody", "x", 5s, [&](const reply& r, context&) -> result<void> {
        w.update([&] { codes.push_back(r.code); });
        return error{"no quote"};
      });
    });
  n.start();
  BOOST_TEST(confirmed(n.client(), "price", "p") == 102u); // retried once, then dead-lettered
  BOOST_TEST_REQUIRE(w.until([&] { return codes.size() == 2; }));
  BOOST_TEST(codes[0] == 100u); // no responders, at once (not after the 5 s timeout)
  BOOST_TEST(stats_of(n, "price").errors == 2u);
}

BOOST_AUTO_TEST_CASE(a_request_carries_the_deadline_and_the_trace_on) {
  node n{node_options{}};
  n.service("rates").function("quote").on("rates.quote")
    .handle([](std::string_view, context& ctx) -> result<void> {
      ctx.reply(std::to_string(ctx.deadline_ns()) + " " + std::string{ctx.traceparent()});
      return {};
    });
  std::string front_trace;
  n.service("shop").function("price").on("price")
    .handle([&](std::string_view, context& ctx) -> result<void> {
      front_trace = std::string{ctx.trace_id()};
      auto span = std::string{ctx.span_id()};
      return ctx.request("rates.quote", "x", 60s, [span](const reply& r, context& c) -> result<void> {
        c.reply(r.payload + " " + span);
        return {};
      });
    });
  n.start();
  BOOST_TEST(confirmed(n.client(), "rates.quote", "warm-up") == 0u);
  auto now = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::system_clock::now().time_since_epoch()).count());
  auto deadline = now + 3'000'000'000u; // the caller gives 3 s, the handler asks for 60
  std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  auto r = n.client().request("price", "p", 10s, {.deadline_ns = deadline, .traceparent = tp});
  BOOST_TEST_REQUIRE(r.code == 0u);
  std::istringstream in{r.payload};
  std::uint64_t seen_deadline = 0;
  std::string seen_tp, front_span;
  in >> seen_deadline >> seen_tp >> front_span;
  BOOST_TEST(seen_deadline == deadline); // the caller's, not now + 60 s
  BOOST_TEST(front_trace == "4bf92f3577b34da6a3ce929d0e0e4736");
  // The callee's parent is the request's own span (a child of the
  // caller's invocation span): same trace, a new span id.
  BOOST_TEST(seen_tp.substr(0, 36) == "00-4bf92f3577b34da6a3ce929d0e0e4736-");
  BOOST_TEST(seen_tp.substr(36, 16) != front_span);
  BOOST_TEST(seen_tp.size() == 55u);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------- supervision

namespace {

/// Collects the msgpack events published under a $SYS pattern ("$SYS.x.>").
template <class Event>
struct sys_log {
  // Shared with the subscription's handler, which the node's connection may
  // still run after this log is gone (the node outlives it).
  struct shared {
    waiter w;
    std::vector<Event> events;
  };
  std::shared_ptr<shared> st = std::make_shared<shared>();
  waiter& w = st->w;
  std::vector<Event>& events = st->events;

  sys_log(client& c, const std::string& pattern) {
    c.subscribe(pattern, [st = st](const message_view& m) {
      Event e;
      if (decode_payload(m.payload, e)) return; // our probe, or not one of ours
      st->w.update([&] { st->events.push_back(e); });
    });
    // Live once a probe under the pattern is confirmed delivered (code 0).
    auto probe = pattern.substr(0, pattern.size() - 1) + "probe";
    BOOST_TEST_REQUIRE(confirmed(c, probe, "x") == 0u);
  }
};

/// $SYS.supervisor.* events.
struct event_log : sys_log<supervisor_event> {
  explicit event_log(client& c) : sys_log(c, "$SYS.supervisor.>") {}
  std::size_t count(std::string_view kind, std::string_view function = {}) {
    std::size_t n = 0;
    for (auto& e : events)
      if (e.kind == kind && (function.empty() || e.function == function)) ++n;
    return n;
  }
  bool wait_for(std::string_view kind, std::size_t n, std::string_view function = {}) {
    return w.until([&] { return count(kind, function) >= n; });
  }
};

/// A handler that crashes on payload "crash" at its first delivery only.
result<void> crash_once(std::string_view payload, context& ctx) {
  if (payload == "crash" && ctx.delivery() == 1) throw std::runtime_error("crash requested");
  return {};
}

} // namespace

// Reliable functions: what a handler publishes is confirmed before its
// message is ACKed, under msg ids a re-run repeats.
BOOST_AUTO_TEST_SUITE(reliable)

BOOST_AUTO_TEST_CASE(a_message_is_acked_only_once_what_its_handler_published_is_confirmed) {
  node n{node_options{}};
  n.service("chain").function("first").on("stage1").reliable()
    .handle([](std::string_view v, context& ctx) -> result<void> {
      ctx.publish("stage2", v);
      return {};
    });
  n.start();
  // stage2's consumer acks by hand, when the test says so.
  std::mutex m;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> held;
  waiter w;
  subscribe_options o;
  o.queue = "second";
  o.acked = true;
  o.credit = 10;
  n.client().subscribe("stage2", [&](const message_view& v) {
    w.update([&] { held.emplace_back(v.sid, v.seq); });
  }, o);
  BOOST_TEST(confirmed(n.client(), "$sync", "") == 101u); // the SUB is in
  std::promise<std::uint32_t> input;
  n.client().publish_confirmed("stage1", "x", [&](std::uint32_t code) { input.set_value(code); });
  BOOST_TEST_REQUIRE(w.until([&] { return held.size() == 1u; }));
  auto f = input.get_future();
  // The output waits unacked downstream: so does the input.
  BOOST_TEST((f.wait_for(200ms) == std::future_status::timeout));
  BOOST_TEST(stats_of(n, "first").ok == 0u);
  n.client().ack(held[0].first, held[0].second);
  BOOST_TEST_REQUIRE((f.wait_for(10s) == std::future_status::ready));
  BOOST_TEST(f.get() == 0u);
  BOOST_TEST(w.until([&] { return stats_of(n, "first").ok == 1u; }));
}

BOOST_AUTO_TEST_CASE(a_crash_after_publishing_does_not_publish_twice) {
  node n{node_options{}};
  std::atomic<int> received{0};
  n.service("chain").function("first").on("in").reliable()
    .handle([](std::string_view v, context& ctx) -> result<void> {
      ctx.publish("out", v);
      if (ctx.delivery() == 1) throw std::runtime_error("died after publishing");
      return {};
    });
  n.service("chain2").function("sink").on("out")
    .handle([&](std::string_view, context&) -> result<void> {
      ++received;
      return {};
    });
  n.start();
  BOOST_TEST(confirmed(n.client(), "in", "once") == 0u); // run twice, confirmed
  BOOST_TEST(stats_of(n, "first").crashes == 1u);
  BOOST_TEST(received == 1); // the re-run's publish was the broker's duplicate
}

BOOST_AUTO_TEST_CASE(a_publish_that_reaches_nobody_runs_the_message_again_later) {
  node n{node_options{}};
  std::atomic<int> received{0};
  std::atomic<int> runs{0};
  n.service("chain").function("first").on("in").reliable()
    .handle([&](std::string_view v, context& ctx) -> result<void> {
      ++runs;
      ctx.publish("late", v);
      return {};
    });
  n.start();
  std::promise<std::uint32_t> input;
  n.client().publish_confirmed("in", "x", [&](std::uint32_t code) { input.set_value(code); });
  waiter w;
  // Nobody subscribes to "late" yet: the first run's publish reaches
  // nobody, and the message is NACKed to run again (counted as an error).
  BOOST_TEST_REQUIRE(w.until([&] { return stats_of(n, "first").errors >= 1u; }));
  subscribe_options o;
  o.queue = "late";
  o.acked = true;
  o.credit = 10;
  n.client().subscribe("late", [&](const message_view& v) {
    ++received;
    n.client().ack(v.sid, v.seq);
  }, o);
  auto f = input.get_future();
  BOOST_TEST_REQUIRE((f.wait_for(20s) == std::future_status::ready));
  BOOST_TEST(f.get() == 0u);
  BOOST_TEST(runs >= 2);
  BOOST_TEST(received == 1);
}

BOOST_AUTO_TEST_CASE(a_poison_message_downstream_is_quarantined_once_and_its_upstream_is_done) {
  node n{node_options{}};
  std::atomic<int> upstream_runs{0};
  n.service("chain").function("first").on("orders").reliable()
    .handle([&](std::string_view v, context& ctx) -> result<void> {
      ++upstream_runs;
      ctx.publish("labels", v);
      return {};
    });
  n.service("printer").function("label").on("labels").instances(1).poison_after(2)
    .handle([](std::string_view, context&) -> result<void> {
      throw std::runtime_error("label printer jammed");
    });
  n.start();
  event_log log{n.client()};
  BOOST_TEST(confirmed(n.client(), "$sync", "") == 101u);
  // A plain publish: the input has no msg id, so a re-run of the upstream
  // would publish a new message each time.
  n.client().publish("orders", "poison order");
  BOOST_TEST_REQUIRE(log.wait_for("quarantine", 1, "label"));
  waiter w;
  BOOST_TEST_REQUIRE(w.until([&] { return stats_of(n, "first").ok == 1u; }));
  // A round trip through the broker after the upstream's ACK: a re-run
  // would have published again by now (it waits 1 s; its quarantine 2 more).
  BOOST_TEST(confirmed(n.client(), "orders-barrier", "") == 101u);
  BOOST_TEST(upstream_runs.load() == 1);
  BOOST_TEST(stats_of(n, "first").errors == 0u);
  BOOST_TEST(stats_of(n, "label").quarantined == 1u);
}

BOOST_AUTO_TEST_SUITE_END()


BOOST_AUTO_TEST_SUITE(supervision)

BOOST_AUTO_TEST_CASE(a_function_crashing_on_one_message_in_100_leaves_its_neighbours_untouched) {
  node n{node_options{}};
  auto& svc = n.service("shop");
  waiter w;
  std::set<int> flaky_ids, steady_ids;
  svc.function("flaky").on("flaky")
    .handle([&](const order& o, context& ctx) -> result<void> {
      if (o.id % 100 == 7 && ctx.delivery() == 1) throw std::runtime_error("crash on " + std::to_string(o.id));
      w.update([&] { flaky_ids.insert(o.id); });
      return {};
    });
  svc.function("steady").on("steady")
    .handle([&](const order& o, context&) -> result<void> {
      w.update([&] { steady_ids.insert(o.id); });
      return {};
    });
  n.start();
  for (int i = 0; i < 1000; ++i) {
    n.client().publish("flaky", encode_payload(order{i, "Lyon"}));
    n.client().publish("steady", encode_payload(order{i, "Oslo"}));
  }
  // Every message processed at least once, by id.
  BOOST_TEST_REQUIRE(w.until([&] { return flaky_ids.size() == 1000 && steady_ids.size() == 1000; }, 60s));
  // The pools count after the handlers return: wait for their last ACKs.
  BOOST_TEST_REQUIRE(w.until([&] { return stats_of(n, "flaky").ok == 1000 && stats_of(n, "steady").ok == 1000; }));
  auto flaky = stats_of(n, "flaky"), steady = stats_of(n, "steady");
  BOOST_TEST(flaky.crashes == 10u);
  BOOST_TEST(flaky.restarts == 10u);
  BOOST_TEST(flaky.quarantined == 0u);
  BOOST_TEST(!flaky.stopped);
  BOOST_TEST(steady.crashes == 0u);
  BOOST_TEST(steady.recycled == 0u); // one_for_one: the neighbour never noticed
  BOOST_TEST(steady.ok == 1000u);
}

BOOST_AUTO_TEST_CASE(a_raw_actor_function_keeps_its_state_and_a_crash_starts_it_fresh) {
  node n{node_options{}};
  actor_function(n.service("raw").function("counter").on("count").instances(1),
                 [](caf::event_based_actor*, client& conn) -> caf::behavior {
                   auto seen = std::make_shared<int>(0); // the actor's own state
                   return {[seen, &conn](handle_atom, const envelope& e) -> result<void> {
                     if (e.payload == "boom" && e.delivery == 1) throw std::runtime_error("raw boom");
                     ++*seen;
                     if (!e.reply_to.empty()) conn.publish(e.reply_to, std::to_string(*seen));
                     return {};
                   }};
                 });
  n.start();
  for (int i = 1; i <= 3; ++i) BOOST_TEST(n.client().request("count", "x", 10s).payload == std::to_string(i));
  // The crash ends the actor; its redelivery reaches a fresh one.
  BOOST_TEST(confirmed(n.client(), "count", "boom") == 0u);
  BOOST_TEST(n.client().request("count", "x", 10s).payload == "2");
  waiter w; // the reply leaves before the pool counts the ACK
  BOOST_TEST_REQUIRE(w.until([&] { return stats_of(n, "counter").ok == 5u; }));
  auto st = stats_of(n, "counter");
  BOOST_TEST(st.crashes == 1u);
  BOOST_TEST(st.restarts == 1u);
}

BOOST_AUTO_TEST_CASE(one_for_all_replaces_every_instance_of_every_function_in_the_service) {
  node n{node_options{}};
  auto& svc = n.service("svc", {.strategy = one_for_all});
  svc.function("steady").on("steady").instances(3).handle(crash_once);
  svc.function("flaky").on("flaky").instances(2).handle(crash_once);
  n.start();
  event_log log{n.client()};
  BOOST_TEST(confirmed(n.client(), "flaky", "crash") == 0u); // crashed once, then redelivered
  BOOST_TEST_REQUIRE(log.wait_for("recycle", 1, "steady"));
  BOOST_TEST_REQUIRE(log.wait_for("recycle", 1, "flaky"));
  BOOST_TEST(log.count("restart", "flaky") == 1u);
  waiter w;
  BOOST_TEST_REQUIRE(w.until([&] { return stats_of(n, "steady").recycled == 3; }));
  BOOST_TEST_REQUIRE(w.until([&] { return stats_of(n, "flaky").recycled == 1; })); // its other one
  BOOST_TEST(stats_of(n, "flaky").restarts == 1u);
  BOOST_TEST(confirmed(n.client(), "steady", "after") == 0u); // the new instances serve
}

BOOST_AUTO_TEST_CASE(rest_for_one_replaces_the_crashed_function_and_those_declared_after_it) {
  node n{node_options{}};
  auto& svc = n.service("chain", {.strategy = rest_for_one});
  svc.function("first").on("first").instances(2).handle(crash_once);
  svc.function("second").on("second").instances(2).handle(crash_once);
  svc.function("third").on("third").instances(2).handle(crash_once);
  n.start();
  event_log log{n.client()};
  BOOST_TEST(confirmed(n.client(), "second", "crash") == 0u);
  BOOST_TEST_REQUIRE(log.wait_for("recycle", 1, "third"));
  waiter w;
  BOOST_TEST_REQUIRE(w.until([&] { return stats_of(n, "third").recycled == 2; }));
  BOOST_TEST(stats_of(n, "second").recycled == 1u);
  BOOST_TEST(stats_of(n, "first").recycled == 0u); // declared before: untouched
  BOOST_TEST(log.count("recycle", "first") == 0u);
}

BOOST_AUTO_TEST_CASE(one_for_one_leaves_the_siblings_alone) {
  node n{node_options{}};
  auto& svc = n.service("svc");
  svc.function("steady").on("steady").instances(2).handle(crash_once);
  svc.function("flaky").on("flaky").instances(2).handle(crash_once);
  n.start();
  event_log log{n.client()};
  BOOST_TEST(confirmed(n.client(), "flaky", "crash") == 0u);
  BOOST_TEST_REQUIRE(log.wait_for("restart", 1, "flaky"));
  BOOST_TEST(confirmed(n.client(), "steady", "x") == 0u);
  BOOST_TEST(log.count("recycle") == 0u);
  BOOST_TEST(stats_of(n, "steady").recycled == 0u);
}

BOOST_AUTO_TEST_CASE(crashes_in_a_row_are_restarted_after_a_growing_backoff) {
  node n{node_options{}};
  n.service("svc", {.max_restarts = 100, .backoff_initial = 40ms, .backoff_max = 1s})
    .function("broken").on("tasks").instances(1).max_deliver(1)
    .handle([](std::string_view, context&) -> result<void> { throw std::runtime_error("down"); });
  n.start();
  event_log log{n.client()};
  for (int i = 0; i < 4; ++i) n.client().publish("tasks", "t" + std::to_string(i));
  BOOST_TEST_REQUIRE(log.wait_for("restart", 4));
  std::vector<std::uint64_t> delays;
  for (auto& e : log.events)
    if (e.kind == "restart") delays.push_back(e.delay_ms);
  BOOST_TEST(delays[0] == 0u);  // the first restart is immediate
  BOOST_TEST(delays[1] >= 20u); // then [d/2, d] with d = 40, 80, 160 ms
  BOOST_TEST(delays[1] <= 40u);
  BOOST_TEST(delays[2] >= 40u);
  BOOST_TEST(delays[3] >= 80u);
}

BOOST_AUTO_TEST_CASE(a_temporary_function_is_not_restarted_and_leaves_its_queue_group) {
  node n{node_options{}};
  n.service("svc").function("once").on("once").instances(1).restart(temporary).max_deliver(1)
    .handle([](std::string_view, context&) -> result<void> { throw std::runtime_error("gone"); });
  n.start();
  BOOST_TEST(confirmed(n.client(), "once", "x") == 102u); // max_deliver 1: dead-lettered
  waiter w;
  BOOST_TEST_REQUIRE(w.until([&] { return stats_of(n, "once").stopped; }));
  BOOST_TEST(stats_of(n, "once").restarts == 0u);
  BOOST_TEST_REQUIRE(w.until([&] { return confirmed(n.client(), "once", "later") == 101u; }));
}

BOOST_AUTO_TEST_CASE(a_transient_function_whose_last_instance_quit_leaves_its_queue_group) {
  node n{node_options{}};
  actor_function(n.service("svc").function("quitter").on("quits").instances(1).restart(transient),
                 [](caf::event_based_actor* self, client&) -> caf::behavior {
                   return {[self](handle_atom, const envelope& e) -> result<void> {
                     if (e.payload == "quit") self->quit(); // a normal exit: not restarted
                     return {};
                   }};
                 });
  n.start();
  BOOST_TEST(confirmed(n.client(), "quits", "quit") == 0u);
  waiter w;
  BOOST_TEST_REQUIRE(w.until([&] { return stats_of(n, "quitter").stopped; }));
  BOOST_TEST(stats_of(n, "quitter").restarts == 0u);
  BOOST_TEST(stats_of(n, "quitter").credit == 0u); // no credit kept for work it cannot run
  // Nobody can answer now: a request fails at once instead of timing out.
  auto r = n.client().request("quits", "anyone?", 10s);
  BOOST_TEST(r.code == code_of(status::no_responders), status_text(r.code));
}

BOOST_AUTO_TEST_CASE(what_waits_at_an_escalation_is_kept_for_the_revived_service) {
  // One node, one instance, nobody else in the group: what waited when the
  // service escalated must not be lost when it leaves and comes back.
  node n{node_options{.restart_initial = 50ms}};
  std::atomic<int> crashes{0};
  n.service("svc", {.max_restarts = 2, .within = 60s}).function("jobs").on("jobs").instances(1)
    .handle([&](std::string_view payload, context& ctx) -> result<void> {
      if (payload.starts_with("crash") && ctx.delivery() == 1) {
        ++crashes;
        throw std::runtime_error("crash on first delivery");
      }
      return {};
    });
  n.start();
  event_log log{n.client()};
  BOOST_TEST_REQUIRE(confirmed(n.client(), "jobs", "warm-up") == 0u);
  waiter w;
  std::vector<std::uint32_t> codes;
  std::vector<std::string> sent{"crash-1", "crash-2", "crash-3", "ok-1", "ok-2", "ok-3"};
  for (auto& p : sent)
    n.client().publish_confirmed("jobs", p, [&](std::uint32_t code) { w.update([&] { codes.push_back(code); }); });
  BOOST_TEST_REQUIRE(log.wait_for("escalate", 1, "jobs"));
  BOOST_TEST_REQUIRE(w.until([&] { return codes.size() == sent.size(); }, 30s),
                     codes.size() << " of " << sent.size() << " confirmed");
  for (auto c : codes) BOOST_TEST(c == 0u, "confirm " << c << " (" << status_text(c) << ")");
  BOOST_TEST(crashes.load() == 3);
  BOOST_TEST(stats_of(n, "jobs").escalations == 1u);
}

BOOST_AUTO_TEST_CASE(past_its_intensity_a_service_escalates_and_the_root_restarts_it) {
  node n{node_options{.restart_initial = 50ms}};
  std::atomic<bool> broken{true};
  auto& svc = n.service("svc", {.max_restarts = 3, .within = 60s});
  svc.function("broken").on("tasks").instances(1)
    .handle([&](std::string_view, context&) -> result<void> {
      if (broken) throw std::runtime_error("database down");
      return {};
    });
  svc.function("sibling").on("other").handle(crash_once);
  n.start();
  event_log log{n.client()};
  for (int i = 0; i < 10; ++i) n.client().publish("tasks", "task " + std::to_string(i));
  BOOST_TEST_REQUIRE(log.wait_for("escalate", 1, "broken"));
  waiter w;
  BOOST_TEST(stats_of(n, "broken").crashes >= 4u); // more than 3 fresh messages crashed
  BOOST_TEST(stats_of(n, "broken").escalations == 1u);
  BOOST_TEST(stats_of(n, "sibling").escalations == 1u); // the whole service stops
  broken = false; // the database is back
  BOOST_TEST_REQUIRE(log.wait_for("revive", 1));
  for (auto& e : log.events)
    if (e.kind == "revive") BOOST_TEST(e.delay_ms == 50u); // the root's first backoff
  BOOST_TEST_REQUIRE(w.until([&] { return confirmed(n.client(), "tasks", "after") == 0u; }));
  BOOST_TEST(!stats_of(n, "broken").stopped);
  BOOST_TEST(stats_of(n, "broken").revivals == 1u);
  BOOST_TEST(confirmed(n.client(), "other", "x") == 0u);
}

BOOST_AUTO_TEST_CASE(under_the_stop_node_policy_a_failed_service_ends_run_with_exit_code_3) {
  tcp_broker b;
  node n{node_options{.broker = b.endpoint(), .on_failure = node_options::failure_policy::stop_node}};
  n.service("svc", {.max_restarts = 1}).function("broken").on("tasks").instances(1)
    .handle([](std::string_view, context&) -> result<void> { throw std::runtime_error("down"); });
  auto code = std::async(std::launch::async, [&] { return n.run(); });
  client_options co;
  co.endpoint = b.endpoint();
  client c{co};
  // Publish fresh tasks until the function is there and has failed twice.
  int i = 0;
  while (code.wait_for(20ms) != std::future_status::ready && i < 2000)
    c.publish("tasks", "task " + std::to_string(i++));
  BOOST_TEST_REQUIRE((code.wait_for(20s) == std::future_status::ready));
  BOOST_TEST(code.get() == exit_service_failed);
  b.stop();
}

BOOST_AUTO_TEST_CASE(bad_names_and_options_are_refused_with_the_reason) {
  node n{node_options{}};
  BOOST_CHECK_THROW(n.service("bad.name"), std::invalid_argument);
  BOOST_CHECK_THROW(n.service("$sys"), std::invalid_argument);
  auto& svc = n.service("svc");
  BOOST_CHECK_THROW(svc.function("has space"), std::invalid_argument);
  svc.function("no-pattern").handle(crash_once);
  try {
    n.start();
    BOOST_FAIL("start() accepted a function without a topic");
  } catch (const std::invalid_argument& e) {
    BOOST_TEST(std::string{e.what()}.find("svc.no-pattern has no topic") != std::string::npos);
  }
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------- scaling

BOOST_AUTO_TEST_SUITE(scaling)

namespace {
/// $SYS.scale.* events.
struct scale_log : sys_log<scale_event> {
  explicit scale_log(client& c) : sys_log(c, "$SYS.scale.>") {}
  std::uint32_t peak(std::string_view fn) {
    std::lock_guard lock{w.m};
    std::uint32_t p = 0;
    for (auto& e : events)
      if (e.function == fn) p = std::max(p, e.to);
    return p;
  }
};
} // namespace

BOOST_AUTO_TEST_CASE(a_function_at_zero_cold_starts_on_its_first_message) {
  node n{node_options{}};
  scale_options sc;
  sc.min = 0;
  sc.max = 4;
  std::vector<bool> cold;
  std::vector<std::uint64_t> cold_ns, since_arrival;
  waiter w;
  std::atomic<int> inits{0};
  n.service("svc").function("lazy").on("lazy").scale(sc)
    .init([&] { ++inits; }) // e.g. open a connection: once per new instance
    .handle([&](std::string_view, context& ctx) -> result<void> {
      auto since = ctx.since_arrival_ns(); // after cold_start_ns() was taken
      w.update([&] {
        cold.push_back(ctx.cold_start());
        cold_ns.push_back(ctx.cold_start_ns());
        since_arrival.push_back(since);
      });
      return {};
    });
  n.start();
  scale_log log{n.client()};
  BOOST_TEST(stats_of(n, "lazy").instances == 0u);
  BOOST_TEST(confirmed(n.client(), "lazy", "first") == 0u);
  BOOST_TEST(confirmed(n.client(), "lazy", "second") == 0u);
  BOOST_TEST_REQUIRE(w.until([&] { return cold.size() == 2; }));
  BOOST_TEST(cold[0]);  // the first invocation is flagged
  BOOST_TEST(!cold[1]); // the instance is warm now
  BOOST_TEST(cold_ns[0] > 0u);
  BOOST_TEST(cold_ns[1] == 0u);
  BOOST_TEST(since_arrival[0] >= cold_ns[0]); // a cold start is part of the wait
  BOOST_TEST(since_arrival[1] > 0u);
  auto st = stats_of(n, "lazy");
  BOOST_TEST(st.cold_starts == 1u);
  BOOST_TEST(st.instances >= 1u);
  BOOST_TEST(st.cold_start_ns_max > 0u);
  BOOST_TEST(st.cold_start_ns_max < 1'000'000'000u);
  BOOST_TEST(inits == 1);
  BOOST_TEST(st.inits == 1u);
  BOOST_TEST_REQUIRE(log.w.until([&] { return !log.events.empty(); }));
  std::lock_guard lock{log.w.m};
  BOOST_TEST(log.events[0].from == 0u);
  BOOST_TEST(log.events[0].to == 1u);
  BOOST_TEST(log.events[0].why == "cold start");
}

BOOST_AUTO_TEST_CASE(since_arrival_is_what_a_message_waited_behind_a_busy_instance) {
  using steady = std::chrono::steady_clock;
  auto ns = [](steady::duration d) {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
  };
  node n{node_options{}};
  waiter w;
  bool release = false;
  std::vector<std::uint64_t> waited;
  steady::time_point second_started{};
  n.service("svc").function("one").on("one").instances(1)
    .handle([&](std::string_view payload, context& ctx) -> result<void> {
      auto since = ctx.since_arrival_ns();
      auto started = steady::now();
      w.update([&] {
        waited.push_back(since);
        if (payload == "second") second_started = started;
      });
      if (payload == "first") w.until([&] { return release; }); // holds the one instance
      return {};
    });
  n.service("svc").function("other").on("other")
    .handle([](std::string_view, context&) -> result<void> { return {}; });
  n.start();
  n.client().publish("one", "first");
  BOOST_TEST_REQUIRE(w.until([&] { return waited.size() == 1; }));
  const auto published = steady::now();
  n.client().publish("one", "second");
  // The node has it, waiting for the busy instance.
  BOOST_TEST_REQUIRE(w.until([&] { return stats_of(n, "one").queue_depth == 1u; }));
  const auto seen_waiting = steady::now();
  // A round trip through another function while it waits: time it must
  // count.
  BOOST_TEST_REQUIRE(confirmed(n.client(), "other", "x") == 0u);
  const auto releasing = steady::now();
  w.update([&] { release = true; });
  BOOST_TEST_REQUIRE(w.until([&] { return waited.size() == 2; }));
  std::lock_guard lock{w.m};
  // It arrived before it was seen waiting and was read after the release;
  // it arrived after it was published and was read before its handler's
  // `started`.
  BOOST_TEST(waited[1] >= ns(releasing - seen_waiting));
  BOOST_TEST(waited[1] > 0u);
  BOOST_TEST(waited[1] <= ns(second_started - published));
}

BOOST_AUTO_TEST_CASE(an_init_that_throws_is_a_crash_and_runs_again_with_the_retry) {
  node n{node_options{}};
  std::atomic<int> attempts{0};
  n.service("svc").function("needs-db").on("db").instances(1)
    .init([&] {
      if (attempts++ == 0) throw std::runtime_error("database not up yet");
    })
    .handle([](std::string_view, context&) -> result<void> { return {}; });
  n.start();
  BOOST_TEST(confirmed(n.client(), "db", "x") == 0u); // NACKed once, then handled
  BOOST_TEST(attempts == 2);
  auto st = stats_of(n, "needs-db");
  BOOST_TEST(st.crashes == 1u);
  BOOST_TEST(st.inits == 1u);
}

BOOST_AUTO_TEST_CASE(a_slow_function_scales_up_while_its_neighbour_stays_small_and_nothing_is_lost) {
  node n{node_options{}};
  scale_options sc;
  sc.min = 1;
  sc.max = 16;
  sc.tick = 20ms;
  sc.panic_window = 200ms;
  sc.stable_window = 1s;
  sc.idle_grace = 1s;
  std::atomic<int> slow_done{0}, fast_done{0};
  auto& svc = n.service("svc");
  svc.function("slow").on("slow").scale(sc).prefetch(64).blocking()
    .handle([&](std::string_view, context&) -> result<void> {
      std::this_thread::sleep_for(2ms); // the work: waiting on something slow
      ++slow_done;
      return {};
    });
  svc.function("fast").on("fast").scale(sc)
    .handle([&](std::string_view, context&) -> result<void> {
      ++fast_done;
      return {};
    });
  n.start();
  scale_log log{n.client()};
  for (int i = 0; i < 600; ++i) n.client().publish("slow", std::to_string(i));
  // Meanwhile its neighbour gets steady work with no backlog: one at a time.
  for (int i = 0; i < 200; ++i) BOOST_TEST_REQUIRE(confirmed(n.client(), "fast", std::to_string(i)) == 0u);
  waiter w;
  BOOST_TEST_REQUIRE(w.until([&] { return slow_done == 600 && fast_done == 200; }, 60s));
  BOOST_TEST(log.peak("slow") >= 4u); // it scaled up for its backlog
  BOOST_TEST(log.peak("fast") <= 2u); // its neighbour had none
  // Idle again: back down to min, draining (never dropping) what ran.
  BOOST_TEST_REQUIRE(w.until([&] { return stats_of(n, "slow").instances == 1u; }, 30s));
  BOOST_TEST(stats_of(n, "slow").ok == 600u);
  BOOST_TEST(stats_of(n, "slow").errors + stats_of(n, "slow").crashes == 0u);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------- node

BOOST_AUTO_TEST_SUITE(node_lifecycle)

BOOST_AUTO_TEST_CASE(a_node_serves_through_a_separate_broker_over_tcp) {
  tcp_broker b;
  node n{node_options{.broker = b.endpoint(), .duration = {}}};
  n.service("echo").function("upper").on("echo.*")
    .handle([](std::string_view s, context& ctx) -> result<void> {
      std::string out{s};
      for (auto& ch : out) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      ctx.reply(out);
      return {};
    });
  n.start();
  // A second process would do the same: a client of its own on the broker.
  client_options co;
  co.endpoint = b.endpoint();
  client caller{co};
  BOOST_TEST_REQUIRE(confirmed(caller, "echo.warmup", "x") == 0u); // the function is subscribed
  auto r = caller.request("echo.one", "plexus", 5s);
  BOOST_TEST(r.code == 0u);
  BOOST_TEST(r.payload == "PLEXUS");
  n.stop();
  b.stop();
}

// .durable(): the queue outlives the function's subscription, so what is
// published while no instance runs anywhere waits for the next one.
BOOST_AUTO_TEST_CASE(a_durable_function_gets_what_was_published_while_it_was_not_running) {
  temp_dir dir{"durable-fn"};
  {
    tcp_broker b{broker::config{}.group_queue_msgs, (dir.path / "store").string()};
    waiter w;
    std::vector<std::string> seen;
    auto billing = [&](node& n) {
      n.service("billing").function("charge").on("invoices.>").durable({.max_msgs = 100})
        .handle([&](std::string_view s, context&) -> result<void> {
          w.update([&] { seen.emplace_back(s); });
          return {};
        });
    };
    {
      node first{node_options{.broker = b.endpoint()}};
      billing(first);
      first.start(); // declares billing.charge
      first.stop();
    }
    client_options co;
    co.endpoint = b.endpoint();
    client pub{co};
    // Nobody subscribes now: kept (0), not dropped (101).
    for (int i = 0; i < 5; ++i)
      BOOST_TEST(confirmed(pub, "invoices.eu", "invoice " + std::to_string(i)) == 0u);
    node second{node_options{.broker = b.endpoint()}};
    billing(second);
    second.start(); // "exists": joins the queue
    BOOST_TEST(w.until([&] { return seen.size() == 5u; }), seen.size() << " of 5 handled");
    second.stop();
    std::sort(seen.begin(), seen.end());
    BOOST_TEST(seen.front() == "invoice 0");
    BOOST_TEST(seen.back() == "invoice 4");
    b.stop();
  }
  // A broker without a store cannot keep it: start() says so.
  node embedded{node_options{}};
  embedded.service("billing").function("charge").on("invoices.>").durable()
    .handle([](std::string_view, context&) -> result<void> { return {}; });
  BOOST_CHECK_EXCEPTION(embedded.start(), config_error, [](const config_error& e) {
    std::string what = e.what();
    BOOST_TEST_INFO("what: " << what);
    return what.find("billing.charge is durable") != std::string::npos
           && what.find("keeps no store") != std::string::npos
           && what.find("node_options::store") != std::string::npos;
  });
}

// One port, one node: a second node asked for a metrics port in use is
// refused (cpp-httplib's SO_REUSEPORT let it share the port, and scrapes
// went to either node), and nothing of it is left running.
BOOST_AUTO_TEST_CASE(a_metrics_port_another_node_serves_is_a_config_error_naming_it) {
  node first{node_options{.metrics_port = -1}};
  first.service("a").function("f").on("a.f").handle(
    [](std::string_view, context&) -> result<void> { return {}; });
  first.start();
  BOOST_TEST_REQUIRE(first.metrics_port() > 0);
  node second{node_options{.metrics_port = first.metrics_port()}};
  second.service("b").function("f").on("b.f").handle(
    [](std::string_view, context&) -> result<void> { return {}; });
  auto expected = "metrics port " + std::to_string(first.metrics_port()) + ": port in use";
  BOOST_CHECK_EXCEPTION(second.start(), config_error, [&](const config_error& e) {
    BOOST_TEST_INFO("what: " << e.what());
    return std::string{e.what()} == expected;
  });
  BOOST_CHECK_THROW(second.client(), std::logic_error); // not started
  BOOST_TEST(second.metrics_port() == 0);
  first.stop();
}

BOOST_AUTO_TEST_CASE(a_pool_that_runs_dry_gives_its_credit_back_in_one_credit) {
  scripted_broker b{32}; // one batch: one run of the one instance
  node n{node_options{.broker = b.endpoint(), .duration = {}}};
  n.service("svc").function("fast").on("jobs").instances(1)
    .handle([](std::string_view, context&) -> result<void> { return {}; });
  n.start();
  waiter w;
  BOOST_TEST_REQUIRE(w.until([&] { return b.acked == 32u && b.credits == 32u; }));
  BOOST_TEST(b.credit_envelopes == 1u); // not one per message
  BOOST_TEST(b.bad_frames == 0u);
  n.stop();
}

BOOST_AUTO_TEST_CASE(stopping_a_node_finishes_what_its_functions_run) {
  node n{node_options{}};
  std::atomic<int> started{0}, finished{0};
  std::atomic<bool> release{false};
  n.service("svc").function("slow").on("slow").instances(2)
    .handle([&](std::string_view, context&) -> result<void> {
      ++started;
      while (!release) std::this_thread::yield(); // held until the test lets go
      ++finished;
      return {};
    });
  n.start();
  n.client().publish("slow", "a");
  n.client().publish("slow", "b");
  waiter w;
  BOOST_TEST_REQUIRE(w.until([&] { return started == 2; }));
  std::atomic<bool> stopping{false};
  std::thread releaser{[&] {
    while (!stopping) std::this_thread::yield();
    release = true; // the handlers end only once stop() has begun
  }};
  stopping = true;
  n.stop(); // must wait for the two in flight
  releaser.join();
  BOOST_TEST(finished == 2);
  BOOST_TEST(stats_of(n, "slow").ok == 2u);
  BOOST_TEST(stats_of(n, "slow").handed_back == 0u); // finished, not given back
}

namespace {
/// A node on a broker of its own, whose one function (svc.stuck, one
/// instance, on "jobs") holds each message until the fixture ends, and
/// another client of that broker.
struct stuck_node {
  tcp_broker b;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  waiter w;
  int started = 0; // under w.m
  std::unique_ptr<node> n;
  std::unique_ptr<client> other;

  explicit stuck_node(std::chrono::milliseconds drain_timeout) {
    n = std::make_unique<node>(node_options{.broker = b.endpoint(), .drain_timeout = drain_timeout});
    n->service("svc").function("stuck").on("jobs").instances(1)
      .handle([this](std::string_view, context&) -> result<void> {
        w.update([&] { ++started; });
        released.wait(); // a handler that ignores the shutdown
        return {};
      });
    n->start();
    client_options co;
    co.endpoint = b.endpoint();
    other = std::make_unique<client>(co);
  }
  stuck_node(const stuck_node&) = delete;
  stuck_node& operator=(const stuck_node&) = delete;
  ~stuck_node() {
    release.set_value();
    n.reset(); // the handler returned: the node tears down cleanly
    other.reset();
    b.stop();
  }
};
} // namespace

BOOST_AUTO_TEST_CASE(past_the_drain_timeout_stop_returns_and_the_message_goes_to_another_member) {
  stuck_node t{200ms};
  auto& w = t.w;
  t.other->publish("jobs", "job-1");
  BOOST_TEST_REQUIRE(w.until([&] { return t.started == 1; }));
  // Another member of the same queue group joins while the node holds job-1.
  std::string got;
  t.other->subscribe("jobs", [&](const message_view& m) {
    t.other->ack(m.sid, m.seq);
    w.update([&] { got = std::string{m.payload}; });
  }, {.queue = "svc.stuck", .acked = true, .credit = 10});
  BOOST_TEST_REQUIRE(t.other->flush(5s));
  auto t0 = std::chrono::steady_clock::now();
  t.n->stop(); // returns at the drain timeout, the handler still running
  BOOST_TEST((std::chrono::steady_clock::now() - t0) < 5s);
  BOOST_TEST_REQUIRE(w.until([&] { return got == "job-1"; })); // requeued to the other member
  BOOST_TEST(stats_of(*t.n, "stuck").handed_back == 1u);
}

BOOST_AUTO_TEST_CASE(a_stopping_node_hands_back_what_waits_without_getting_it_again) {
  // The node is the group's only member with credit: before it withdrew
  // its credit, the broker gave a handed-back message straight back to it,
  // five times, and dead-lettered it as if it were poison.
  stuck_node t{300ms};
  auto& w = t.w;
  auto& other = *t.other;
  std::vector<std::string> got, dead;
  other.subscribe("$DLQ.>", [&](const message_view& m) { w.update([&] { dead.emplace_back(m.payload); }); });
  // A second member of the group, with no credit yet.
  auto member = other.subscribe("jobs", [&](const message_view& m) {
    other.ack(m.sid, m.seq);
    w.update([&] { got.emplace_back(m.payload); });
  }, {.queue = "svc.stuck", .acked = true, .credit = 0});
  BOOST_TEST_REQUIRE(other.flush(5s));
  other.publish("jobs", "job-1");
  BOOST_TEST_REQUIRE(w.until([&] { return t.started == 1; }));
  other.publish("jobs", "job-2"); // waits behind job-1
  BOOST_TEST_REQUIRE(w.until([&] { return stats_of(*t.n, "stuck").queue_depth == 1u; }));
  t.n->stop(); // job-2 back at once, job-1 at the drain timeout
  BOOST_TEST(stats_of(*t.n, "stuck").handed_back == 2u);
  other.grant_credit(member, 10);
  BOOST_TEST_REQUIRE(w.until([&] { return got.size() == 2; }));
  {
    std::lock_guard lock{w.m};
    std::sort(got.begin(), got.end());
    BOOST_TEST(got == (std::vector<std::string>{"job-1", "job-2"}), boost::test_tools::per_element());
  }
  // Nothing went to $DLQ: a confirmed round trip after the deliveries.
  BOOST_TEST(confirmed(other, "$DLQ.probe", "x") == 0u);
  BOOST_TEST_REQUIRE(w.until([&] { return dead.size() == 1; }));
  std::lock_guard lock{w.m};
  BOOST_TEST(dead[0] == "x");
}

BOOST_AUTO_TEST_SUITE_END()
