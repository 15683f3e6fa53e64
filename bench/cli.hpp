// SPDX-License-Identifier: Apache-2.0
#pragma once

// The command line of plexus-bench. Bad usage is a usage_error, which main
// turns into one line on stderr and exit code 2.

#include <iosfwd>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "scenario.hpp"

namespace plexus::bench {

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct options {
  bool help = false;
  bool list = false;
  bool version = false;
  std::vector<std::string> scenarios; // validated names, in order given; empty = all
  run_config run;
  std::string json_path; // empty = no JSON
  std::string csv_path;      // empty = no CSV
  std::string markdown_path; // empty = no Markdown table
  /// --compare A B: compare two result files instead of running scenarios.
  std::string compare_a, compare_b;
  std::string child;     // --child NAME:ARG, validated NAME; empty = the driver
};

/// Parses the arguments after the program name. Throws usage_error.
[[nodiscard]] options parse_cli(std::span<const std::string_view> args);

void print_help(std::ostream& out);
/// One line per scenario: name, description.
void print_list(std::ostream& out, std::string_view indent = {});

} // namespace plexus::bench
