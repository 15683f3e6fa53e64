// SPDX-License-Identifier: Apache-2.0
// The gateway's socket stream and task queue for cpp-httplib: see http_io.hpp.
#include "http_io.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace plexus::actors::detail {

namespace {

template <class F>
ssize_t retry_eintr(F f) {
  for (;;) {
    auto n = f();
    if (n >= 0 || errno != EINTR) return n;
  }
}

void address_of(int sock, int (*get)(int, sockaddr*, socklen_t*), std::string& ip, int& port) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (get(sock, reinterpret_cast<sockaddr*>(&a), &len) != 0) return;
  char text[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    ::inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    port = ntohs(v4->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    port = ntohs(v6->sin6_port);
  }
  ip = text;
}

} // namespace

int wait_fd(int fd, short events, int stop_fd, int timeout_ms) {
  pollfd p[2] = {{fd, events, 0}, {stop_fd, POLLIN, 0}};
  for (;;) {
    int n = ::poll(p, stop_fd < 0 ? 1 : 2, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n;
    if (stop_fd >= 0 && (p[1].revents & POLLIN)) return -1;
    return 1;
  }
}

bool socket_stream::is_readable() const {
  return buffered() || wait_fd(sock_, POLLIN, -1, io_timeout_ms) > 0;
}

bool socket_stream::is_writable() const { return wait_fd(sock_, POLLOUT, -1, io_timeout_ms) > 0; }

ssize_t socket_stream::read(char* ptr, size_t size) {
  if (!buffered()) {
    if (!is_readable()) return -1;
    if (size >= sizeof buf_) return retry_eintr([&] { return ::recv(sock_, ptr, size, 0); });
    auto n = retry_eintr([&] { return ::recv(sock_, buf_, sizeof buf_, 0); });
    if (n <= 0) return n;
    off_ = 0;
    len_ = static_cast<std::size_t>(n);
  }
  auto n = std::min(size, len_ - off_);
  std::memcpy(ptr, buf_ + off_, n);
  off_ += n;
  return static_cast<ssize_t>(n);
}

ssize_t socket_stream::write(const char* ptr, size_t size) {
  if (!is_writable()) return -1;
  return retry_eintr([&] { return ::send(sock_, ptr, size, MSG_NOSIGNAL); });
}

void socket_stream::get_remote_ip_and_port(std::string& ip, int& port) const {
  address_of(sock_, ::getpeername, ip, port);
}

void socket_stream::get_local_ip_and_port(std::string& ip, int& port) const {
  address_of(sock_, ::getsockname, ip, port);
}

void elastic_pool::enqueue(std::function<void()> fn) {
  std::lock_guard lock{m_};
  jobs_.push_back(std::move(fn));
  // A thread more when the jobs outnumber the threads waiting for one.
  if (jobs_.size() > idle_ && threads_.size() < max_) {
    try {
      threads_.emplace_back([this] { work(); });
      return;
    } catch (const std::system_error&) { // no thread to be had now: the job waits for one
    }
  }
  cv_.notify_one();
}

void elastic_pool::shutdown() {
  {
    std::lock_guard lock{m_};
    done_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void elastic_pool::work() {
  std::unique_lock lock{m_};
  for (;;) {
    ++idle_;
    cv_.wait(lock, [this] { return !jobs_.empty() || done_; });
    --idle_;
    if (jobs_.empty()) return; // done
    auto fn = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    fn();
    lock.lock();
  }
}

} // namespace plexus::actors::detail
