// SPDX-License-Identifier: Apache-2.0
// The shell of crash_limiter (crash_report.hpp): one limiter for the
// process, as stderr is one, and the lines themselves.
#include "crash_report.hpp"

#include <cstdio>
#include <ctime>
#include <mutex>

namespace plexus::detail {

namespace {

struct process_limiter {
  std::mutex m;
  crash_limiter limiter;
};

process_limiter& limiter() {
  static process_limiter l;
  return l;
}

// As context::log stamps its lines: UTC, milliseconds.
void stamp(char (&out)[40]) {
  auto t = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(t);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char date[24];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(out, sizeof out, "%s.%03lldZ", date, static_cast<long long>(ms));
}

void print_unprinted(std::uint64_t n) {
  if (n == 0) return;
  char at[40];
  stamp(at);
  std::fprintf(stderr,
               "%s error plexus node: ... and %llu more crashes in the last second (at most %u "
               "lines a second)\n",
               at, static_cast<unsigned long long>(n), crash_lines_per_second);
}

int length(std::string_view s) { return static_cast<int>(s.size()); }
std::string_view or_dash(std::string_view s) { return s.empty() ? std::string_view{"-"} : s; }

} // namespace

void report_crash(std::string_view function, std::string_view msg_id, std::string_view trace_id,
                  std::string_view what) {
  auto& l = limiter();
  std::lock_guard lock{l.m}; // the lines of two crashes never interleave
  auto v = l.limiter.crash(crash_limiter::clock::now());
  print_unprinted(v.unprinted);
  if (!v.print) return;
  char at[40];
  stamp(at);
  msg_id = or_dash(msg_id);
  trace_id = or_dash(trace_id);
  std::fprintf(stderr, "%s error %.*s msg=%.*s trace=%.*s crashed: %.*s\n", at, length(function),
               function.data(), length(msg_id), msg_id.data(), length(trace_id), trace_id.data(),
               length(what), what.data());
}

void flush_crash_reports(bool stopping) {
  auto& l = limiter();
  std::lock_guard lock{l.m};
  print_unprinted(stopping ? l.limiter.close_window() : l.limiter.tick(crash_limiter::clock::now()));
}

} // namespace plexus::detail
