// SPDX-License-Identifier: Apache-2.0
// plexus-bench: the one benchmark driver. Scenarios register themselves
// (see scenario.hpp); this file parses flags and runs the selected ones.

#include <exception>
#include <filesystem>
#include <iostream>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "cli.hpp"
#include "compare.hpp"
#include "machine.hpp"
#include "report.hpp"
#include "scenario.hpp"

namespace plexus::bench {

namespace {

constexpr int exit_failed = 1;
constexpr int exit_usage = 2;

std::vector<scenario> selected(const options& opt) {
  if (opt.scenarios.empty()) return registered_scenarios();
  std::vector<scenario> out;
  for (const auto& name : opt.scenarios) out.push_back(*find_scenario(name));
  return out;
}

void run_one(const scenario& s, const run_config& cfg, std::vector<result>& results) {
  recorder rec{s.name, std::cerr};
  rec.note(std::string{"running: "} + std::string{s.description});
  try {
    s.run(cfg, rec);
  } catch (const std::exception& e) {
    throw std::runtime_error("scenario " + std::string{s.name} + " failed: " + e.what());
  }
  if (rec.results().empty())
    throw std::runtime_error("scenario " + std::string{s.name} + " produced no results");
  results.insert(results.end(), rec.results().begin(), rec.results().end());
}

// plexus-bench --child NAME:ARG: one part of a scenario, in a process of
// its own; no header, only what the part prints.
int run_child(const options& opt) {
  auto colon = opt.child.find(':');
  const auto* s = find_scenario(std::string_view{opt.child}.substr(0, colon));
  s->child(std::string_view{opt.child}.substr(colon + 1), std::cout);
  std::cout.flush();
  return 0;
}

int run(const options& opt) {
  auto machine = describe_machine();
  print_header(std::cout, machine);
  std::cout.flush();
  if (machine.build_type != "Release")
    std::cerr << "plexus-bench: note: " << machine.build_type
              << " build; quote numbers from the release preset only\n";

  if (!opt.run.data_dir.empty()) std::filesystem::create_directories(opt.run.data_dir);
  std::vector<result> results;
  for (const auto& s : selected(opt)) run_one(s, opt.run, results);
  print_table(std::cout, results);
  std::cout.flush();

  if (auto problems = sanity_problems(results); !problems.empty()) {
    for (const auto& p : problems) std::cerr << "plexus-bench: insane result: " << p << '\n';
    return exit_failed;
  }
  if (!opt.json_path.empty()) write_file(opt.json_path, to_json(machine, results));
  if (!opt.csv_path.empty()) write_file(opt.csv_path, to_csv(machine, results));
  if (!opt.markdown_path.empty()) write_file(opt.markdown_path, to_markdown(machine, results));
  return 0;
}

// plexus-bench --compare A B: 1 if a row regressed beyond the noise.
int run_compare(const options& opt) {
  results_file a, b;
  try {
    a = read_results_file(opt.compare_a);
    b = read_results_file(opt.compare_b);
  } catch (const std::exception& e) {
    std::cerr << "plexus-bench: " << e.what() << '\n';
    return exit_usage;
  }
  auto c = compare(a.results, b.results);
  print_comparison(std::cout, a, b, c);
  return c.regressed() ? exit_failed : 0;
}

} // namespace

} // namespace plexus::bench

int main(int argc, char** argv) {
  namespace pb = plexus::bench;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  pb::options opt;
  try {
    opt = pb::parse_cli(args);
  } catch (const pb::usage_error& e) {
    std::cerr << "plexus-bench: " << e.what() << " (see --help)\n";
    return pb::exit_usage;
  }
  if (opt.help) {
    pb::print_help(std::cout);
    return 0;
  }
  if (opt.version) {
    auto m = pb::describe_machine();
    std::cout << "plexus-bench " << m.git_sha << ' ' << m.build_type << '\n';
    return 0;
  }
  if (opt.list) {
    pb::print_list(std::cout);
    return 0;
  }
  try {
    if (!opt.compare_a.empty()) return pb::run_compare(opt);
    return opt.child.empty() ? pb::run(opt) : pb::run_child(opt);
  } catch (const std::exception& e) {
    std::cerr << "plexus-bench: error: " << e.what() << '\n';
    return pb::exit_failed;
  }
}
