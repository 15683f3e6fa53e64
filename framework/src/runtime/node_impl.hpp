// SPDX-License-Identifier: Apache-2.0
#pragma once

// A node's insides, one job a file:
//   node.cpp          the public API, start and stop in order
//   node_flags.cpp    the standard command-line flags
//   stop_signals.cpp  SIGINT/SIGTERM as a graceful stop
//   node_tree.cpp     checking the services, the CAF supervision tree and
//                     its pools, the actor system's tuning
//   node_stats.cpp    the functions' stats: node::stats(), $SYS.node.<id>.stats
//   node_metrics.cpp  Prometheus text, and the HTTP server for /metrics

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "plexus/client.hpp"
#include "dispatcher.hpp"
#include "plexus/node.hpp"
#include "pool_types.hpp"
#include "span_sink.hpp"

namespace zmq {
class context_t;
}
namespace httplib {
class Server;
}
namespace plexus::broker {
class server;
}

namespace plexus {

namespace detail {
/// A service's or function's name is a topic token of $SYS.supervisor.*
/// events and of the default queue group: throws std::invalid_argument
/// when it is not.
void check_name(const char* what, const std::string& name);
} // namespace detail

struct node::impl {
  impl();
  ~impl();

  // node.cpp
  // Throws config_error, connect_error or another std::exception; when
  // connecting or serving metrics fails, nothing of the node is left running.
  void start();
  // A start's failure as one line on stderr ("<program>: <what>"), and its
  // exit code.
  int report_start_failure(const std::exception& e) const;
  // Connects to opts.broker, or starts the embedded broker and connects to it.
  void connect();
  void declare_durables();
  void stop();
  void tear_down();
  [[nodiscard]] bool failed();

  // node_tree.cpp
  void validate() const;
  void start_actor_system();
  void spawn_tree();
  void announce_ready();

  // node_stats.cpp
  [[nodiscard]] std::vector<function_stats> snapshot() const;
  void publish_stats();
  void stop_stats();

  // node_metrics.cpp
  [[nodiscard]] std::string metrics_text() const;
  // Throws config_error when the port is taken.
  void serve_metrics();
  void stop_metrics();

  node_options opts;
  // argv[0] of a program's node (made from the command line): start()
  // failures end the process with one line. Empty for node(node_options).
  std::string program;
  std::vector<std::unique_ptr<plexus::service>> services;

  std::unique_ptr<zmq::context_t> zctx;
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
  // node::add_metrics: more Prometheus text after the node's own.
  mutable std::mutex extra_metrics_m;
  std::vector<std::function<std::string()>> extra_metrics;
  // Dispatchers of their own (plexus::thread_pool), by name: joined once
  // every actor is done, before the actor system goes (tear_down).
  std::vector<std::unique_ptr<detail::dispatcher>> dispatchers;
  std::unique_ptr<caf::actor_system_config> cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::actor root;
  struct pool_entry {
    std::string service, function;
    std::shared_ptr<detail::pool_counters> counters;
  };
  std::vector<pool_entry> pools;
  bool started = false;
  bool abandoned = false; // stop() timed out: handlers still run on sys and conn

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
};

} // namespace plexus
