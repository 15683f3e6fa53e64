// SPDX-License-Identifier: Apache-2.0
#include "systems/plexus.hpp"

#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include "plexus/client.hpp"
#include "plexus/node.hpp"
#include "scenarios/durable.hpp"
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

// ---------------------------------------------------------------- durable queues (issue #19)

namespace {

constexpr std::string_view durable_topic = "bench.durable";
constexpr std::string_view durable_name = "bench-durable";

/// --store-sync's values: always, batch, interval:N (milliseconds).
void apply_sync(broker::server_options& o, std::string_view sync) {
  if (sync == "always") {
    o.store_sync_policy = broker::store_sync::always;
  } else if (sync == "batch") {
    o.store_sync_policy = broker::store_sync::batch;
  } else if (sync.starts_with("interval:")) {
    std::uint64_t ms = 0;
    auto digits = sync.substr(9);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), ms);
    if (ec != std::errc{} || end != digits.data() + digits.size() || ms == 0)
      throw std::invalid_argument("plexus durable: bad store sync '" + std::string{sync} + "'");
    o.store_sync_policy = broker::store_sync::interval;
    o.store_sync_interval = std::chrono::milliseconds{ms};
  } else {
    throw std::invalid_argument("plexus durable: bad store sync '" + std::string{sync} + "'");
  }
}

/// A broker as broker_under_test runs one (unlimited per-connection
/// queues), with a store in `store` and one durable queue on durable_topic.
/// Dedup stays at the broker's default: confirmed publishes carry msg ids,
/// and a restart puts the restored ones back in the window.
broker::server_options durable_options(const std::filesystem::path& store, std::string_view sync,
                                       std::uint64_t max_msgs, std::uint64_t max_bytes) {
  broker::server_options o;
  o.listen = bind_endpoint(transport::tcp);
  o.core.id = "bench";
  o.core.max_pending_msgs = std::size_t{1} << 24;
  o.core.max_pending_bytes = std::size_t{4} << 30;
  o.core.group_queue_msgs = std::size_t{1} << 24;
  o.core.group_queue_bytes = std::size_t{4} << 30;
  o.quiet = true;
  o.store = store.string();
  apply_sync(o, sync);
  broker::durable_config d;
  d.name = std::string{durable_name};
  d.subjects = {std::string{durable_topic}};
  d.max_msgs = max_msgs;
  d.max_bytes = max_bytes;
  o.core.durables.push_back(std::move(d));
  return o;
}

/// The broker on its own context and thread, started.
class durable_broker {
public:
  explicit durable_broker(broker::server_options o) : server_(std::move(o), &ctx_) {
    broker::tune_allocator();
    server_.start();
  }
  ~durable_broker() { server_.stop(); }
  durable_broker(const durable_broker&) = delete;
  durable_broker& operator=(const durable_broker&) = delete;

  [[nodiscard]] client_options client() const {
    client_options o;
    o.endpoint = server_.endpoint();
    return o;
  }

private:
  zmq::context_t ctx_{1};
  broker::server server_;
};

subscribe_options member_options(std::uint32_t credit) {
  subscribe_options o;
  o.queue = std::string{durable_name};
  o.acked = true;
  o.credit = credit;
  return o;
}

// A confirm's closure: the message's index, its kind in the top bit (so
// the closure fits std::function's small buffer).
constexpr std::uint64_t warmup_bit = std::uint64_t{1} << 63;

/// The limits a store filled with `count` messages of `size` B is read
/// back with (the same when it is filled).
std::uint64_t recovery_max_msgs(std::size_t count) { return count + 1024; }
std::uint64_t recovery_max_bytes(std::size_t count, std::size_t size) {
  return std::max<std::uint64_t>(std::uint64_t{2} * count * size, std::uint64_t{64} << 20);
}

} // namespace

durable_result plexus_durable_once(const durable_spec& spec) {
  durable_broker b{durable_options(spec.store, spec.sync, spec.max_msgs, spec.max_bytes)};
  durable_log log{spec};
  // The member acks each message (JetStream's consumer acks each, too) and
  // grants its credit back per batch, as the queue scenario's members do.
  std::optional<plexus::client> member;
  if (spec.consumer) {
    auto& c = member.emplace(b.client());
    c.subscribe_batch(durable_topic, [&c, &log](std::span<const message_view> batch) {
      for (const auto& m : batch) {
        log.consumed(m.payload);
        c.ack(m.sid, m.seq);
      }
      c.grant_credit(batch.front().sid, static_cast<std::uint32_t>(batch.size()));
    }, member_options(spec.credit));
    if (!c.flush(10s)) throw std::runtime_error("plexus durable: the member's SUB was not sent");
  }
  auto co = b.client();
  co.max_unconfirmed = spec.window;
  plexus::client pub{co};
  auto start = publish_durable(spec, log, [&pub, &log](std::string_view payload) {
    durable_kind kind{};
    std::uint64_t i = 0;
    (void)durable_log::parse(payload, kind, i);
    const std::uint64_t key = i | (kind == durable_kind::warmup ? warmup_bit : 0);
    pub.publish_confirmed(durable_topic, payload, [&log, key](std::uint32_t code) {
      log.confirmed((key & warmup_bit) != 0 ? durable_kind::warmup : durable_kind::measured,
                    key & ~warmup_bit, code == 0, status_text(code));
    });
  }, [] {}); // the log hears every confirm
  return log.result(start); // the clients go before the log their handlers feed
}

double plexus_durable_fill(const std::filesystem::path& dir, std::size_t count, std::size_t size) {
  durable_spec spec;
  spec.size = size;
  spec.count = count;
  spec.store = dir;
  spec.max_msgs = recovery_max_msgs(count);
  spec.max_bytes = recovery_max_bytes(count, size);
  return plexus_durable_once(spec).msgs_per_s();
}

durable_recovery plexus_durable_recover_once(const std::filesystem::path& dir, std::size_t count,
                                             bool drain) {
  using clock = steady;
  // Limits that take whatever plexus_durable_fill stored.
  auto opts = durable_options(dir, "batch", recovery_max_msgs(count), std::uint64_t{4} << 30);
  zmq::context_t ctx{1};
  broker::tune_allocator();

  // What a user sees: the broker starts (reading its store), a member
  // connects and joins, and its first message arrives.
  const auto t0 = clock::now();
  broker::server server{std::move(opts), &ctx};
  const auto opened = clock::now();
  server.start();
  struct stopper {
    broker::server& s;
    ~stopper() { s.stop(); }
  } stop_server{server};

  std::mutex m;
  std::condition_variable cv;
  clock::time_point first{};
  std::size_t distinct = 0;
  std::vector<char> seen(drain ? count : 0, 0);
  bool stray = false;
  client_options co;
  co.endpoint = server.endpoint();
  // The broker answers no HELLO until its store's messages are back in
  // their queues: the member waits for that, as long as it takes.
  co.connect_timeout = 300s;
  plexus::client member{co};
  const auto serving = clock::now();
  member.subscribe_batch(durable_topic, [&](std::span<const message_view> batch) {
    const auto now = clock::now();
    std::size_t fresh = 0;
    bool bad = false;
    for (const auto& msg : batch) {
      if (!drain) continue; // held unacked: redelivered to the next broker's member
      durable_kind kind{};
      std::uint64_t i = 0;
      if (!durable_log::parse(msg.payload, kind, i) || i >= count) {
        bad = true;
        continue;
      }
      if (!seen[i]) {
        seen[i] = 1;
        ++fresh;
      }
      member.ack(msg.sid, msg.seq);
    }
    if (drain) member.grant_credit(batch.front().sid, static_cast<std::uint32_t>(batch.size()));
    std::lock_guard lock{m};
    if (first == clock::time_point{}) first = now;
    distinct += fresh;
    stray = stray || bad;
    cv.notify_all();
  }, member_options(drain ? 1024 : 1));

  std::unique_lock lock{m};
  if (!cv.wait_for(lock, 60s, [&] { return first != clock::time_point{}; }))
    throw std::runtime_error("plexus durable recovery: no message within 60 s of the restart");
  durable_recovery r;
  r.open_ms = std::chrono::duration<double, std::milli>(opened - t0).count();
  r.serving_ms = std::chrono::duration<double, std::milli>(serving - t0).count();
  r.first_delivery_ms = std::chrono::duration<double, std::milli>(first - t0).count();
  if (drain) {
    if (!cv.wait_for(lock, 300s, [&] { return distinct == count || stray; }) || stray)
      throw std::runtime_error("plexus durable recovery: the member got " +
                               std::to_string(distinct) + " of the " + std::to_string(count) +
                               " stored messages" + (stray ? ", and some never stored" : ""));
    r.drained = distinct;
  }
  return r; // the member goes first, then the broker stops
}

} // namespace plexus::bench
