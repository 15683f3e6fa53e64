// SPDX-License-Identifier: Apache-2.0
// plexus-broker: parse the configuration, serve until SIGINT/SIGTERM.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>
#include <string>

#include <unistd.h>

#include <spdlog/spdlog.h>

#include "options.hpp"
#include "server.hpp"

namespace {
std::atomic<bool> stop_requested{false};
extern "C" void on_signal(int) { stop_requested.store(true); }

// Transparent huge pages for malloc's heap. A broker's heap grows with its
// backlog (a queue group behind its publishers, a restore of stored
// messages), and a first touch of a 4 KiB page costs 5-30 us in the VMs
// this runs on: with 2 MiB pages the broker spent 1.1-1.5 us of CPU a
// message instead of 2.6 in the python bench's backlog, and restored a
// million stored messages 2-5x faster (docs/durable-storage.md). glibc
// reads the switch (its tunable glibc.malloc.hugetlb, 2.35 and later) only
// when a process starts, so the broker starts itself again, once, with it
// set; the pid and the arguments stay. An environment that already names
// the tunable is left as it is (glibc.malloc.hugetlb=0 turns this off),
// and so is a kernel with THP off.
void use_huge_pages_for_the_heap(char** argv) {
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::strstr(tunables, "glibc.malloc.hugetlb") != nullptr) return;
  std::ifstream thp{"/sys/kernel/mm/transparent_hugepage/enabled"};
  std::string modes{std::istreambuf_iterator<char>{thp}, {}};
  if (modes.empty() || modes.find("[never]") != std::string::npos) return;
  std::string value = tunables != nullptr && *tunables != '\0'
                        ? std::string{tunables} + ":glibc.malloc.hugetlb=1"
                        : std::string{"glibc.malloc.hugetlb=1"};
  // Set before the exec, and kept if it fails: the check above ends any loop.
  if (::setenv("GLIBC_TUNABLES", value.c_str(), 1) != 0) return;
  ::execv("/proc/self/exe", argv);
#else
  (void)argv;
#endif
}
} // namespace

int main(int argc, char** argv) {
  use_huge_pages_for_the_heap(argv);
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
