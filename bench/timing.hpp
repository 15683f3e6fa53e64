// SPDX-License-Identifier: Apache-2.0
#pragma once

// Timing loops for scenarios: calibrate an iteration count, then time
// `runs` loops of it. Header-only so the loop body inlines into the loop.

#include <chrono>
#include <cstdint>
#include <vector>

#include "scenario.hpp"

namespace plexus::bench {

/// Makes the compiler believe `value` is read (and memory clobbered), so
/// the work producing it cannot be dropped or hoisted out of the loop.
template <class T>
inline void do_not_optimize(const T& value) noexcept {
  asm volatile("" : : "r,m"(value) : "memory");
}

/// Wall time a timed run aims for.
[[nodiscard]] inline std::chrono::nanoseconds run_target(const run_config& cfg) noexcept {
  using namespace std::chrono_literals;
  return cfg.quick ? std::chrono::nanoseconds{10ms} : std::chrono::nanoseconds{150ms};
}

namespace detail {

template <class Body>
double time_loop(std::uint64_t iterations, Body& body) {
  auto start = std::chrono::steady_clock::now();
  for (std::uint64_t i = 0; i < iterations; ++i) body();
  auto stop = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::nano>(stop - start).count();
}

/// Doubles the iteration count until a loop takes an eighth of the target
/// (which also warms caches and branch predictors), then scales it up.
template <class Body>
std::uint64_t calibrate(const run_config& cfg, Body& body) {
  const double target = static_cast<double>(run_target(cfg).count());
  std::uint64_t n = 1;
  for (;;) {
    double ns = time_loop(n, body);
    if (ns >= target / 8 || n >= (std::uint64_t{1} << 40)) {
      double scaled = static_cast<double>(n) * target / (ns > 0 ? ns : 1);
      return scaled < 1 ? 1 : static_cast<std::uint64_t>(scaled);
    }
    n *= 2;
  }
}

} // namespace detail

/// Times `cfg.runs` loops calling `body()`; each loop lasts about
/// run_target(cfg). Returns, per run, nanoseconds per operation, where one
/// call of `body` performs `ops_per_call` operations (e.g. 64 messages).
template <class Body>
std::vector<double> ns_per_op(const run_config& cfg, double ops_per_call, Body&& body) {
  auto n = detail::calibrate(cfg, body);
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(cfg.runs));
  for (int run = 0; run < cfg.runs; ++run)
    samples.push_back(detail::time_loop(n, body) / (static_cast<double>(n) * ops_per_call));
  return samples;
}

} // namespace plexus::bench
