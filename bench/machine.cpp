// SPDX-License-Identifier: Apache-2.0
#include "machine.hpp"

#include <chrono>
#include <ctime>
#include <fstream>
#include <string_view>
#include <thread>

#include "plexus_bench_git_sha.hpp" // generated at build time by git_sha.cmake

#ifndef PLEXUS_BENCH_BUILD_TYPE
#define PLEXUS_BENCH_BUILD_TYPE "none"
#endif

namespace plexus::bench {

namespace {

std::string compiler_name() {
#if defined(__clang__)
  return "clang " __clang_version__;
#elif defined(__GNUC__)
  return "gcc " __VERSION__;
#else
  return "unknown";
#endif
}

std::string trim(std::string_view s) {
  auto first = s.find_first_not_of(" \t");
  if (first == std::string_view::npos) return {};
  auto last = s.find_last_not_of(" \t\r");
  return std::string{s.substr(first, last - first + 1)};
}

std::string cpu_model() {
  std::ifstream in{"/proc/cpuinfo"};
  for (std::string line; std::getline(in, line);) {
    std::string_view l{line};
    if (!l.starts_with("model name")) continue;
    auto colon = l.find(':');
    if (colon == std::string_view::npos) continue;
    if (auto model = trim(l.substr(colon + 1)); !model.empty()) return model;
  }
  return "unknown";
}

std::string utc_now_iso8601() {
  auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, n);
}

// Other work on the machine skews every number: the header says how busy it was.
std::string load_average() {
  std::ifstream in{"/proc/loadavg"};
  std::string one, five, fifteen;
  if (!(in >> one >> five >> fifteen)) return "unknown";
  return one + " " + five + " " + fifteen;
}

} // namespace

machine_info describe_machine() {
  machine_info m;
  m.git_sha = PLEXUS_BENCH_GIT_SHA;
  m.compiler = compiler_name();
  m.build_type = PLEXUS_BENCH_BUILD_TYPE;
  if (m.build_type.empty()) m.build_type = "none";
  m.cpu = cpu_model();
  m.cores = std::thread::hardware_concurrency();
  m.date = utc_now_iso8601();
  m.load = load_average();
  return m;
}

} // namespace plexus::bench
