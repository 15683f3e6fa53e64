// SPDX-License-Identifier: Apache-2.0
#pragma once

// Child processes for integration tests: spawn with stdout/stderr to a pipe,
// a file or /dev/null; signal; wait with a deadline; read a pipe with a
// deadline (poll(2)); VmRSS from /proc. The destructor kills (SIGKILL) and
// reaps a child that is still there, so a failing test leaves no orphans;
// PR_SET_PDEATHSIG covers the test binary itself being killed.

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace plexus::itest {

enum class redirect { inherit, pipe, file, null };

struct spawn_options {
  std::vector<std::string> args; // args[0] is the executable's path
  redirect out = redirect::pipe;
  redirect err = redirect::inherit;
  std::string out_path, err_path; // for redirect::file
};

class child_process {
public:
  explicit child_process(const spawn_options& o) {
    if (o.args.empty()) throw std::invalid_argument("spawn: no executable");
    std::vector<char*> argv;
    for (auto& a : o.args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    int in_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    int out_fd = open_target(o.out, o.out_path, out_pipe_);
    int err_fd = open_target(o.err, o.err_path, err_pipe_);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      // Only async-signal-safe calls between fork and exec.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::dup2(in_fd, 0);
      if (out_fd >= 0) ::dup2(out_fd, 1);
      if (err_fd >= 0) ::dup2(err_fd, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    int fork_errno = errno;
    ::close(in_fd);
    // The parent keeps only the read ends of its pipes.
    for (int fd : {out_fd, err_fd})
      if (fd >= 0) ::close(fd);
    if (pid_ < 0) throw std::runtime_error(std::string{"fork: "} + std::strerror(fork_errno));
  }

  ~child_process() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {}
    }
    for (int fd : {out_pipe_, err_pipe_})
      if (fd >= 0) ::close(fd);
  }

  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

  /// Sends `sig` unless the child was already reaped.
  void signal(int sig) {
    if (!status_) ::kill(pid_, sig);
  }

  /// The exit code (128 + signal number when killed by one), or nothing if
  /// the child is still running after `timeout`.
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (status_) return status_;
      int st = 0;
      auto r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        return status_;
      }
      if (r < 0 && errno != EINTR) throw std::runtime_error("waitpid failed");
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds{2}); // polling, with a deadline
    }
  }

  [[nodiscard]] bool running() { return !wait(std::chrono::milliseconds{0}); }

  /// One line from the stdout pipe (without the newline), or nothing when
  /// none arrived within `timeout` or the pipe closed.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto nl = out_buf_.find('\n'); nl != std::string::npos) {
        auto line = out_buf_.substr(0, nl);
        out_buf_.erase(0, nl + 1);
        return line;
      }
      if (!read_some(out_pipe_, out_buf_, deadline)) return std::nullopt;
    }
  }

  /// Everything the child writes to its stderr pipe until it closes it (at
  /// exit) or the timeout passes.
  std::string read_stderr(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string all;
    while (read_some(err_pipe_, all, deadline)) {}
    return all;
  }

  /// Resident set size in bytes (VmRSS in /proc/<pid>/status), or nothing
  /// when the process is gone.
  [[nodiscard]] std::optional<std::size_t> rss_bytes() const {
    std::ifstream f{"/proc/" + std::to_string(pid_) + "/status"};
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("VmRSS:", 0) != 0) continue;
      return std::stoull(line.substr(6)) * 1024; // "VmRSS:   1234 kB"
    }
    return std::nullopt;
  }

private:
  static int open_target(redirect r, const std::string& path, int& read_end) {
    switch (r) {
      case redirect::inherit: return -1;
      case redirect::null: return ::open("/dev/null", O_WRONLY | O_CLOEXEC);
      case redirect::file: {
        int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) throw std::runtime_error("cannot open " + path);
        return fd;
      }
      case redirect::pipe: {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
        read_end = p[0];
        return p[1];
      }
    }
    return -1;
  }

  // Appends what is readable before `deadline`; false on EOF or timeout.
  static bool read_some(int fd, std::string& buf, std::chrono::steady_clock::time_point deadline) {
    if (fd < 0) return false;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
      if (left.count() < 0) return false;
      pollfd p{fd, POLLIN, 0};
      int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      char chunk[4096];
      auto n = ::read(fd, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      buf.append(chunk, static_cast<std::size_t>(n));
      return true;
    }
  }

  pid_t pid_ = -1;
  int out_pipe_ = -1, err_pipe_ = -1;
  std::string out_buf_;
  std::optional<int> status_;
};

} // namespace plexus::itest
