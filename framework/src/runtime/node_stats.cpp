// SPDX-License-Identifier: Apache-2.0
// The functions' stats: node::stats(), and each second on
// $SYS.node.<id>.stats for `plexus top` anywhere in the cluster.
#include <algorithm>
#include <chrono>
#include <cstdint>

#include "crash_report.hpp"
#include "node_impl.hpp"
#include "plexus/payload.hpp"

namespace plexus {

std::vector<function_stats> node::stats() const { return impl_->snapshot(); }

std::vector<function_stats> node::impl::snapshot() const {
  std::vector<function_stats> out;
  constexpr auto relaxed = std::memory_order_relaxed;
  for (auto& p : pools) {
    auto& c = *p.counters;
    auto ns = [&](double q) { return static_cast<std::uint64_t>(c.duration.quantile(q) * 1e9); };
    auto& s = out.emplace_back();
    s.service = p.service;
    s.function = p.function;
    s.ok = c.ok;
    s.errors = c.errors;
    s.crashes = c.crashes;
    s.restarts = c.restarts;
    s.rejected = c.rejected;
    s.quarantined = c.quarantined;
    s.recycled = c.recycled;
    s.escalations = c.escalations;
    s.revivals = c.revivals;
    s.stopped = c.stopped;
    s.instances = c.instances;
    s.live = c.live;
    s.cold_starts = c.cold_starts;
    s.cold_start_ns_total = c.cold_start_ns_total;
    s.cold_start_ns_max = c.cold_start_ns_max;
    s.inits = c.inits;
    s.init_ns_max = c.init_ns_max;
    s.invocations = c.duration.count();
    s.duration_p50_ns = ns(0.5);
    s.duration_p99_ns = ns(0.99);
    s.duration_p999_ns = ns(0.999);
    s.in_flight = c.in_flight.load(relaxed);
    s.queue_depth = c.queue_depth.load(relaxed);
    s.credit = static_cast<std::uint32_t>(
      std::clamp<std::int64_t>(c.credit.load(relaxed), 0, std::int64_t{UINT32_MAX}));
    s.handed_back = c.handed_back.load(relaxed);
    s.retries = c.retries.load(relaxed);
    s.throttled = c.throttled.load(relaxed);
    s.shed = c.shed.load(relaxed);
    s.overloaded = c.overloaded.load(relaxed);
    s.downstream_pauses = c.downstream_pauses.load(relaxed);
  }
  return out;
}

// The functions' stats each second, for `plexus top` anywhere in the cluster.
void node::impl::publish_stats() {
  stats_stop = false;
  stats_thread = std::thread([this] {
    auto topic = "$SYS.node." + conn->node_id() + ".stats";
    std::unique_lock lock{stats_m};
    while (!stats_cv.wait_for(lock, std::chrono::seconds{1}, [&] { return stats_stop; })) {
      lock.unlock();
      conn->publish(topic, encode_payload(snapshot()));
      detail::flush_crash_reports(); // a crash storm's summary, once its second is over
      lock.lock();
    }
  });
}

void node::impl::stop_stats() {
  {
    std::lock_guard lock{stats_m};
    stats_stop = true;
  }
  stats_cv.notify_all();
  if (stats_thread.joinable()) stats_thread.join();
}

} // namespace plexus
