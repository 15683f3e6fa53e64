// SPDX-License-Identifier: Apache-2.0
// plexus-broker: parse the configuration, serve until SIGINT/SIGTERM.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <exception>

#include <spdlog/spdlog.h>

#include "options.hpp"
#include "server.hpp"

namespace {
std::atomic<bool> stop_requested{false};
extern "C" void on_signal(int) { stop_requested.store(true); }
} // namespace

int main(int argc, char** argv) {
  plexus::broker::command_line cl;
  try {
    cl = plexus::broker::parse_command_line(argc, argv);
  } catch (const plexus::broker::config_error& e) {
    std::fprintf(stderr, "plexus-broker: %s (see --help)\n", e.what());
    return 2;
  }
  if (cl.exit_now) {
    std::fputs(cl.output.c_str(), stdout);
    return 0;
  }
  spdlog::set_level(spdlog::level::from_str(cl.log_level));
  plexus::broker::tune_allocator();
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  try {
    plexus::broker::server srv{cl.server};
    // Tools and tests wait for this line: it carries the bound endpoint.
    std::printf("listening on %s\n", srv.endpoint().c_str());
    std::fflush(stdout);
    srv.run(stop_requested);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "plexus-broker: %s\n", e.what());
    return 1;
  }
  return 0;
}
