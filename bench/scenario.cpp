// SPDX-License-Identifier: Apache-2.0
#include "scenario.hpp"

#include <algorithm>
#include <cassert>
#include <ostream>

namespace plexus::bench {

namespace {

// A function-local static: registrations run during static initialisation,
// in no particular order across files.
std::vector<scenario>& registry() {
  static std::vector<scenario> all;
  return all;
}

} // namespace

registration::registration(scenario s) {
  assert(s.run != nullptr && !s.name.empty());
  assert(find_scenario(s.name) == nullptr && "scenario registered twice");
  registry().push_back(s);
}

std::vector<scenario> registered_scenarios() {
  auto all = registry();
  std::sort(all.begin(), all.end(),
            [](const scenario& a, const scenario& b) { return a.name < b.name; });
  return all;
}

const scenario* find_scenario(std::string_view name) {
  for (const auto& s : registry())
    if (s.name == name) return &s;
  return nullptr;
}

recorder::recorder(std::string_view scenario, std::ostream& progress)
  : scenario_(scenario), progress_(progress) {}

void recorder::add(std::string_view case_name, std::string_view system, std::string_view metric,
                   std::string_view unit, std::span<const double> samples) {
  result r{scenario_, std::string{case_name}, std::string{system}, std::string{metric},
           std::string{unit}, summarize(samples)};
  progress_ << '[' << scenario_ << "] " << r.case_name << ' ' << r.system << ": " << r.metric
            << " median " << format_number(r.stats.median) << ' ' << r.unit << ", mad "
            << format_number(r.stats.mad) << " (" << r.stats.runs << " runs)" << std::endl;
  results_.push_back(std::move(r));
}

void recorder::note(std::string_view text) {
  progress_ << '[' << scenario_ << "] " << text << std::endl;
}

} // namespace plexus::bench
