// SPDX-License-Identifier: Apache-2.0
#pragma once

// What the runtime and actor tests share: a function's stats by name, a
// confirmed publish waited for, a directory of their own, a broker of
// their own over TCP.

#include <boost/test/unit_test.hpp>

#include <stdlib.h> // mkdtemp

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include <zmq.hpp>

#include "plexus/node.hpp"
#include "server.hpp"

namespace plexus::test {

/// A file's bytes ("" when it cannot be read).
inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in{p, std::ios::binary};
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline function_stats stats_of(node& n, std::string_view fn) {
  for (auto& s : n.stats())
    if (s.function == fn) return s;
  BOOST_FAIL("no function " << fn);
  return {};
}

/// Publishes `payload` with a confirm and waits for it: proves the
/// subscription is live and, for acked functions, that it was handled.
inline std::uint32_t confirmed(client& c, std::string_view topic, std::string_view payload,
                        std::string_view msg_id = {}) {
  auto p = std::make_shared<std::promise<std::uint32_t>>(); // outlives a timeout
  auto f = p->get_future();
  publish_options o;
  o.msg_id = msg_id; // empty: the client makes one
  c.publish_confirmed(topic, payload, [p](std::uint32_t code) { p->set_value(code); }, o);
  return f.wait_for(std::chrono::seconds{20}) == std::future_status::ready ? f.get() : 999u;
}

/// A directory of its own under /tmp (mkdtemp: 0700, unique across
/// processes), removed with what it holds at the end.
struct temp_dir {
  std::filesystem::path path;
  explicit temp_dir(const std::string& what) {
    auto tmpl = (std::filesystem::temp_directory_path() / ("plexus-" + what + "-XXXXXX")).string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp " + tmpl);
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  [[nodiscard]] std::string str() const { return path.string(); }
};

/// A broker of its own on a free loopback port, as another process would see it.
struct tcp_broker {
  zmq::context_t zctx{1};
  broker::server server;

  /// `group_queue_msgs`: what waits in a queue group before the broker drops.
  /// `store`: a directory for durable queues (none: empty).
  explicit tcp_broker(std::size_t group_queue_msgs = broker::config{}.group_queue_msgs,
                      std::string store = {})
    : server{options(group_queue_msgs, std::move(store)), &zctx} {
    server.start();
  }
  [[nodiscard]] std::string endpoint() const { return server.endpoint(); }
  void stop() { server.stop(); }

private:
  static broker::server_options options(std::size_t group_queue_msgs, std::string store) {
    broker::server_options so;
    so.store = std::move(store);
    so.listen = "tcp://127.0.0.1:*";
    so.quiet = true;
    so.core.group_queue_msgs = group_queue_msgs;
    return so;
  }
};

} // namespace plexus::test
