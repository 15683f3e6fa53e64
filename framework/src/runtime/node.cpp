// SPDX-License-Identifier: Apache-2.0
// A node's public API, and its start and stop in order (node_impl.hpp says
// where each step lives).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include <caf/send.hpp>
#include <httplib.h>
#include <zmq.hpp>

#include "crash_report.hpp"
#include "node_impl.hpp"
#include "plexus/creds.hpp"
#include "server.hpp"
#include "stop_signals.hpp"
#include "supervision.hpp"

namespace plexus {

void detail::check_name(const char* what, const std::string& name) {
  auto bad = name.empty() || name.find_first_of(".*> \t\r\n") != std::string::npos ||
             name.front() == '$' || validate_topic(name) != topic_errc::ok;
  if (bad)
    throw std::invalid_argument(std::string{what} + " name '" + name +
                                "' is not one topic token (no '.', '*', '>', spaces or leading '$')");
}

function_builder& service::function(std::string name) {
  detail::check_name("function", name);
  return *functions_.emplace_back(std::make_unique<function_builder>(std::move(name)));
}

// ---------------------------------------------------------------- start and stop

node::impl::impl() : zctx(std::make_unique<zmq::context_t>(1)) {}

void node::impl::start() {
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
  detail::catch_stop_signals();
  connect();
  spans = std::make_unique<detail::span_sink>(*conn, conn->node_id(), opts.trace_sample);
  try {
    if (opts.metrics_port != 0) serve_metrics();
    declare_durables();
  } catch (...) { // nothing started stays behind: a program's node exits next
    stop_metrics();
    spans->stop();
    spans.reset();
    conn.reset();
    if (embedded) embedded->stop();
    embedded.reset();
    throw;
  }
  publish_stats();
  start_actor_system();
  spawn_tree();
  started = true;
  announce_ready();
}

// Before any function subscribes: a durable function's queue must exist
// before its members join, or they would join a plain queue group.
void node::impl::declare_durables() {
  for (auto& svc : services)
    for (auto& f : svc->functions()) {
      const auto& o = f->options();
      if (!o.durable) continue;
      auto q = o.durable_limits;
      q.name = o.queue.empty() ? svc->name() + "." + f->name() : o.queue;
      q.subjects = {o.pattern};
      try {
        declare_queue(*conn, q);
      } catch (const queue_error& e) {
        auto text = svc->name() + "." + f->name() + " is durable: " + e.what();
        if (opts.broker.empty() && opts.store.empty())
          text += " (the embedded broker keeps one with node_options::store / --store DIR)";
        throw config_error(text);
      }
    }
}

void node::impl::connect() {
  client_options co;
  co.breaker = opts.breaker;
  // Flow control on (the default), and no thread of the node waits for a
  // RESUME: a handler blocked in publish() on a CAF thread could wait for
  // one that only its own node's consumers (on the same threads) can
  // bring. An invocation that publishes to a paused group ends
  // `overloaded` (its message waits in the broker, its pool takes no more
  // until the group is resumed); the actor system's other publishes are
  // held in the client (node_tree.cpp, instance.cpp, pool_core.cpp).
  // Threads of the program's own keep client_options::when_paused.
  co.flow_control = true;
  if (opts.broker.empty()) {
    broker::server_options so;
    so.listen = "inproc://plexus-node-" + std::to_string(reinterpret_cast<std::uintptr_t>(this));
    so.core.id = "embedded";
    so.quiet = true;
    so.store = opts.store;
    embedded = std::make_unique<broker::server>(so, zctx.get());
    embedded->start();
    co.endpoint = embedded->endpoint();
    co.zmq_context = zctx.get();
    conn = std::make_unique<plexus::client>(co);
    return;
  }
  co.endpoint = opts.broker;
  if (!opts.creds.empty()) {
    try {
      auto cr = read_credentials(opts.creds);
      co.curve_public_key = cr.public_key;
      co.curve_secret_key = cr.secret_key;
      co.curve_server_key = cr.broker_key;
    } catch (const creds_error& e) {
      throw config_error(std::string{"--creds: "} + e.what());
    }
  }
  try {
    conn = std::make_unique<plexus::client>(co);
  } catch (const std::invalid_argument& e) { // the endpoint is malformed (checked by the client)
    throw config_error(std::string{"--broker: "} + e.what()); // the text names the endpoint
  }
}

int node::impl::report_start_failure(const std::exception& e) const {
  auto code = dynamic_cast<const config_error*>(&e) ? exit_bad_config : exit_start_failed;
  std::fprintf(stderr, "%s: %s\n", program.empty() ? "plexus node" : program.c_str(), e.what());
  return code;
}

void node::impl::stop() {
  if (!started) return;
  started = false;
  stop_stats(); // threads of the node's own go first: they use the connection
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
  detail::flush_crash_reports(true); // the last second's, drained handlers' crashes included
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

void node::impl::tear_down() {
  sys->await_all_actors_done();
  dispatchers.clear(); // their threads, idle once every pool ended (before the system goes)
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

node::impl::~impl() {
  if (!abandoned) return;
  std::unique_lock lock{shared->m};
  if (shared->cv.wait_for(lock, opts.drain_timeout, [&] { return shared->live_pools == 0; })) {
    lock.unlock();
    tear_down();
    return;
  }
  std::fprintf(stderr, "plexus node: handlers never returned; leaving them to the process exit\n");
  static_cast<void>(sys.release());
  for (auto& d : dispatchers) static_cast<void>(d.release()); // a handler may run there
  static_cast<void>(cfg.release());
  static_cast<void>(spans.release());
  static_cast<void>(conn.release());
  static_cast<void>(embedded.release());
  static_cast<void>(zctx.release());
}

bool node::impl::failed() {
  std::lock_guard lock{shared->m};
  return shared->failed;
}

// ---------------------------------------------------------------- node

node::node(node_options opts) : impl_(std::make_unique<impl>()) { impl_->opts = std::move(opts); }

node::~node() { stop(); }

plexus::service& node::service(std::string name, service_options o) {
  detail::check_name("service", name);
  return *impl_->services.emplace_back(std::make_unique<plexus::service>(std::move(name), o));
}

void node::start() {
  if (impl_->program.empty()) return impl_->start();
  try {
    impl_->start();
  } catch (const std::exception& e) {
    // A program's node: its user gets one line and an exit code, as for a
    // bad flag, never an uncaught exception's abort.
    std::exit(impl_->report_start_failure(e));
  }
}
void node::stop() { impl_->stop(); }

plexus::client& node::client() {
  if (!impl_->conn) throw std::logic_error("node::client() before start()");
  return *impl_->conn;
}

int node::run() {
  try {
    impl_->start();
  } catch (const std::exception& e) {
    return impl_->report_start_failure(e);
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
  while (!detail::stop_signalled() && !sh.failed && !sh.stop_requested &&
         (impl_->opts.duration.count() == 0 || std::chrono::steady_clock::now() < until))
    sh.cv.wait_for(lock, std::chrono::milliseconds{50}); // a signal handler cannot notify
}

} // namespace plexus
