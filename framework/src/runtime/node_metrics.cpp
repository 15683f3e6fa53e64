// SPDX-License-Identifier: Apache-2.0
// A node's metrics: Prometheus text, and the HTTP server that serves it on
// GET /metrics (its own thread).
#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <stdexcept>

#include <httplib.h>

#include "metrics_http.hpp"
#include "node_impl.hpp"
#include "plexus/metrics.hpp"

namespace plexus {

int node::metrics_port() const noexcept { return impl_->metrics_port; }

std::string node::metrics_text() const { return impl_->metrics_text(); }

void node::impl::serve_metrics() {
  metrics = std::make_unique<httplib::Server>();
  metrics->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(), "text/plain; version=0.0.4; charset=utf-8");
  });
  try {
    metrics_port = broker::bind_metrics_port(*metrics, opts.metrics_port);
  } catch (const broker::metrics_port_error& e) {
    metrics.reset();
    metrics_port = 0;
    throw config_error(e.what());
  }
  metrics_thread = std::thread([m = metrics.get()] { m->listen_after_bind(); });
}

void node::impl::stop_metrics() {
  if (!metrics) return;
  metrics->stop();
  if (metrics_thread.joinable()) metrics_thread.join();
  metrics.reset();
  metrics_port = 0;
}

namespace {
// The client's request breakers (node_options::breaker), one sample set per
// callee topic.
void write_breaker_metrics(observe::prometheus_text& t, const plexus::client* conn) {
  if (!conn) return;
  auto breakers = conn->breakers();
  if (breakers.empty()) return; // none on, or no request made yet
  t.family("plexus_breaker_state", "gauge",
           "A request breaker per callee topic: 1 for the state it is in (closed, open, half_open), 0 "
           "for the others.");
  for (const auto& b : breakers)
    for (auto s : {breaker_state::closed, breaker_state::open, breaker_state::half_open})
      t.sample("plexus_breaker_state", {{"topic", b.topic}, {"state", to_string(s)}},
               std::uint64_t{b.state == s ? 1u : 0u});
  t.family("plexus_breaker_window_failures", "gauge",
           "Failed requests in a closed breaker's window (open: those that opened it).");
  for (const auto& b : breakers) t.sample("plexus_breaker_window_failures", {{"topic", b.topic}}, b.failures);
  t.family("plexus_breaker_window_requests", "gauge",
           "Requests ended in a closed breaker's window (open: those that opened it).");
  for (const auto& b : breakers) t.sample("plexus_breaker_window_requests", {{"topic", b.topic}}, b.requests);
  t.family("plexus_breaker_opened_total", "counter", "Times a request breaker opened.");
  for (const auto& b : breakers) t.sample("plexus_breaker_opened_total", {{"topic", b.topic}}, b.opened);
  t.family("plexus_breaker_refused_total", "counter",
           "Requests a breaker refused (circuit_open, or answered by the topic's fallback).");
  for (const auto& b : breakers) t.sample("plexus_breaker_refused_total", {{"topic", b.topic}}, b.refused);
}
} // namespace

// Prometheus names and conventions: counters end in _total, durations are
// _seconds, one family per quantity with the function as labels.
std::string node::impl::metrics_text() const {
  observe::prometheus_text t;
  auto each = [&](auto&& f) {
    for (auto& p : pools) f(p, observe::labels{{"service", p.service}, {"function", p.function}});
  };
  t.family("plexus_function_invocations_total", "counter",
           "Invocations of a function by how they ended (ok, error, rejected, crash).");
  each([&](auto& p, observe::labels l) {
    auto& c = *p.counters;
    std::pair<const char*, std::uint64_t> by[] = {
      {"ok", c.ok}, {"error", c.errors}, {"rejected", c.rejected}, {"crash", c.crashes}};
    l.emplace_back("status", "");
    for (auto& [status, n] : by) {
      l.back().second = status;
      t.sample("plexus_function_invocations_total", l, n);
    }
  });
  struct counter {
    const char* name;
    const char* help;
    std::atomic<std::uint64_t> detail::pool_counters::*field;
  };
  static constexpr counter counters[] = {
    {"plexus_function_restarts_total", "Instances restarted after a crash.",
     &detail::pool_counters::restarts},
    {"plexus_function_dead_letters_total", "Messages quarantined on $DLQ as poison.",
     &detail::pool_counters::quarantined},
    {"plexus_function_cold_starts_total", "Messages that found the function at zero instances.",
     &detail::pool_counters::cold_starts},
    {"plexus_function_redeliveries_total",
     "Messages that came again (after a failure, a crash or an ACK timeout).",
     &detail::pool_counters::redeliveries},
    {"plexus_function_recycles_total", "Instances replaced because a sibling crashed.",
     &detail::pool_counters::recycled},
    {"plexus_function_escalations_total", "Times its service stopped past its restart intensity.",
     &detail::pool_counters::escalations},
    {"plexus_function_handed_back_total",
     "Messages given back to the broker unfinished, at a stop or an escalation.",
     &detail::pool_counters::handed_back},
    {"plexus_function_retries_total", "Errors whose message went back to wait for a later try.",
     &detail::pool_counters::retries},
    {"plexus_function_throttled_total", "Messages over the rate limit, sent back to wait for their turn.",
     &detail::pool_counters::throttled},
    {"plexus_function_shed_total", "Requests refused at once: max_queued others were waiting.",
     &detail::pool_counters::shed},
    {"plexus_function_overloaded_total",
     "Invocations that published to a paused queue group: their message went back to wait.",
     &detail::pool_counters::overloaded},
    {"plexus_function_downstream_pauses_total",
     "Times the function held its credit back until a paused downstream group was resumed.",
     &detail::pool_counters::downstream_pauses}};
  for (auto& k : counters) {
    t.family(k.name, "counter", k.help);
    each([&](auto& p, const observe::labels& l) { t.sample(k.name, l, ((*p.counters).*k.field).load()); });
  }
  t.family("plexus_function_instances", "gauge", "Instances the function runs now (its target).");
  each([&](auto& p, const observe::labels& l) {
    t.sample("plexus_function_instances", l, std::uint64_t{p.counters->instances.load()});
  });
  struct gauge {
    const char* name;
    const char* help;
    std::uint64_t (*read)(const detail::pool_counters&);
  };
  static constexpr gauge gauges[] = {
    {"plexus_function_in_flight", "Messages whose handler runs now (one per busy instance).",
     [](const detail::pool_counters& c) -> std::uint64_t { return c.in_flight.load(); }},
    {"plexus_function_queue_depth", "Messages taken in by the function that wait for an instance.",
     [](const detail::pool_counters& c) -> std::uint64_t { return c.queue_depth.load(); }},
    {"plexus_function_credit",
     "Credit the broker holds for the function: messages it may send before more is granted.",
     [](const detail::pool_counters& c) -> std::uint64_t {
       return static_cast<std::uint64_t>(std::max<std::int64_t>(0, c.credit.load()));
     }}};
  for (auto& g : gauges) {
    t.family(g.name, "gauge", g.help);
    each([&](auto& p, const observe::labels& l) { t.sample(g.name, l, g.read(*p.counters)); });
  }
  t.family("plexus_function_duration_seconds", "histogram", "Handler durations, start to result.");
  each([&](auto& p, const observe::labels& l) {
    observe::write_histogram(t, "plexus_function_duration_seconds", l, p.counters->duration);
  });
  t.family("plexus_function_duration_quantile_seconds", "gauge",
           "Handler duration quantiles (0.5, 0.99, 0.999), within 1%.");
  each([&](auto& p, const observe::labels& l) {
    observe::write_quantiles(t, "plexus_function_duration_quantile_seconds", l, p.counters->duration);
  });
  // A service's durations: its functions' histograms merged (same buckets).
  std::map<std::string, std::unique_ptr<observe::latency_histogram>> by_service;
  for (auto& p : pools) {
    auto& h = by_service[p.service];
    if (!h) h = std::make_unique<observe::latency_histogram>();
    h->merge(p.counters->duration);
  }
  t.family("plexus_service_duration_seconds", "histogram",
           "Handler durations of all the service's functions, start to result.");
  for (auto& [service, h] : by_service)
    observe::write_histogram(t, "plexus_service_duration_seconds", {{"service", service}}, *h);
  t.family("plexus_service_duration_quantile_seconds", "gauge",
           "The service's handler duration quantiles (0.5, 0.99, 0.999), within 1%.");
  for (auto& [service, h] : by_service)
    observe::write_quantiles(t, "plexus_service_duration_quantile_seconds", {{"service", service}}, *h);
  t.family("plexus_node_spans_dropped_total", "counter",
           "Spans dropped: their queues (a ring per thread, then a shared overflow) were full.");
  t.sample("plexus_node_spans_dropped_total", {}, spans ? spans->dropped() : std::uint64_t{0});
  t.family("plexus_node_spans_streaming", "gauge",
           "1 while something subscribes to the node's spans (they are published), 0 while the "
           "broker says nobody does (they are only kept, for queries).");
  t.sample("plexus_node_spans_streaming", {}, std::uint64_t{spans && spans->streaming() ? 1u : 0u});
  write_breaker_metrics(t, conn.get());
  auto text = t.str();
  std::lock_guard lock{extra_metrics_m};
  for (const auto& render : extra_metrics) text += render();
  return text;
}

void node::add_metrics(std::function<std::string()> render) {
  if (!render) throw std::invalid_argument("node::add_metrics: no function");
  std::lock_guard lock{impl_->extra_metrics_m};
  impl_->extra_metrics.push_back(std::move(render));
}

} // namespace plexus
