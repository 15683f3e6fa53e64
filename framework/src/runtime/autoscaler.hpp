// SPDX-License-Identifier: Apache-2.0
#pragma once

// How many instances a function wants, sans-IO: fed one sample of demand
// (instances at work + messages waiting in the pool) per tick, it answers
// with the instance count to run. Knative's autoscaler, adapted to
// instances that run one message at a time:
//
// - desired = ceil(average demand / target) over a stable window (slow,
//   for scaling down), and over a short panic window (fast, for bursts);
// - a burst (the panic window wanting at least panic_threshold x the
//   instances running) scales up at once and never down until the stable
//   window has seen no burst;
// - with min = 0, the function goes to zero after idle_grace without
//   demand (the next message pays a cold start: the pool spawns for it);
// - always within [min, max].
//
// Memory is bounded: one sample per tick over the stable window.

#include <chrono>
#include <cstdint>
#include <deque>
#include <utility>

#include "plexus/node.hpp"

namespace plexus::detail {

class autoscaler {
public:
  using clock = std::chrono::steady_clock;

  explicit autoscaler(const scale_options& o);

  struct decision {
    std::uint32_t instances = 0;
    const char* why = "steady"; // "burst", "load", "idle", "min", "max", "steady"
  };
  /// One sample: `current` instances running, `demand` messages in the
  /// pool (at work or waiting) at `now`.
  decision sample(std::uint32_t current, std::uint32_t demand, clock::time_point now);

  [[nodiscard]] bool panicking() const noexcept { return panic_until_ > last_; }

private:
  [[nodiscard]] double average(clock::duration window, clock::time_point now) const;

  scale_options o_;
  std::deque<std::pair<clock::time_point, std::uint32_t>> samples_;
  std::deque<std::pair<clock::time_point, std::uint32_t>> wanted_; // stable wants, panic window
  clock::time_point last_demand_{}; // the last sample with demand
  clock::time_point panic_until_{};
  clock::time_point last_{};
  bool seen_demand_ = false;
};

} // namespace plexus::detail
