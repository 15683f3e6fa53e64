// SPDX-License-Identifier: Apache-2.0
#pragma once

// Metrics as data, CAF- and HTTP-free (nodes and brokers use it; so may
// a program for metrics of its own): a latency histogram whose
// quantiles are within 1% and whose record() is a few relaxed atomic adds
// (any thread), and a writer of the Prometheus text exposition format
// (https://prometheus.io/docs/instrumenting/exposition_formats/).

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace plexus::observe {

/// Durations from 1 us to ~110 s in buckets 2% apart: a quantile read at a
/// bucket's geometric middle is within 1% of the true value (HdrHistogram's
/// idea with a log scale). Below 1 us counts as 1 us, above the top as the top.
class latency_histogram {
public:
  void record(std::uint64_t ns) noexcept;
  [[nodiscard]] std::uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t sum_ns() const noexcept { return sum_.load(std::memory_order_relaxed); }
  /// The q-quantile (0 < q <= 1) in seconds; 0 when empty.
  [[nodiscard]] double quantile(double q) const noexcept;
  /// How many took at most `seconds` (Prometheus' cumulative `le` buckets).
  [[nodiscard]] std::uint64_t at_most(double seconds) const noexcept;
  /// Adds `other`'s durations to these (e.g. a service's from its
  /// functions'): the same buckets, so quantiles stay within 1%.
  void merge(const latency_histogram& other) noexcept;

  static constexpr double ratio = 1.02;
  static constexpr double min_ns = 1000;
  static constexpr std::size_t buckets = 940; // 1000 ns * 1.02^940 ~ 1.2e11 ns

private:
  [[nodiscard]] static std::size_t index_of(double ns) noexcept;
  [[nodiscard]] static double middle_ns(std::size_t i) noexcept;
  std::array<std::atomic<std::uint64_t>, buckets> counts_{};
  std::atomic<std::uint64_t> count_{0}, sum_{0};
};

using labels = std::vector<std::pair<std::string_view, std::string_view>>;

/// Builds the text exposition: declare each family once (HELP, TYPE), then
/// its samples. Label values are escaped as the format says.
class prometheus_text {
public:
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, const labels& l, double value);
  void sample(std::string_view name, const labels& l, std::uint64_t value);
  [[nodiscard]] const std::string& str() const noexcept { return out_; }

private:
  void head(std::string_view name, const labels& l);
  std::string out_;
};

/// Writes `h` as the histogram family `name` (buckets 10 us .. 10 s, sum,
/// count) for one label set; the family must be declared already.
void write_histogram(prometheus_text& t, std::string_view name, const labels& l,
                     const latency_histogram& h);

/// Writes `h`'s 0.5, 0.99 and 0.999 quantiles (seconds, within 1%) as the
/// gauge family `name` with a `quantile` label; the family must be declared.
void write_quantiles(prometheus_text& t, std::string_view name, const labels& l,
                     const latency_histogram& h);

} // namespace plexus::observe
