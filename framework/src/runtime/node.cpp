// SPDX-License-Identifier: Apache-2.0
#include "plexus/node.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <future>
#include <cstdint>
#include <csignal>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>

#include <CLI/CLI.hpp>
#include <httplib.h>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <zmq.hpp>

#include "function_pool.hpp"
#include "plexus/metrics.hpp"
#include "span_sink.hpp"
#include "supervision.hpp"
#include "server.hpp"

namespace plexus {

namespace {
// A service's or function's name is a topic token of $SYS.supervisor.*
// events and of the default queue group.
void check_name(const char* what, const std::string& name) {
  auto bad = name.empty() || name.find_first_of(".*> \t\r\n") != std::string::npos ||
             name.front() == '$' || validate_topic(name) != topic_errc::ok;
  if (bad)
    throw std::invalid_argument(std::string{what} + " name '" + name +
                                "' is not one topic token (no '.', '*', '>', spaces or leading '$')");
}
} // namespace

function_builder& service::function(std::string name) {
  check_name("function", name);
  return *functions_.emplace_back(std::make_unique<function_builder>(std::move(name)));
}

// ---------------------------------------------------------------- node

namespace {
std::atomic<bool> signalled{false};
extern "C" void on_node_signal(int) { signalled = true; }
} // namespace

struct node::impl {
  node_options opts;
  std::vector<std::unique_ptr<plexus::service>> services;

  std::unique_ptr<zmq::context_t> zctx = std::make_unique<zmq::context_t>(1);
  std::unique_ptr<broker::server> embedded;
  std::unique_ptr<plexus::client> conn;
  std::unique_ptr<detail::span_sink> spans; // after conn: goes before it
  std::thread stats_thread; // $SYS.node.<id>.stats every second
  std::mutex stats_m;
  std::condition_variable stats_cv;
  bool stats_stop = false;
  std::unique_ptr<httplib::Server> metrics; // GET /metrics, on its own thread
  std::thread metrics_thread;
  int metrics_port = 0;
  std::unique_ptr<caf::actor_system_config> cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::actor root;
  struct pool_entry {
    std::string service, function;
    std::shared_ptr<detail::pool_counters> counters;
  };
  std::vector<pool_entry> pools;
  bool started = false;

  // Pools still running (stop() waits for none, up to the drain timeout),
  // and whether the root supervisor stopped the node.
  struct shared_state {
    std::mutex m;
    std::condition_variable cv;
    std::size_t live_pools = 0;
    bool failed = false;
    bool stop_requested = false;
  };
  std::shared_ptr<shared_state> shared = std::make_shared<shared_state>();

  void validate() const {
    for (auto& s : services) {
      check_name("service", s->name());
      for (auto& f : s->functions()) {
        check_name("function", f->name());
        auto where = "function " + s->name() + "." + f->name();
        if (f->options().pattern.empty()) throw std::invalid_argument(where + " has no topic: call on()");
        if (validate_pattern(f->options().pattern) != topic_errc::ok)
          throw std::invalid_argument(where + ": bad topic pattern '" + f->options().pattern + "': " +
                                      to_string(validate_pattern(f->options().pattern)));
        if (!f->handler() && !f->actor())
          throw std::invalid_argument(where + " has no handler: call handle() or plexus::actor_function()");
        if (f->handler() && f->actor())
          throw std::invalid_argument(where + " has both a handler and an actor: choose one");
        const auto& sc = f->options().scale;
        if (sc.max == 0) throw std::invalid_argument(where + ": at most 0 instances: max must be >= 1");
        if (sc.min > sc.max)
          throw std::invalid_argument(where + ": scale min " + std::to_string(sc.min) + " > max " +
                                      std::to_string(sc.max));
        if (!(sc.target > 0) || sc.tick.count() <= 0 || sc.panic_window < sc.tick ||
            sc.stable_window < sc.panic_window || sc.idle_grace.count() < 0)
          throw std::invalid_argument(where + ": scale needs target > 0, tick > 0, tick <= panic "
                                              "window <= stable window, idle grace >= 0");
      }
    }
  }

  void start() {
    if (started) return;
    if (abandoned) throw std::logic_error("node::start(): handlers of the last run never returned");
    validate();
    pools.clear();
    {
      std::lock_guard lock{shared->m};
      shared->failed = false;
      shared->stop_requested = false;
      shared->live_pools = 0;
    }
    // From here a SIGINT/SIGTERM means a graceful stop, even before wait().
    signalled = false;
    std::signal(SIGINT, on_node_signal);
    std::signal(SIGTERM, on_node_signal);
    client_options co;
    if (opts.broker.empty()) {
      broker::server_options so;
      so.listen = "inproc://plexus-node-" + std::to_string(reinterpret_cast<std::uintptr_t>(this));
      so.core.id = "embedded";
      so.quiet = true;
      embedded = std::make_unique<broker::server>(so, zctx.get());
      embedded->start();
      co.endpoint = embedded->endpoint();
      co.zmq_context = zctx.get();
    } else {
      co.endpoint = opts.broker;
    }
    conn = std::make_unique<plexus::client>(co);
    spans = std::make_unique<detail::span_sink>(*conn, conn->node_id(), opts.trace_sample);
    if (opts.metrics_port != 0) serve_metrics();
    publish_stats();
    cfg = std::make_unique<caf::actor_system_config>();
    // CAF's work-stealing workers, when idle, spin (aggressive), then sleep
    // 50 us at a time up to 500 times (moderate), then wait on a condition
    // variable (relaxed). A pool idles between the connector's batches, so
    // the moderate phase ran all the time: a nanosleep and a context switch
    // every 50 us per worker, more CPU than the messages themselves, taken
    // from the broker and I/O threads (measured: 2.1 of 6.6 us per message
    // on 2 cores). Skip it; a relaxed worker looks for work to steal every
    // 1 ms (not CAF's 10), so CPU-heavy handlers still spread quickly.
    cfg->set("work-stealing.aggressive-poll-attempts", std::size_t{10});
    cfg->set("work-stealing.moderate-poll-attempts", std::size_t{0});
    cfg->set("work-stealing.relaxed-sleep-duration", caf::timespan{std::chrono::milliseconds{1}});
    sys = std::make_unique<caf::actor_system>(*cfg);

    // The tree top down; children are told who they are before the first
    // subscription, so no crash report can overtake them.
    detail::root_spec rs;
    rs.opts = opts;
    rs.conn = conn.get();
    for (auto& s : services) rs.services.push_back(s->name());
    rs.stop_node = [sh = shared] {
      std::lock_guard lock{sh->m};
      sh->failed = true;
      sh->cv.notify_all();
    };
    root = detail::spawn_root(*sys, std::move(rs));
    std::vector<caf::actor> service_actors;
    std::vector<std::pair<detail::pool_spec, caf::actor>> to_subscribe;
    for (std::size_t si = 0; si < services.size(); ++si) {
      auto& s = *services[si];
      detail::service_spec ss;
      ss.name = s.name();
      ss.index = si;
      ss.opts = s.options();
      ss.conn = conn.get();
      ss.root = root;
      for (auto& f : s.functions()) {
        ss.functions.push_back(f->name());
        ss.restarts.push_back(f->options().restart);
        ss.counters.push_back(std::make_shared<detail::pool_counters>());
        ss.counters.back()->instances = f->options().scale.min;
      }
      ss.sup = std::make_shared<detail::shared_supervisor>(s.options(), ss.restarts,
                                                           detail::fresh_seed());
      auto counters = ss.counters;
      auto sup = ss.sup;
      auto svc = detail::spawn_service(*sys, std::move(ss));
      std::vector<caf::actor> pool_actors;
      for (std::size_t fi = 0; fi < s.functions().size(); ++fi) {
        detail::pool_spec ps;
        ps.service = s.name();
        ps.index = fi;
        ps.fn = s.functions()[fi].get();
        ps.conn = conn.get();
        ps.spans = spans.get();
        ps.counters = counters[fi];
        ps.sup = sup;
        ps.service_actor = svc;
        ps.confirm_grace = std::min(opts.drain_timeout, std::chrono::milliseconds{1000});
        ps.on_exit = [sh = shared] {
          std::lock_guard lock{sh->m};
          --sh->live_pools;
          sh->cv.notify_all();
        };
        {
          std::lock_guard lock{shared->m};
          ++shared->live_pools;
        }
        auto p = detail::spawn_pool(*sys, ps);
        pool_actors.push_back(p);
        to_subscribe.emplace_back(std::move(ps), p);
        pools.push_back({s.name(), s.functions()[fi]->name(), counters[fi]});
      }
      caf::anon_send(svc, detail::children_atom::value, std::move(pool_actors));
      service_actors.push_back(std::move(svc));
    }
    caf::anon_send(root, detail::children_atom::value, std::move(service_actors));
    for (auto& [ps, p] : to_subscribe) detail::subscribe_pool(ps, p);
    started = true;
    announce_ready();
  }

  // The broker handles a connection's envelopes in order: once it confirms
  // this one, it has every SUB before it, and what anyone publishes from
  // now on reaches the node's functions. Announced on $SYS.node.<id>.up.
  void announce_ready() {
    std::vector<std::string> functions;
    for (auto& p : pools) functions.push_back(p.service + "." + p.function);
    std::promise<std::uint32_t> confirmed;
    auto done = confirmed.get_future();
    conn->publish_confirmed("$SYS.node." + conn->node_id() + ".up", encode_payload(functions),
                            [&confirmed](std::uint32_t code) { confirmed.set_value(code); });
    if (done.wait_for(std::chrono::seconds{10}) != std::future_status::ready)
      throw std::runtime_error("the broker did not confirm the node's subscriptions within 10 s");
  }

  void serve_metrics() {
    metrics = std::make_unique<httplib::Server>();
    metrics->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics_text(), "text/plain; version=0.0.4; charset=utf-8");
    });
    metrics_port = opts.metrics_port < 0 ? metrics->bind_to_any_port("127.0.0.1")
                                         : (metrics->bind_to_port("127.0.0.1", opts.metrics_port)
                                              ? opts.metrics_port : -1);
    if (metrics_port < 0) {
      metrics.reset();
      metrics_port = 0;
      throw std::runtime_error("cannot serve metrics on 127.0.0.1:" + std::to_string(opts.metrics_port));
    }
    metrics_thread = std::thread([m = metrics.get()] { m->listen_after_bind(); });
  }

  // The functions' stats each second, for `plexus top` anywhere in the cluster.
  void publish_stats() {
    stats_stop = false;
    stats_thread = std::thread([this] {
      auto topic = "$SYS.node." + conn->node_id() + ".stats";
      std::unique_lock lock{stats_m};
      while (!stats_cv.wait_for(lock, std::chrono::seconds{1}, [&] { return stats_stop; })) {
        lock.unlock();
        conn->publish(topic, encode_payload(snapshot()));
        lock.lock();
      }
    });
  }

  void stop_stats() {
    {
      std::lock_guard lock{stats_m};
      stats_stop = true;
    }
    stats_cv.notify_all();
    if (stats_thread.joinable()) stats_thread.join();
  }

  [[nodiscard]] std::vector<function_stats> snapshot() const;

  void stop_metrics() {
    if (!metrics) return;
    metrics->stop();
    if (metrics_thread.joinable()) metrics_thread.join();
    metrics.reset();
    metrics_port = 0;
  }

  [[nodiscard]] std::string metrics_text() const;

  void stop() {
    if (!started) return;
    started = false;
    stop_stats();   // threads of the node's own go first: they use the connection
    stop_metrics();
    // Pools stop granting credit, hand back what never started, finish what
    // runs and ACK it; only then does the subscription go (an UNSUB first
    // would make the broker requeue work that is being finished here).
    caf::anon_send(root, detail::stop_atom::value);
    root = caf::actor{}; // no handle may outlive the system
    bool drained = false;
    {
      std::unique_lock lock{shared->m};
      drained = shared->cv.wait_for(lock, opts.drain_timeout, [&] { return shared->live_pools == 0; });
    }
    for (auto& p : pools)
      if (auto sid = p.counters->sid.exchange(0)) conn->unsubscribe(sid);
    if (!drained) {
      // What still runs, or waits behind it in a run, goes back with the UNSUB.
      for (auto& p : pools)
        p.counters->handed_back.fetch_add(p.counters->in_flight.load() + p.counters->queue_depth.load(),
                                          std::memory_order_relaxed);
      // A handler overran the drain timeout. UNSUB makes the broker requeue
      // its message for another member; the handler still holds this
      // node's connection and actor system, so the node keeps both until
      // it is destroyed (and past one more drain timeout, leaves them to
      // the process's exit rather than destroy them under the handler).
      std::fprintf(stderr,
                   "plexus node: handlers still running after the %lld ms drain timeout; their "
                   "messages go back to the broker\n",
                   static_cast<long long>(opts.drain_timeout.count()));
      conn->flush(std::chrono::seconds{5});
      abandoned = true;
      return;
    }
    tear_down();
  }

  void tear_down() {
    sys->await_all_actors_done();
    sys.reset();
    cfg.reset();
    spans->stop(); // the last spans out, before the connection goes
    spans.reset();
    conn->flush(std::chrono::seconds{5}); // ACKs and UNSUBs out before BYE
    conn.reset();
    if (embedded) embedded->stop();
    embedded.reset();
    abandoned = false;
  }

  bool abandoned = false; // stop() timed out: handlers still run on sys and conn

  ~impl() {
    if (!abandoned) return;
    std::unique_lock lock{shared->m};
    if (shared->cv.wait_for(lock, opts.drain_timeout, [&] { return shared->live_pools == 0; })) {
      lock.unlock();
      tear_down();
      return;
    }
    std::fprintf(stderr, "plexus node: handlers never returned; leaving them to the process exit\n");
    static_cast<void>(sys.release());
    static_cast<void>(cfg.release());
    static_cast<void>(spans.release());
    static_cast<void>(conn.release());
    static_cast<void>(embedded.release());
    static_cast<void>(zctx.release());
  }

  [[nodiscard]] bool failed() {
    std::lock_guard lock{shared->m};
    return shared->failed;
  }
};

node::node(int argc, const char* const* argv, std::vector<flag> extra)
  : impl_(std::make_unique<impl>()) {
  CLI::App app{"a plexus node: hosts services of functions"};
  app.set_help_flag("-h,--help", "print this help and exit");
  std::string broker;
  std::uint64_t duration = 0;
  app.add_option("--broker", broker,
                 "a plexus-broker to connect to (e.g. tcp://127.0.0.1:7400); without it the node "
                 "runs an embedded broker");
  app.add_option("--duration", duration, "seconds to run; 0 = until Ctrl-C")->capture_default_str();
  std::string on_failure = "restart";
  app.add_option("--on-failure", on_failure,
                 "a service past its restart intensity: 'restart' it after a growing backoff, or "
                 "'stop' the node (exit code 3)")
    ->check(CLI::IsMember({"restart", "stop"}))
    ->capture_default_str();
  double drain = 10;
  app.add_option("--drain-timeout", drain,
                 "seconds running handlers may take to finish on shutdown; then their messages go "
                 "back to the broker")
    ->check(CLI::Range(0.0, 3600.0))
    ->capture_default_str();
  int metrics_port = 0;
  app.add_option("--metrics-port", metrics_port,
                 "serve Prometheus metrics on http://127.0.0.1:PORT/metrics; 0 = off")
    ->check(CLI::Range(0, 65535))
    ->capture_default_str();
  double trace_sample = impl_->opts.trace_sample;
  app.add_option("--trace-sample", trace_sample,
                 "share of traces whose successful spans are published on $SYS.trace.<node>; "
                 "failed spans always are")
    ->check(CLI::Range(0.0, 1.0))
    ->capture_default_str();
  for (auto& f : extra)
    if (f.value) app.add_option("--" + f.name, *f.value, f.help)->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    // The node's flags are the program's: answer and leave, as any tool does.
    std::fputs(app.help().c_str(), stdout);
    std::exit(0);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: %s (see --help)\n", argc > 0 ? argv[0] : "node", e.what());
    std::exit(2);
  }
  impl_->opts.broker = broker;
  impl_->opts.duration = std::chrono::seconds{duration};
  impl_->opts.on_failure = on_failure == "stop" ? node_options::failure_policy::stop_node
                                                : node_options::failure_policy::restart_service;
  impl_->opts.drain_timeout = std::chrono::milliseconds{static_cast<std::int64_t>(drain * 1000)};
  impl_->opts.trace_sample = trace_sample;
  impl_->opts.metrics_port = metrics_port;
}

node::node(node_options opts) : impl_(std::make_unique<impl>()) { impl_->opts = std::move(opts); }

node::~node() { stop(); }

plexus::service& node::service(std::string name, service_options o) {
  check_name("service", name);
  return *impl_->services.emplace_back(std::make_unique<plexus::service>(std::move(name), o));
}

void node::start() { impl_->start(); }
void node::stop() { impl_->stop(); }

plexus::client& node::client() {
  if (!impl_->conn) throw std::logic_error("node::client() before start()");
  return *impl_->conn;
}

std::vector<function_stats> node::stats() const { return impl_->snapshot(); }

std::vector<function_stats> node::impl::snapshot() const {
  std::vector<function_stats> out;
  for (auto& p : pools) {
    auto& c = *p.counters;
    auto ns = [&](double q) { return static_cast<std::uint64_t>(c.duration.quantile(q) * 1e9); };
    out.push_back({p.service, p.function, c.ok, c.errors, c.crashes, c.restarts, c.rejected,
                   c.quarantined, c.recycled, c.escalations, c.revivals, c.stopped, c.instances,
                   c.live,
                   c.cold_starts, c.cold_start_ns_total, c.cold_start_ns_max, c.inits,
                   c.init_ns_max, c.duration.count(), ns(0.5), ns(0.99), ns(0.999),
                   c.in_flight.load(std::memory_order_relaxed),
                   c.queue_depth.load(std::memory_order_relaxed),
                   static_cast<std::uint32_t>(std::clamp<std::int64_t>(
                     c.credit.load(std::memory_order_relaxed), 0, std::int64_t{UINT32_MAX})),
                   c.handed_back.load(std::memory_order_relaxed)});
  }
  return out;
}

int node::metrics_port() const noexcept { return impl_->metrics_port; }

std::string node::metrics_text() const { return impl_->metrics_text(); }

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
     &detail::pool_counters::handed_back}};
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
  return t.str();
}

int node::run() {
  try {
    start();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "plexus node: %s\n", e.what());
    return 1;
  }
  wait();
  auto failed = impl_->failed();
  stop();
  if (failed) std::fprintf(stderr, "plexus node: a service failed past its restart intensity\n");
  return failed ? exit_service_failed : 0;
}

void node::request_stop() {
  auto& sh = *impl_->shared;
  std::lock_guard lock{sh.m};
  sh.stop_requested = true;
  sh.cv.notify_all();
}

bool node::embedded_broker() const noexcept { return impl_->opts.broker.empty(); }

void node::wait() {
  auto until = std::chrono::steady_clock::now() + impl_->opts.duration;
  auto& sh = *impl_->shared;
  std::unique_lock lock{sh.m};
  while (!signalled && !sh.failed && !sh.stop_requested &&
         (impl_->opts.duration.count() == 0 || std::chrono::steady_clock::now() < until))
    sh.cv.wait_for(lock, std::chrono::milliseconds{50}); // a signal handler cannot notify
}

} // namespace plexus
