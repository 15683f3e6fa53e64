// SPDX-License-Identifier: Apache-2.0
// The fault suite's worker: a node with one function in the queue group
// "fault" on `fault.work`. Each message's payload is an id; the handler
// appends it to --out (one write(2) per id, O_APPEND, so what it wrote
// survives a kill -9) before it returns, hence before the ACK; --work-us
// makes each message take that long first (so a kill finds messages in
// flight). "ready" on stdout once the broker has the subscription.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "plexus/node.hpp"

int main(int argc, char** argv) {
  std::string out, work = "0";
  plexus::node node{argc, argv,
                    {{"out", "file the processed ids are appended to", &out},
                     {"work-us", "microseconds each message takes (a blocking wait)", &work}}};
  const auto work_us = std::chrono::microseconds{std::stoll(work)};
  if (out.empty()) {
    std::fprintf(stderr, "fault_worker: --out FILE is required\n");
    return 2;
  }
  int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::perror(out.c_str());
    return 1;
  }
  node.service("fault").function("work").on("fault.work").queue("fault").instances(2).blocking()
    .handle([fd, work_us](std::string_view id, plexus::context&) -> plexus::result<void> {
      if (work_us.count() > 0) std::this_thread::sleep_for(work_us); // the work
      std::string line{id};
      line += '\n';
      if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
        return plexus::error{"cannot record the id"};
      return {};
    });
  node.start();
  std::printf("ready\n");
  std::fflush(stdout);
  node.wait();
  node.stop();
  ::close(fd);
  return 0;
}
