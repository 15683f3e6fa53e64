// SPDX-License-Identifier: Apache-2.0
// Scenario `queue`: 1 publisher -> broker -> N competing subscribers of one
// queue group (N = 1, 2, 4), 128 B payloads, tcp on 127.0.0.1; total
// messages per second from the first send to the last receive by any
// member. Each run starts its broker afresh and tears it down.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "baselines/nats.hpp"
#include "scenario.hpp"
#include "scenarios/throughput.hpp"
#include "systems/plexus.hpp"

namespace plexus::bench {

namespace {

/// A system under test: one timed run of `count` messages of `size` bytes
/// shared by `subscribers` members of a queue group. `shares`, if given,
/// receives what each member got.
struct queue_system {
  std::string name;
  std::function<run_result(std::size_t subscribers, std::size_t size, std::size_t count,
                           std::vector<std::size_t>* shares)>
    run_once;
};

std::vector<queue_system> systems(recorder& rec) {
  using shares_t = std::vector<std::size_t>*;
  return with_nats<queue_system>({
    {"plexus", [](std::size_t n, std::size_t size, std::size_t count, shares_t shares) {
       return plexus_queue_once(n, size, count, false, shares);
     }},
    {"plexus-acked", [](std::size_t n, std::size_t size, std::size_t count, shares_t shares) {
       return plexus_queue_once(n, size, count, true, shares);
     }},
  }, {"nats", &nats_queue_once}, rec);
}

constexpr std::size_t payload_bytes = 128;
constexpr std::size_t full_count = 1'000'000;
constexpr std::size_t quick_count = 20'000;
constexpr std::array<std::size_t, 3> subscriber_counts{1, 2, 4};

// "member shares 24.8% .. 25.3%": how evenly the group spread a run.
std::string spread(const std::vector<std::size_t>& shares) {
  std::size_t total = 0;
  for (auto s : shares) total += s;
  if (shares.empty() || total == 0) return "member shares unknown";
  auto [lo, hi] = std::minmax_element(shares.begin(), shares.end());
  std::array<char, 64> buf{};
  auto n = std::snprintf(buf.data(), buf.size(), "member shares %.1f%% .. %.1f%%",
                         100.0 * static_cast<double>(*lo) / static_cast<double>(total),
                         100.0 * static_cast<double>(*hi) / static_cast<double>(total));
  return std::string(buf.data(), n > 0 ? static_cast<std::size_t>(n) : 0);
}

void run_queue(const run_config& cfg, recorder& rec) {
  const auto all = systems(rec);
  const auto count = cfg.quick ? quick_count : full_count;
  for (auto n : subscriber_counts) {
    const auto name = std::to_string(payload_bytes) + "B-" + std::to_string(n) + "sub";
    for (const auto& sys : all) {
      std::vector<std::size_t> shares;
      record_throughput(cfg, rec, name, sys.name, payload_bytes,
                        [&] { return sys.run_once(n, payload_bytes, count, &shares); });
      if (n > 1) rec.note(name + " " + sys.name + ": last run's " + spread(shares));
    }
  }
}

const registration queue_registration{
  {"queue", "1 publisher -> broker -> N queue-group members (1, 2, 4), 128 B: plexus (credit; and acking), nats-server",
   &run_queue}};

} // namespace

} // namespace plexus::bench
