// SPDX-License-Identifier: Apache-2.0
// Scenario `backpressure` (issue #21): flow control end to end, against a
// plexus-broker process (its own RSS, as deployed) on tcp loopback.
//
// - slow-consumer: one publisher publishing 128 B messages flat out for
//   30 s (3 s with --quick) to a queue group whose one member takes about
//   20 us per message (busy work), ACKs it and grants a credit back.
//   Reported: delivered/s (from the first send to the last delivery), the
//   publisher's rate (what it got published in the 30 s), lost
//   (published and never delivered: must be 0, else the run throws), the
//   broker's peak RSS (VmHWM) and its largest group queue, the publisher's
//   pauses. The same with flow control off (client and broker, as before
//   issue #21) shows what it replaces: the loss, and the memory.
// - pubsub-cost: what flow control costs where it never pauses: the
//   `pubsub` tcp 128 B path (1 publisher -> broker -> 1 plain subscriber),
//   with flow control on (the defaults) and off, runs interleaved.

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "baselines/child_process.hpp"
#include "plexus/client.hpp"
#include "scenario.hpp"
#include "scenarios/throughput.hpp"
#include "systems/cluster.hpp"

namespace plexus::bench {

namespace {

using namespace std::chrono_literals;

constexpr std::string_view listening_prefix = "listening on ";

/// A plexus-broker process on a free loopback port, stats every 100 ms.
class broker_proc {
public:
  explicit broker_proc(bool flow_control) : dir_("plexus-bench-backpressure-") {
    std::vector<std::string> argv{PLEXUS_BENCH_BROKER, "--id", "bp", "--listen",
                                  "tcp://127.0.0.1:*", "--log-level", "warn",
                                  "--stats-interval-ms", "100"};
    if (!flow_control) {
      argv.emplace_back("--pause-percent");
      argv.emplace_back("0");
    }
    log_ = dir_.path() / "broker.log";
    proc_ = std::make_unique<child_process>(argv, log_);
    auto until = steady::now() + 10s;
    while (endpoint_.empty()) {
      auto text = tail_of(log_, 1u << 16);
      if (auto at = text.find(listening_prefix); at != std::string::npos) {
        auto nl = text.find('\n', at);
        if (nl != std::string::npos) endpoint_ = text.substr(at + listening_prefix.size(), nl - at - listening_prefix.size());
      }
      if (!endpoint_.empty()) break;
      if (!proc_->running() || steady::now() >= until)
        throw std::runtime_error("plexus-broker did not start: " + tail_of(log_));
      std::this_thread::sleep_for(2ms); // reading a child's log: nothing to wait on
    }
  }

  [[nodiscard]] const std::string& endpoint() const noexcept { return endpoint_; }

  /// Peak resident set (VmHWM), MiB.
  [[nodiscard]] double peak_rss_mib() const {
    std::ifstream in{"/proc/" + std::to_string(proc_->pid()) + "/status"};
    std::string line;
    while (std::getline(in, line))
      if (line.starts_with("VmHWM:")) return std::stod(line.substr(6)) / 1024.0;
    return 0;
  }

private:
  scratch_dir dir_;
  std::filesystem::path log_;
  std::unique_ptr<child_process> proc_;
  std::string endpoint_;
};

client_options options_for(const broker_proc& b, bool flow_control) {
  client_options o;
  o.endpoint = b.endpoint();
  o.flow_control = flow_control;
  return o;
}

/// The broker's latest stats, through a client of its own.
struct stats_watch {
  std::mutex m;
  std::string json;
  client c;
  explicit stats_watch(const broker_proc& b) : c{options_for(b, true)} {
    c.subscribe("$SYS.broker.bp.stats", [this](const message_view& v) {
      std::lock_guard lock{m};
      json.assign(v.payload);
    });
  }
  std::uint64_t number(std::string_view name) {
    std::lock_guard lock{m};
    return json_number(json, name).value_or(0);
  }
};

struct slow_result {
  std::size_t sent = 0, delivered = 0;
  double seconds = 0, rss_mib = 0;
  std::uint64_t pauses = 0, group_peak = 0, broker_drops = 0;
};

/// One run of the slow consumer case.
slow_result slow_consumer_once(std::chrono::seconds publish_for, bool flow_control) {
  broker_proc b{flow_control};
  stats_watch stats{b};
  std::atomic<std::size_t> delivered{0};
  std::atomic<std::int64_t> last_ns{0};
  std::atomic<bool> ready{false};
  client consumer{options_for(b, flow_control)};
  consumer.subscribe("bench.work", [&](const message_view& v) {
    auto until = steady::now() + 20us; // the work: busy, as a CPU-bound handler is
    while (steady::now() < until) {
    }
    consumer.ack(v.sid, v.seq);
    consumer.grant_credit(v.sid, 1);
    delivered.fetch_add(1, std::memory_order_relaxed);
    last_ns.store(steady::now().time_since_epoch().count(), std::memory_order_relaxed);
  }, {.queue = "workers", .acked = true, .credit = 64});
  consumer.subscribe("bench.ready", [&](const message_view&) { ready = true; });
  client pub{options_for(b, flow_control)};
  auto live_by = steady::now() + 10s;
  while (!ready) { // the SUBs went in order: the group's is in
    pub.publish("bench.ready", "?");
    pub.flush(1s);
    if (steady::now() > live_by) throw std::runtime_error("backpressure: the consumer never subscribed");
    std::this_thread::sleep_for(1ms); // a probe's pace; nothing to wait on
  }
  std::string payload(128, 'x');
  slow_result r;
  auto start = steady::now();
  auto end = start + publish_for;
  while (steady::now() < end) {
    for (int i = 0; i < 256; ++i) pub.publish("bench.work", payload);
    r.sent += 256;
  }
  pub.flush(120s);
  // Everything accepted is delivered unless dropped: wait until the count
  // stops growing.
  auto seen = delivered.load();
  auto quiet_since = steady::now();
  while (delivered.load() < r.sent && steady::now() - quiet_since < 3s) {
    std::this_thread::sleep_for(50ms);
    if (auto now = delivered.load(); now != seen) {
      seen = now;
      quiet_since = steady::now();
    }
  }
  r.delivered = delivered.load();
  auto last = steady::time_point{steady::duration{last_ns.load()}};
  r.seconds = std::chrono::duration<double>(last - start).count();
  std::this_thread::sleep_for(250ms); // the next stats report (every 100 ms)
  r.rss_mib = b.peak_rss_mib();
  r.group_peak = stats.number("group_queue_peak");
  r.broker_drops = stats.number("group_queue_drops");
  r.pauses = pub.stats().pauses;
  return r;
}

void record_one(recorder& rec, std::string_view system, std::string_view metric,
                std::string_view unit, const std::vector<double>& v) {
  rec.add("slow-consumer", system, metric, unit, v);
}

void run_slow_consumer(const run_config& cfg, recorder& rec) {
  const auto publish_for = cfg.quick ? 3s : 30s;
  const int runs = 3; // 30 s each (3 s with --quick); the report needs 3
  for (bool flow : {true, false}) {
    std::vector<double> rate, pub_rate, delivered_pct, rss, peak, pauses;
    for (int i = 0; i < runs; ++i) {
      auto r = slow_consumer_once(publish_for, flow);
      if (flow && r.delivered != r.sent)
        throw std::runtime_error("backpressure: " + std::to_string(r.sent - r.delivered) + " of " +
                                 std::to_string(r.sent) + " messages lost with flow control on");
      rate.push_back(r.seconds > 0 ? double(r.delivered) / r.seconds : 0);
      pub_rate.push_back(double(r.sent) / std::chrono::duration<double>(publish_for).count());
      delivered_pct.push_back(100.0 * double(r.delivered) / double(r.sent));
      rss.push_back(r.rss_mib);
      peak.push_back(double(r.group_peak));
      pauses.push_back(double(r.pauses));
      rec.note(std::string{flow ? "flow on" : "flow off"} + ": sent " + std::to_string(r.sent) +
               ", delivered " + std::to_string(r.delivered) + ", lost " +
               std::to_string(r.sent - r.delivered) + ", broker group_queue_drops " +
               std::to_string(r.broker_drops));
    }
    auto system = flow ? "plexus-flow-on" : "plexus-flow-off";
    record_one(rec, system, "delivered_per_s", "msg/s", rate);
    record_one(rec, system, "published_per_s", "msg/s", pub_rate); // converges to delivered/s
    // lost = 0 is asserted above (flow on); the table takes no zeros, so
    // the share delivered it is: 100 % with flow control.
    record_one(rec, system, "delivered", "%", delivered_pct);
    record_one(rec, system, "broker_peak_rss", "MiB", rss);
    record_one(rec, system, "group_queue_peak", "msgs", peak);
    if (flow) record_one(rec, system, "pauses", "count", pauses);
  }
}

/// pubsub's tcp 128 B path: 1 publisher -> plexus-broker -> 1 plain subscriber.
run_result pubsub_once(std::size_t count, bool flow_control) {
  broker_proc b{flow_control};
  message_sink sink{1, warmup_count(count), count};
  client sub{options_for(b, flow_control)};
  sub.subscribe_batch("bench.load", [&sink](std::span<const message_view> batch) {
    for (auto& m : batch) sink.on_message(0, m.payload.empty() ? '\0' : m.payload[0]);
  });
  client pub{options_for(b, flow_control)};
  return drive(
    sink, 128, count, [&pub](std::span<const char> m) { pub.publish("bench.load", {m.data(), m.size()}); },
    [&pub] { pub.flush(30s); });
}

void run_backpressure(const run_config& cfg, recorder& rec) {
  rec.note("slow-consumer: a queue group member at ~20 us a message, a publisher flat out");
  run_slow_consumer(cfg, rec);
  const std::size_t count = cfg.quick ? 20'000 : 1'000'000;
  record_throughput_interleaved(cfg, rec, "pubsub-cost-128B", 128,
                                {{"plexus-flow-on", [count] { return pubsub_once(count, true); }},
                                 {"plexus-flow-off", [count] { return pubsub_once(count, false); }}});
}

const registration backpressure_registration{
  {"backpressure",
   "flow control (issue #21): a publisher flat out to a slow acking queue group member for 30 s "
   "(delivered/s, lost = 0, broker peak RSS), flow control on and off; and its cost on pubsub's "
   "tcp 128 B path (on vs off, interleaved)",
   &run_backpressure}};

} // namespace

} // namespace plexus::bench
