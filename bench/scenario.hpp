// SPDX-License-Identifier: Apache-2.0
#pragma once

// The scenario registry. A scenario is one file under scenarios/ that ends
// with a namespace-scope `registration`; adding one to the driver is that
// file plus its line in bench/CMakeLists.txt.

#include <iosfwd>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "report.hpp"

namespace plexus::bench {

/// How long and how often a scenario measures.
struct run_config {
  bool quick = false; // short runs, for CI
  int runs = 5;       // timed runs per case
  /// --data-dir: where scenarios that have more than the table to show
  /// (latency distributions, timelines) write plot data; empty = nowhere.
  std::string data_dir;
};

/// Collects one scenario's results; prints a progress line per case.
class recorder {
public:
  recorder(std::string_view scenario, std::ostream& progress);

  /// One case measured on one system; `samples` holds one value per run.
  void add(std::string_view case_name, std::string_view system, std::string_view metric,
           std::string_view unit, std::span<const double> samples);
  /// A progress line that is not a result (e.g. what is being measured).
  void note(std::string_view text);

  [[nodiscard]] const std::vector<result>& results() const noexcept { return results_; }

private:
  std::string scenario_;
  std::ostream& progress_;
  std::vector<result> results_;
};

/// Runs every case of a scenario. Throws (with a message naming the case)
/// if the code under test misbehaves: a benchmark of a failing call is void.
using scenario_fn = void (*)(const run_config&, recorder&);

/// One part of a scenario run in a fresh process, for what a process keeps
/// between runs (its heap, so memory figures): the scenario starts
/// `plexus-bench --child NAME:ARG` (child_process) and reads what this
/// writes to `out`. Throws like scenario_fn; the child then exits 1.
using child_fn = void (*)(std::string_view arg, std::ostream& out);

struct scenario {
  std::string_view name;
  std::string_view description;
  scenario_fn run = nullptr;
  child_fn child = nullptr; // none: the scenario runs in the driver's process only
};

/// Every registered scenario, sorted by name.
[[nodiscard]] std::vector<scenario> registered_scenarios();
/// The scenario called `name`, or nullptr.
[[nodiscard]] const scenario* find_scenario(std::string_view name);

/// Registers a scenario at start-up; a scenario file defines one:
///   const registration codec_registration{{"codec", "...", &run_codec}};
struct registration {
  explicit registration(scenario s);
};

} // namespace plexus::bench
