// SPDX-License-Identifier: Apache-2.0
#pragma once

// Latency samples of one run reduced to the figures a scenario records:
// per run p50, p99 and max (nearest rank), so the report's median/MAD/min/
// max are over runs, like every other metric.

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstddef>
#include <string_view>
#include <vector>

#include "scenario.hpp"

namespace plexus::bench {

/// Nearest-rank percentile of a sorted, non-empty range; q in (0, 1].
[[nodiscard]] inline double percentile(const std::vector<double>& sorted, double q) {
  assert(!sorted.empty());
  auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

/// Per-run p50, p99 and max of one system's samples, in microseconds.
struct latency_percentiles {
  std::vector<double> p50, p99, max;

  /// One run's samples (non-empty), in microseconds.
  void add_run(std::vector<double> samples_us) {
    assert(!samples_us.empty());
    std::sort(samples_us.begin(), samples_us.end());
    p50.push_back(percentile(samples_us, 0.50));
    p99.push_back(percentile(samples_us, 0.99));
    max.push_back(samples_us.back());
  }

  void record(recorder& rec, std::string_view case_name, std::string_view system) const {
    rec.add(case_name, system, "p50_us", "us", p50);
    rec.add(case_name, system, "p99_us", "us", p99);
    rec.add(case_name, system, "max_us", "us", max);
  }
};

} // namespace plexus::bench
