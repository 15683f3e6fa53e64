// SPDX-License-Identifier: Apache-2.0
#pragma once

// plexus-bench --compare A.json B.json: the same rows of two result files
// side by side, B / A per row, and a verdict that takes the noise each run
// recorded (MAD, min..max) into account. Pure logic apart from reading
// the files and printing, so it is tested on hand-written files.

#include <cstddef>
#include <iosfwd>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "machine.hpp"
#include "report.hpp"

namespace plexus::bench {

/// What --json wrote: the machine header and the rows.
struct results_file {
  machine_info machine;
  std::vector<result> results;
};

/// Reads a --json file. Throws std::runtime_error naming the file if it
/// cannot be read or is not a plexus-bench results file.
[[nodiscard]] results_file read_results_file(const std::string& path);
/// The same from text; `name` is used in error messages.
[[nodiscard]] results_file parse_results(std::string_view text, std::string_view name);

/// Which way is better for a metric, told by its unit: rates (msg/s, MB/s)
/// and speed-ups (x) are better higher; times (ns, us, ms), sizes (B,
/// bytes) and message counts (msgs: re-sent, lost) are better lower.
enum class better { higher, lower, unknown };
[[nodiscard]] better better_direction(std::string_view unit) noexcept;

enum class verdict {
  same,        // within the noise of the two runs
  improved,    // beyond the noise, the better way
  regressed,   // beyond the noise, the worse way
  incomparable // a median is 0 or the direction of the unit is unknown
};
[[nodiscard]] std::string_view verdict_name(verdict v) noexcept;

/// When a change counts as beyond the noise: the min..max intervals of A
/// and B do not overlap AND |B/A - 1| exceeds both `mads` x the larger
/// relative MAD (MAD / median) of the two and `floor`.
struct noise_rule {
  double mads = 3;
  double floor = 0.02;
};

struct compared_row {
  result a, b;
  double ratio = 0;     // b.median / a.median (0 if a's median is 0)
  double threshold = 0; // |ratio - 1| must exceed this (and the intervals be apart)
  bool overlap = true;  // the min..max intervals overlap
  verdict outcome = verdict::same;
};

struct comparison {
  std::vector<compared_row> rows; // in B's order
  std::vector<result> only_a, only_b;

  [[nodiscard]] std::size_t count(verdict v) const noexcept;
  [[nodiscard]] bool regressed() const noexcept { return count(verdict::regressed) > 0; }
};

/// Pairs rows with the same scenario, case, system and metric.
[[nodiscard]] comparison compare(std::span<const result> a, std::span<const result> b,
                                 const noise_rule& rule = {});

/// The comparison as a table with a summary line.
void print_comparison(std::ostream& out, const results_file& a, const results_file& b,
                      const comparison& c);

} // namespace plexus::bench
