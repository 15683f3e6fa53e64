// SPDX-License-Identifier: Apache-2.0
#include "plexus/node.hpp"

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <sstream>

#include <CLI/CLI.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <zmq.hpp>

#include "function_pool.hpp"
#include "server.hpp"

namespace plexus {

// ---------------------------------------------------------------- context

std::string_view context::topic() const noexcept { return d_.topic; }
std::string_view context::msg_id() const noexcept { return d_.msg_id; }
std::string_view context::reply_to() const noexcept { return d_.reply_to; }
std::uint32_t context::delivery() const noexcept { return d_.count; }

void context::publish(std::string_view topic, std::string_view payload) {
  client_.publish(topic, payload);
}

void context::reply(std::string_view payload) {
  if (!d_.reply_to.empty()) client_.publish(d_.reply_to, payload);
}

function_builder& service::function(std::string name) {
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

  zmq::context_t zctx{1};
  std::unique_ptr<broker::server> embedded;
  std::unique_ptr<plexus::client> conn;
  std::unique_ptr<caf::actor_system_config> cfg;
  std::unique_ptr<caf::actor_system> sys;
  struct pool_entry {
    std::string service, function;
    caf::actor actor;
    std::uint32_t sid = 0;
    std::shared_ptr<detail::pool_counters> counters;
  };
  std::vector<pool_entry> pools;
  bool started = false;

  void start() {
    if (started) return;
    for (auto& s : services)
      for (auto& f : s->functions()) {
        if (f->options().pattern.empty())
          throw std::invalid_argument("function " + s->name() + "." + f->name() + " has no topic: call on()");
        if (!f->handler())
          throw std::invalid_argument("function " + s->name() + "." + f->name() + " has no handler");
      }
    pools.clear();
    client_options co;
    if (opts.broker.empty()) {
      broker::server_options so;
      so.listen = "inproc://plexus-node-" + std::to_string(reinterpret_cast<std::uintptr_t>(this));
      so.core.id = "embedded";
      so.quiet = true;
      embedded = std::make_unique<broker::server>(so, &zctx);
      embedded->start();
      co.endpoint = embedded->endpoint();
      co.zmq_context = &zctx;
    } else {
      co.endpoint = opts.broker;
    }
    conn = std::make_unique<plexus::client>(co);
    cfg = std::make_unique<caf::actor_system_config>();
    sys = std::make_unique<caf::actor_system>(*cfg);
    for (auto& s : services)
      for (auto& f : s->functions()) {
        pool_entry e;
        e.service = s->name();
        e.function = f->name();
        e.counters = std::make_shared<detail::pool_counters>();
        e.actor = detail::spawn_pool(*sys, {s->name(), f.get(), s->options(), conn.get(), e.counters});
        const auto& o = f->options();
        subscribe_options so;
        so.queue = o.queue.empty() ? s->name() + "." + f->name() : o.queue;
        so.acked = true;
        so.credit = o.instances + o.prefetch; // one more granted per finished message
        so.ack_wait_ms = o.ack_wait_ms;
        so.max_deliver = o.max_deliver;
        auto actor = e.actor;
        e.sid = conn->subscribe_batch(o.pattern, [actor](std::span<const message_view> batch) {
          detail::post_batch(actor, batch);
        }, so);
        pools.push_back(std::move(e));
      }
    started = true;
  }

  void stop() {
    if (!started) return;
    // Pools stop granting credit, hand back what never started, finish what
    // runs and ACK it; only then does the subscription go (an UNSUB first
    // would make the broker requeue work that is being finished here).
    for (auto& p : pools) detail::post_stop(p.actor);
    for (auto& p : pools) p.actor = caf::actor{}; // no handle may outlive the system
    sys->await_all_actors_done();
    sys.reset();
    cfg.reset();
    for (auto& p : pools) conn->unsubscribe(p.sid);
    conn->flush(std::chrono::seconds{5}); // ACKs and UNSUBs out before BYE
    conn.reset();
    if (embedded) embedded->stop();
    embedded.reset();
    started = false;
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
}

node::node(node_options opts) : impl_(std::make_unique<impl>()) { impl_->opts = std::move(opts); }

node::~node() { stop(); }

plexus::service& node::service(std::string name, service_options o) {
  return *impl_->services.emplace_back(std::make_unique<plexus::service>(std::move(name), o));
}

void node::start() { impl_->start(); }
void node::stop() { impl_->stop(); }

plexus::client& node::client() {
  if (!impl_->conn) throw std::logic_error("node::client() before start()");
  return *impl_->conn;
}

std::vector<function_stats> node::stats() const {
  std::vector<function_stats> out;
  for (auto& p : impl_->pools) {
    auto& c = *p.counters;
    out.push_back({p.service, p.function, c.ok, c.errors, c.crashes, c.restarts, c.rejected,
                   c.quarantined, c.stopped});
  }
  return out;
}

int node::run() {
  try {
    start();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "plexus node: %s\n", e.what());
    return 1;
  }
  wait();
  stop();
  return 0;
}

void node::wait() {
  signalled = false;
  std::signal(SIGINT, on_node_signal);
  std::signal(SIGTERM, on_node_signal);
  auto until = std::chrono::steady_clock::now() + impl_->opts.duration;
  std::mutex m;
  std::condition_variable cv;
  std::unique_lock lock{m};
  while (!signalled && (impl_->opts.duration.count() == 0 || std::chrono::steady_clock::now() < until))
    cv.wait_for(lock, std::chrono::milliseconds{50}); // a signal handler cannot notify
}

} // namespace plexus
