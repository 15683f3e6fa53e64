// SPDX-License-Identifier: Apache-2.0
#include "systems/cluster.hpp"

#include <signal.h>

#include <charconv>
#include <cstdlib>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "plexus/client.hpp"

namespace plexus::bench {

namespace {

using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::string_view listening_prefix = "listening on ";
constexpr auto poll_period = 2ms; // reading a child's log: nobody can notify us

std::filesystem::path broker_binary() {
  std::filesystem::path binary{PLEXUS_BENCH_BROKER};
  if (!std::filesystem::exists(binary))
    throw std::runtime_error(binary.string() + " does not exist; build the plexus-broker target");
  return binary;
}

std::vector<std::string> broker_argv(const std::string& id, const std::vector<std::string>& peers) {
  // Every broker of the bench's clusters admits the others: they inherit it.
  ::setenv("PLEXUS_CLUSTER_SECRET", "plexus-bench cluster secret", 1);
  std::vector<std::string> argv{broker_binary().string(), "--id", id,
                                "--listen", "tcp://127.0.0.1:*",
                                "--log-level", "warn",
                                "--stats-interval-ms", "100"};
  for (const auto& p : peers) {
    argv.emplace_back("--peer");
    argv.push_back(p);
  }
  return argv;
}

/// The endpoint of a "listening on <endpoint>" line among the complete
/// lines of `text`, or "".
std::string endpoint_in(std::string_view text) {
  for (std::size_t at = 0, nl; (nl = text.find('\n', at)) != std::string_view::npos; at = nl + 1) {
    auto line = text.substr(at, nl - at);
    if (line.starts_with(listening_prefix)) return std::string{line.substr(listening_prefix.size())};
  }
  return {};
}


} // namespace

// ---------------------------------------------------------------- broker_process

broker_process::broker_process(const std::filesystem::path& dir, std::string id,
                               const std::vector<std::string>& peers,
                               std::chrono::milliseconds within)
  : id_(std::move(id)), log_(dir / (id_ + ".log")),
    process_(std::make_unique<child_process>(broker_argv(id_, peers), log_)) {
  const auto until = steady::now() + within;
  for (;;) {
    endpoint_ = endpoint_in(tail_of(log_, 1u << 16));
    if (!endpoint_.empty()) return;
    if (!process_->running())
      throw std::runtime_error("plexus-broker " + id_ + " " + process_->describe() +
                               " before it listened; its log:\n" + log_tail());
    if (steady::now() >= until)
      throw std::runtime_error("plexus-broker " + id_ + " printed no '" +
                               std::string{listening_prefix} + "...' line within " +
                               std::to_string(within.count()) + " ms; its log:\n" + log_tail());
    std::this_thread::sleep_for(poll_period);
  }
}

void broker_process::kill() {
  if (!process_->running()) return;
  ::kill(process_->pid(), SIGKILL);
  if (!process_->wait_for_exit(5s))
    throw std::runtime_error("plexus-broker " + id_ + " still runs 5 s after kill -9");
}

std::string broker_process::log_tail() const { return tail_of(log_); }

// ---------------------------------------------------------------- broker_mesh

broker_mesh::broker_mesh(std::size_t brokers, std::chrono::milliseconds within)
  : dir_("plexus-bench-cluster-") {
  std::vector<std::string> seeds;
  for (std::size_t i = 0; i < brokers; ++i) {
    auto& b = *brokers_.emplace_back(std::make_unique<broker_process>(
      dir_.path(), "b" + std::to_string(i + 1), seeds));
    seeds.push_back(b.endpoint());
  }
  await_linked(within);
}

void broker_mesh::await_linked(std::chrono::milliseconds within) {
  // The latest "peers" gauge each broker published, through a client of
  // its own on that broker (declared after the state its handler feeds,
  // so it stops first).
  struct gauges {
    std::mutex mutex;
    std::condition_variable changed;
    std::vector<std::uint64_t> peers;
    std::vector<std::string> json;
  } g;
  g.peers.assign(brokers_.size(), 0);
  g.json.assign(brokers_.size(), {});
  std::vector<std::unique_ptr<plexus::client>> watchers;
  for (std::size_t i = 0; i < brokers_.size(); ++i) {
    client_options o;
    o.endpoint = brokers_[i]->endpoint();
    auto& c = *watchers.emplace_back(std::make_unique<plexus::client>(o));
    c.subscribe("$SYS.broker." + brokers_[i]->id() + ".stats", [&g, i](const message_view& m) {
      {
        std::lock_guard lock{g.mutex};
        g.json[i].assign(m.payload);
        g.peers[i] = json_number(m.payload, "peers").value_or(0);
      }
      g.changed.notify_all();
    });
  }
  const std::uint64_t expected = brokers_.size() - 1;
  std::unique_lock lock{g.mutex};
  auto linked = [&] {
    for (auto n : g.peers)
      if (n != expected) return false;
    return true;
  };
  if (g.changed.wait_for(lock, within, linked)) return;
  std::string why;
  for (std::size_t i = 0; i < brokers_.size(); ++i)
    why += "\n  " + brokers_[i]->id() + ": " + std::to_string(g.peers[i]) + " peers; last stats: " +
           (g.json[i].empty() ? "none" : g.json[i]);
  lock.unlock();
  throw std::runtime_error("the " + std::to_string(brokers_.size()) +
                           " brokers did not link as a full mesh within " +
                           std::to_string(within.count()) + " ms:" + why);
}

std::optional<std::uint64_t> json_number(std::string_view json, std::string_view name) {
  const auto key = "\"" + std::string{name} + "\":";
  auto at = json.find(key);
  if (at == std::string_view::npos) return std::nullopt;
  auto digits = json.substr(at + key.size());
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc{}) return std::nullopt;
  return v;
}

} // namespace plexus::bench
