// SPDX-License-Identifier: Apache-2.0
#pragma once

// Results: their statistics, the table for people, the JSON for machines,
// and the sanity check a CI run relies on.

#include <array>
#include <cstddef>
#include <iosfwd>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "machine.hpp"

namespace plexus::bench {

/// Median, MAD (median absolute deviation from the median, unscaled), min
/// and max over the per-run values of one case.
struct run_stats {
  double median = 0;
  double mad = 0;
  double min = 0;
  double max = 0;
  std::size_t runs = 0;
};

[[nodiscard]] run_stats summarize(std::span<const double> samples);

/// One row: a case of a scenario measured on one system.
struct result {
  std::string scenario;
  std::string case_name;
  std::string system;
  std::string metric;
  std::string unit;
  run_stats stats;
};

/// Rows of this system get a ratio to every other system's row of the same
/// scenario, case and metric ("plexus / msgpack-object = 0.41x").
inline constexpr std::string_view subject_system = "plexus";

/// Systems whose rows get ratios, most interesting first: a row of one of
/// them gets a ratio to each row of the same scenario, case and metric whose
/// system comes later here or is not listed ("plexus / nats", "plexus / zmq",
/// "nats / zmq"); rows of unlisted systems get none.
inline constexpr std::array<std::string_view, 2> ratio_systems{subject_system, "nats"};

/// A table cell: fewer decimals as the number grows.
[[nodiscard]] std::string format_number(double v);

void print_header(std::ostream& out, const machine_info& m);
class json_writer;
/// Writes `m`'s fields as keys of the JSON object `w` is in.
void write_machine_fields(json_writer& w, const machine_info& m);
void print_table(std::ostream& out, std::span<const result> results);

/// Why the numbers cannot be trusted, one line each; empty if they are sane
/// (every value finite and > 0, min <= median <= max, at least 3 runs).
/// Says nothing about how fast anything is.
[[nodiscard]] std::vector<std::string> sanity_problems(std::span<const result> results);

/// {"header": {...}, "results": [...]}: the shape tools rely on.
[[nodiscard]] std::string to_json(const machine_info& m, std::span<const result> results);
/// The table as CSV: "# key: value" header lines, then a header row and
/// one row per result (RFC 4180 quoting).
[[nodiscard]] std::string to_csv(const machine_info& m, std::span<const result> results);
/// The header as a list and the table as a Markdown table.
[[nodiscard]] std::string to_markdown(const machine_info& m, std::span<const result> results);
/// Throws std::runtime_error if the file cannot be written.
void write_file(const std::string& path, std::string_view text);

} // namespace plexus::bench
