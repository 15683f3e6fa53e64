// SPDX-License-Identifier: Apache-2.0
#pragma once

// What cpp-httplib gets from the gateway to serve connections its way: a
// socket stream (the gateway runs the keep-alive loop itself, see
// gateway.cpp) and a task queue whose threads are made as connections come.

#include <sys/types.h>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

namespace plexus::actors::detail {

/// A read or write that stalls this long fails (cpp-httplib's 5 s).
inline constexpr int io_timeout_ms = 5000;

/// Polls `fd` for `events` and `stop_fd` (-1: none) for input. 1: ready;
/// 0: timed out; -1: `stop_fd` fired, or an error.
int wait_fd(int fd, short events, int stop_fd, int timeout_ms);

/// A connection's socket as cpp-httplib reads and writes it, buffered (its
/// line reader asks for one byte at a time); one for the connection's life.
class socket_stream final : public httplib::Stream {
public:
  explicit socket_stream(int sock) : sock_(sock) {}
  /// Bytes read from the socket and not yet taken (a pipelined request).
  [[nodiscard]] bool buffered() const noexcept { return off_ < len_; }
  bool is_readable() const override;
  bool is_writable() const override;
  ssize_t read(char* ptr, size_t size) override;
  ssize_t write(const char* ptr, size_t size) override;
  void get_remote_ip_and_port(std::string& ip, int& port) const override;
  void get_local_ip_and_port(std::string& ip, int& port) const override;
  socket_t socket() const override { return sock_; }

private:
  int sock_;
  char buf_[4096];
  std::size_t off_ = 0, len_ = 0;
};

/// cpp-httplib's task queue with threads made as jobs come (its ThreadPool
/// makes them all at start), up to `max`; more jobs wait for one.
class elastic_pool final : public httplib::TaskQueue {
public:
  explicit elastic_pool(std::size_t max) : max_(max) {}
  void enqueue(std::function<void()> fn) override;
  /// From the one thread that enqueues (cpp-httplib's listen loop), once
  /// it stopped: runs what waits, then joins every thread.
  void shutdown() override;

private:
  void work();

  std::size_t max_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  std::size_t idle_ = 0;
  bool done_ = false;
};

} // namespace plexus::actors::detail
