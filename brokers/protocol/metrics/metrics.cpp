// SPDX-License-Identifier: Apache-2.0
#include "plexus/metrics.hpp"

#include <cmath>
#include <cstdio>

namespace plexus::observe {

std::size_t latency_histogram::index_of(double ns) noexcept {
  if (ns <= min_ns) return 0;
  auto i = static_cast<std::size_t>(std::log(ns / min_ns) / std::log(ratio));
  return i < buckets ? i : buckets - 1;
}

double latency_histogram::middle_ns(std::size_t i) noexcept {
  // Bucket i holds [min * r^i, min * r^(i+1)): its geometric middle is
  // within sqrt(r) - 1 (under 1%) of anything in it.
  return min_ns * std::pow(ratio, static_cast<double>(i) + 0.5);
}

void latency_histogram::record(std::uint64_t ns) noexcept {
  counts_[index_of(static_cast<double>(ns))].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(ns, std::memory_order_relaxed);
}

void latency_histogram::merge(const latency_histogram& other) noexcept {
  for (std::size_t i = 0; i < buckets; ++i)
    if (auto n = other.counts_[i].load(std::memory_order_relaxed))
      counts_[i].fetch_add(n, std::memory_order_relaxed);
  count_.fetch_add(other.count(), std::memory_order_relaxed);
  sum_.fetch_add(other.sum_ns(), std::memory_order_relaxed);
}

double latency_histogram::quantile(double q) const noexcept {
  auto total = count();
  if (total == 0) return 0;
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total)));
  if (rank == 0) rank = 1;
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < buckets; ++i) {
    seen += counts_[i].load(std::memory_order_relaxed);
    if (seen >= rank) return middle_ns(i) / 1e9;
  }
  return middle_ns(buckets - 1) / 1e9;
}

std::uint64_t latency_histogram::at_most(double seconds) const noexcept {
  auto last = index_of(seconds * 1e9);
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < last; ++i) n += counts_[i].load(std::memory_order_relaxed);
  return n;
}

void prometheus_text::family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += help;
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void prometheus_text::head(std::string_view name, const labels& l) {
  out_ += name;
  if (l.empty()) return;
  out_ += '{';
  for (std::size_t i = 0; i < l.size(); ++i) {
    if (i) out_ += ',';
    out_ += l[i].first;
    out_ += "=\"";
    for (char c : l[i].second) {
      if (c == '\\' || c == '"') out_ += '\\';
      if (c == '\n') {
        out_ += "\\n";
        continue;
      }
      out_ += c;
    }
    out_ += '"';
  }
  out_ += '}';
}

void prometheus_text::sample(std::string_view name, const labels& l, double value) {
  head(name, l);
  char buf[64];
  std::snprintf(buf, sizeof buf, " %.9g\n", value);
  out_ += buf;
}

void prometheus_text::sample(std::string_view name, const labels& l, std::uint64_t value) {
  head(name, l);
  out_ += ' ';
  out_ += std::to_string(value);
  out_ += '\n';
}

void write_histogram(prometheus_text& t, std::string_view name, const labels& l,
                     const latency_histogram& h) {
  static constexpr std::pair<double, const char*> bounds[] = {
    {1e-5, "1e-05"}, {1e-4, "0.0001"}, {1e-3, "0.001"}, {1e-2, "0.01"},
    {1e-1, "0.1"},   {1.0, "1"},       {10.0, "10"}};
  auto bucket = std::string{name} + "_bucket";
  auto with_le = l;
  with_le.emplace_back("le", "");
  for (auto& [le, text] : bounds) {
    with_le.back().second = text;
    t.sample(bucket, with_le, h.at_most(le));
  }
  with_le.back().second = "+Inf";
  auto count = h.count();
  t.sample(bucket, with_le, count);
  t.sample(std::string{name} + "_sum", l, static_cast<double>(h.sum_ns()) / 1e9);
  t.sample(std::string{name} + "_count", l, count);
}

void write_quantiles(prometheus_text& t, std::string_view name, const labels& l,
                     const latency_histogram& h) {
  auto with_q = l;
  with_q.emplace_back("quantile", "");
  for (auto [q, text] : {std::pair{0.5, "0.5"}, std::pair{0.99, "0.99"}, std::pair{0.999, "0.999"}}) {
    with_q.back().second = text;
    t.sample(name, with_q, h.quantile(q));
  }
}

} // namespace plexus::observe
