// SPDX-License-Identifier: Apache-2.0
#include "systems/plexus.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include "plexus/client.hpp"
#include "plexus/node.hpp"
#include "scenarios/reqrep.hpp"
#include "server.hpp"

namespace plexus::bench {

namespace {

using namespace std::chrono_literals;

/// The broker on its own context and thread. Its per-connection queues are
/// raised to "unlimited" for the bench, as the zmq (HWM 0) and nats
/// (pending -1) baselines are: this measures throughput, not the
/// slow-consumer policy. A link to a peer broker is a connection like any
/// other, with the same limits.
class broker_under_test {
public:
  /// `id` names it in WELCOME and in the cluster; `peers` are the seeds it
  /// dials (none: a broker alone).
  /// With `curve`, as a broker with --auth runs: CURVE encryption, a ZAP
  /// handler that admits the one bench user's key, and the core checking
  /// each PUB and SUB against that user's permissions.
  explicit broker_under_test(std::string id = "bench", std::vector<std::string> peers = {},
                             transport t = transport::tcp, bool curve = false)
    : keys_(curve ? std::optional<bench_keys>{bench_keys{}} : std::nullopt),
      server_(options(std::move(id), std::move(peers), t, keys_), &ctx_),
      inproc_(t == transport::inproc) {
    broker::tune_allocator(); // as plexus-broker's main does
    server_.start();
  }
  ~broker_under_test() { server_.stop(); }
  broker_under_test(const broker_under_test&) = delete;
  broker_under_test& operator=(const broker_under_test&) = delete;

  [[nodiscard]] const std::string& endpoint() const { return server_.endpoint(); }

  [[nodiscard]] client_options client() const {
    client_options o;
    o.endpoint = server_.endpoint();
    if (inproc_) o.zmq_context = &ctx_; // inproc: the broker's context
    if (keys_) {
      o.curve_public_key = keys_->user.public_key;
      o.curve_secret_key = keys_->user.secret_key;
      o.curve_server_key = keys_->broker.public_key;
    }
    return o;
  }

private:
  struct bench_keys {
    curve_key_pair broker = make_curve_key_pair(), user = make_curve_key_pair();
  };

  static broker::server_options options(std::string id, std::vector<std::string> peers,
                                        transport t, const std::optional<bench_keys>& keys) {
    broker::server_options o;
    if (keys) {
      o.curve_secret_key = keys->broker.secret_key;
      o.admitted.admit(keys->user.public_key, "bench");
      broker::user_permissions may; // what the scenarios use, and no more
      may.publish.allow = {"bench.>"};
      may.subscribe.allow = {"bench.>"};
      broker::auth_policy policy;
      policy.users["bench"] = may;
      o.core.auth = std::move(policy);
    }
    o.listen = bind_endpoint(t);
    o.peers = std::move(peers);
    o.core.id = std::move(id);
    o.core.max_pending_msgs = std::size_t{1} << 24;
    o.core.max_pending_bytes = std::size_t{4} << 30;
    o.core.group_queue_msgs = std::size_t{1} << 24;
    o.core.group_queue_bytes = std::size_t{4} << 30;
    o.core.dedup_entries = 0; // no msg ids in this traffic
    o.core.cluster_secret = "plexus-bench in-process cluster secret";
    o.quiet = true;
    return o;
  }

  std::optional<bench_keys> keys_;
  mutable zmq::context_t ctx_{1}; // clients on inproc share it (client() is const)
  broker::server server_;
  bool inproc_;
};

constexpr std::string_view topic = "bench.load";

run_result publish_run(const broker_under_test& b, message_sink& sink, std::size_t size,
                       std::size_t count) {
  plexus::client pub{b.client()};
  auto result = drive(
    sink, size, count,
    [&pub](std::span<const char> m) { pub.publish(topic, {m.data(), m.size()}); },
    [&pub] { pub.flush(30s); });
  if (sink.malformed() != 0)
    throw std::runtime_error("plexus: " + std::to_string(sink.malformed()) +
                             " messages arrived with a payload not sent");
  return result;
}

/// One subscriber on `sub_broker`, the publisher on `pub_broker` (the same
/// broker, or a peer of it).
run_result pubsub_run(const broker_under_test& pub_broker, const broker_under_test& sub_broker,
                      std::size_t size, std::size_t count) {
  message_sink sink{1, warmup_count(count), count};
  plexus::client sub{sub_broker.client()};
  sub.subscribe_batch(topic, [&sink](std::span<const message_view> batch) {
    for (auto& m : batch) sink.on_message(0, m.payload.empty() ? '\0' : m.payload[0]);
  });
  return publish_run(pub_broker, sink, size, count);
}

/// `subscribers` queue-group members on `sub_broker`, the publisher on
/// `pub_broker` (the same broker, or a peer of it).
run_result queue_run(const broker_under_test& pub_broker, const broker_under_test& sub_broker,
                     std::size_t subscribers, std::size_t size, std::size_t count, bool acked,
                     std::vector<std::size_t>* per_subscriber) {
  constexpr std::uint32_t credit = 1024; // per member, granted back as it consumes
  message_sink sink{subscribers, warmup_count(count), count};
  std::vector<std::unique_ptr<plexus::client>> members;
  for (std::size_t i = 0; i < subscribers; ++i) {
    auto& c = *members.emplace_back(std::make_unique<plexus::client>(sub_broker.client()));
    subscribe_options o;
    o.queue = "workers";
    o.acked = acked;
    o.credit = credit;
    c.subscribe_batch(topic, [&c, &sink, i, acked](std::span<const message_view> batch) {
      for (auto& m : batch) {
        sink.on_message(i, m.payload.empty() ? '\0' : m.payload[0]);
        if (acked) c.ack(m.sid, m.seq);
      }
      c.grant_credit(batch.front().sid, static_cast<std::uint32_t>(batch.size()));
    }, o);
  }
  auto result = publish_run(pub_broker, sink, size, count);
  if (per_subscriber) *per_subscriber = sink.measured_per_receiver();
  return result;
}

constexpr std::string_view rpc_topic = "bench.rpc";

class plexus_reqrep final : public reqrep_system {
public:
  plexus_reqrep(std::size_t size, bool curve)
    : broker_("bench", {}, transport::tcp, curve), payload_(size, 'r') {
    responder_.subscribe(rpc_topic, [this](const message_view& m) {
      responder_.publish(m.reply_to, m.payload);
    });
    // Live once a request is answered: until the SUB has reached the
    // broker a request ends at once with no_responders.
    const auto deadline = steady::now() + 10s;
    for (;;) {
      auto r = requester_.request(rpc_topic, payload_, 1s);
      if (r.code == 0) break;
      if (r.code != 100 || steady::now() >= deadline)
        throw std::runtime_error(std::string{"plexus responder not answering: "} +
                                 status_text(r.code) + " " + r.text);
      std::this_thread::sleep_for(1ms); // a poll with a deadline
    }
  }

  void send(std::size_t i) override {
    requester_.request_async(rpc_topic, payload_, 10s, [this, i](reply r) {
      if (r.code == 0)
        log_.answered(i);
      else
        log_.failed("plexus request " + std::to_string(i) + ": " + status_text(r.code) + " " +
                    r.text);
    });
  }

private:
  broker_under_test broker_;
  plexus::client responder_{broker_.client()};
  plexus::client requester_{broker_.client()};
  std::string payload_;
};

} // namespace

void with_plexus_broker(const std::function<void(const std::string& endpoint)>& body) {
  broker_under_test b;
  body(b.endpoint());
}

std::unique_ptr<reqrep_system> make_plexus_reqrep(std::size_t size, bool curve) {
  return std::make_unique<plexus_reqrep>(size, curve);
}

run_result plexus_pubsub_once(std::size_t size, std::size_t count, transport t, bool curve) {
  broker_under_test b{"bench", {}, t, curve};
  return pubsub_run(b, b, size, count);
}

run_result plexus_fanout_once(std::size_t subscribers, std::size_t size, std::size_t count) {
  broker_under_test b;
  message_sink sink{subscribers, warmup_count(count), count, message_sink::delivery::every};
  std::vector<std::unique_ptr<plexus::client>> subs; // each its own connection and I/O thread
  for (std::size_t i = 0; i < subscribers; ++i) {
    auto& c = *subs.emplace_back(std::make_unique<plexus::client>(b.client()));
    c.subscribe_batch(topic, [&sink, i](std::span<const message_view> batch) {
      for (auto& m : batch) sink.on_message(i, m.payload.empty() ? '\0' : m.payload[0]);
    });
  }
  return publish_run(b, sink, size, count);
}

run_result plexus_queue_once(std::size_t subscribers, std::size_t size, std::size_t count,
                             bool acked, std::vector<std::size_t>* per_subscriber) {
  broker_under_test b;
  return queue_run(b, b, subscribers, size, count, acked, per_subscriber);
}

// Two brokers, each on its own context and thread: `b` dials `a` (one link,
// used both ways). drive()'s probes wait until the subscriber's interest
// has crossed the link, as they wait for any subscription to be live.

run_result plexus_cluster_pubsub_once(std::size_t size, std::size_t count) {
  broker_under_test a{"a"};
  broker_under_test b{"b", {a.endpoint()}};
  return pubsub_run(a, b, size, count);
}

run_result plexus_cluster_queue_once(std::size_t subscribers, std::size_t size, std::size_t count,
                                     bool acked, std::vector<std::size_t>* per_subscriber) {
  broker_under_test a{"a"};
  broker_under_test b{"b", {a.endpoint()}};
  return queue_run(a, b, subscribers, size, count, acked, per_subscriber);
}

run_result plexus_function_once(std::size_t size, std::size_t count, std::uint32_t instances,
                                double trace_sample, bool span_listener) {
  broker_under_test b;
  message_sink sink{1, warmup_count(count), count};
  std::optional<plexus::client> listener;
  std::atomic<std::size_t> span_bytes{0};
  if (span_listener) {
    listener.emplace(b.client());
    listener->subscribe("$SYS.trace.>", [&span_bytes](const message_view& m) {
      span_bytes.fetch_add(m.payload.size(), std::memory_order_relaxed);
    });
  }
  node_options no;
  no.broker = b.endpoint();
  no.trace_sample = trace_sample;
  plexus::node n{no};
  n.service("bench").function("sink").on(std::string{topic}).instances(instances)
    .handle([&sink](std::string_view payload, context&) -> plexus::result<void> {
      sink.on_message(0, payload.empty() ? '\0' : payload[0]);
      return {};
    });
  n.start();
  auto result = publish_run(b, sink, size, count);
  n.stop();
  if (span_listener && span_bytes.load() == 0)
    throw std::runtime_error("plexus traced: the span listener got no spans");
  // A span the node could not keep is work it skipped: the figure would
  // understate what tracing costs.
  const auto metrics = n.metrics_text();
  const std::string dropped = "\nplexus_node_spans_dropped_total ";
  if (auto at = metrics.find(dropped); at != std::string::npos) {
    if (auto d = std::stoull(metrics.substr(at + dropped.size())); d != 0)
      throw std::runtime_error("plexus traced: the node dropped " + std::to_string(d) +
                               " spans (its span queues were full)");
  } else {
    throw std::runtime_error("plexus traced: the node's metrics have no plexus_node_spans_dropped_total");
  }
  return result;
}

run_result plexus_worker_pool_once(std::size_t size, std::size_t count, std::uint32_t instances,
                                   std::chrono::microseconds work, bool blocking) {
  broker_under_test b;
  message_sink sink{1, warmup_count(count), count};
  std::atomic<std::size_t> handled{0};
  plexus::node n{node_options{.broker = b.endpoint(), .duration = {}}};
  n.service("bench").function("worker").on(std::string{topic}).instances(instances)
    .blocking(blocking)
    .handle([&sink, &handled, work](std::string_view payload, context&) -> plexus::result<void> {
      std::this_thread::sleep_for(work); // the work: waiting on something slow
      handled.fetch_add(1, std::memory_order_relaxed);
      sink.on_message(0, payload.empty() ? '\0' : payload[0]);
      return {};
    });
  n.start();

  plexus::client pub{b.client()};
  std::size_t published = 0; // probes and warm-up included
  auto result = drive(
    sink, size, count,
    [&pub, &published](std::span<const char> m) {
      pub.publish(topic, {m.data(), m.size()});
      ++published;
    },
    [&pub] { pub.flush(30s); });
  if (sink.malformed() != 0)
    throw std::runtime_error(std::to_string(sink.malformed()) +
                             " messages arrived with a payload not sent");
  if (result.received != count)
    throw std::runtime_error(std::to_string(result.received) + " of " + std::to_string(count) +
                             " measured messages were handled in time");

  // Every message, probes and warm-up too, handled once and ACKed: the
  // pool counts a success once its handler returned, so it may lag a little.
  const auto deadline = steady::now() + 10s;
  auto settled = [&] {
    auto st = n.stats();
    return st.size() == 1 ? st.front() : function_stats{};
  };
  auto st = settled();
  while (st.ok < published && steady::now() < deadline) {
    std::this_thread::sleep_for(1ms); // a poll with a deadline
    st = settled();
  }
  n.stop();
  if (handled.load() != published || st.ok != published ||
      st.errors + st.crashes + st.rejected != 0)
    throw std::runtime_error("published " + std::to_string(published) + ", handled " +
                             std::to_string(handled.load()) + ", acked as ok " +
                             std::to_string(st.ok) + ", failed " +
                             std::to_string(st.errors + st.crashes + st.rejected));
  return result;
}

} // namespace plexus::bench
