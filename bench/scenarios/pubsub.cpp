// SPDX-License-Identifier: Apache-2.0
// Scenario `pubsub`: 1 publisher -> broker -> 1 subscriber over tcp on
// 127.0.0.1, payloads of 16, 128 and 1024 B, and 128 B over ipc (a Unix
// socket) and inproc (one process, no kernel); messages per second from
// the first send to the last receive. Beside plexus: zmq_proxy (the same
// hop with no protocol of ours), zmq direct (PUB -> SUB, no hop: the
// floor) and nats-server (tcp only). Each system is one run function; each
// run starts its broker afresh and tears it down.

#include <array>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "baselines/nats.hpp"
#include "baselines/zmq.hpp"
#include "scenario.hpp"
#include "scenarios/throughput.hpp"
#include "systems/plexus.hpp"

namespace plexus::bench {

namespace {

/// A system under test: one timed run of `count` messages of `size` bytes
/// over a transport (nats-server speaks tcp only).
struct pubsub_system {
  std::string name;
  std::function<run_result(std::size_t size, std::size_t count, transport t)> run_once;
  bool tcp_only = false;
  std::string_view only_case{}; // set: measured in this case alone
};

/// Every system, measured in the same run, case by case.
std::vector<pubsub_system> systems(recorder& rec) {
  auto all = with_nats<pubsub_system>(
    {
      {"plexus", [](std::size_t size, std::size_t count, transport t) {
         return plexus_pubsub_once(size, count, t);
       }},
      // As with --auth: CURVE, ZAP, the core's permission checks; what
      // encryption costs, at the headline size.
      {"plexus-curve", [](std::size_t size, std::size_t count, transport t) {
         return plexus_pubsub_once(size, count, t, true);
       }, true, "128B"},
      {"zmq", &zmq_proxy_pubsub_once},
      {"zmq-direct", &zmq_direct_pubsub_once},
    },
    {"nats", [](std::size_t size, std::size_t count, transport) { return nats_pubsub_once(size, count); },
     true},
    rec);
  if (nats_missing().empty()) // TLS with a self-signed certificate: nats-server's encryption
    all.push_back({"nats-tls", [](std::size_t size, std::size_t count, transport) {
                     return nats_pubsub_once(size, count, true);
                   }, true, "128B"});
  return all;
}

struct pubsub_case {
  std::string name;
  std::size_t size;
  transport via;
  std::size_t count;       // messages per timed run
  std::size_t quick_count; // the same under --quick
};

const std::array<pubsub_case, 5> cases{{
  {"16B", 16, transport::tcp, 1'000'000, 20'000},
  {"128B", 128, transport::tcp, 1'000'000, 20'000},
  {"1024B", 1024, transport::tcp, 200'000, 20'000},
  {"128B-ipc", 128, transport::ipc, 1'000'000, 20'000},
  {"128B-inproc", 128, transport::inproc, 1'000'000, 20'000},
}};

void run_pubsub(const run_config& cfg, recorder& rec) {
  const auto all = systems(rec);
  for (const auto& c : cases) {
    const auto count = cfg.quick ? c.quick_count : c.count;
    for (const auto& sys : all) {
      if (sys.tcp_only && c.via != transport::tcp) continue;
      if (!sys.only_case.empty() && sys.only_case != c.name) continue;
      record_throughput(cfg, rec, c.name, sys.name, c.size,
                        [&] { return sys.run_once(c.size, count, c.via); });
    }
  }
}

const registration pubsub_registration{
  {"pubsub", "1 publisher -> broker -> 1 subscriber, 16/128/1024 B over tcp loopback, 128 B over ipc and inproc: plexus, zmq_proxy, zmq direct, nats-server (tcp); at 128 B also plexus with CURVE and nats-server with TLS",
   &run_pubsub}};

} // namespace

} // namespace plexus::bench
