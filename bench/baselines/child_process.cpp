// SPDX-License-Identifier: Apache-2.0
#include "baselines/child_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <fstream>
#include <algorithm>
#include <stdexcept>
#include <system_error>
#include <thread>

namespace plexus::bench {

// ---------------------------------------------------------------- scratch_dir

scratch_dir::scratch_dir(std::string_view prefix) {
  auto pattern = (std::filesystem::temp_directory_path() / (std::string{prefix} + "XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr)
    throw std::system_error(errno, std::generic_category(), "cannot create a directory " + pattern);
  path_ = pattern;
}

scratch_dir::~scratch_dir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

// ---------------------------------------------------------------- child_process

namespace {

// Between fork and exec only async-signal-safe calls: the parent may have
// other threads (ZeroMQ's, libnats's) holding locks the child would inherit.
// Reports errno to the parent through the pipe and exits.
[[noreturn]] void child_failed(int error_fd) {
  int e = errno;
  [[maybe_unused]] auto n = ::write(error_fd, &e, sizeof e);
  ::_exit(127);
}

[[noreturn]] void exec_child(char* const* argv, const char* output, pid_t parent, int error_fd) {
  auto die = [error_fd] { child_failed(error_fd); };
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) die();
  if (::getppid() != parent) ::_exit(1); // the parent died before prctl
  // Ignored signals survive exec (a background job starts with SIGINT
  // ignored); the child starts with every signal at its default.
  for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  int in = ::open("/dev/null", O_RDONLY);
  int out = ::open(output, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (in < 0 || out < 0) die();
  if (::dup2(in, STDIN_FILENO) < 0 || ::dup2(out, STDOUT_FILENO) < 0 ||
      ::dup2(out, STDERR_FILENO) < 0)
    die();
  // Every other descriptor but the error pipe (close-on-exec) goes.
  if (error_fd > 3) ::close_range(3, static_cast<unsigned>(error_fd) - 1, 0);
  ::close_range(static_cast<unsigned>(error_fd) + 1, UINT_MAX, 0);
  ::execv(argv[0], argv);
  child_failed(error_fd);
}

} // namespace

child_process::child_process(const std::vector<std::string>& argv,
                             const std::filesystem::path& output) {
  if (argv.empty()) throw std::invalid_argument("child_process: no program");
  // Everything the child needs is prepared before fork.
  std::vector<std::string> args = argv;
  std::vector<char*> cargv;
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  const std::string out = output.string();

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0)
    throw std::system_error(errno, std::generic_category(), "pipe2");
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) {
    int e = errno;
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    throw std::system_error(e, std::generic_category(), "fork for " + argv[0]);
  }
  if (pid_ == 0) exec_child(cargv.data(), out.c_str(), parent, pipe_fds[1]);

  // The pipe closes on a successful exec; otherwise it carries errno.
  ::close(pipe_fds[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(pipe_fds[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  ::close(pipe_fds[0]);
  if (n > 0) {
    ::waitpid(pid_, &status_, 0);
    reaped_ = true;
    throw std::system_error(child_errno, std::generic_category(), "cannot start " + argv[0]);
  }
}

child_process::~child_process() { terminate(); }

bool child_process::running() noexcept {
  if (reaped_) return false;
  pid_t r = ::waitpid(pid_, &status_, WNOHANG);
  if (r == pid_ || (r < 0 && errno == ECHILD)) reaped_ = true;
  return !reaped_;
}

bool child_process::wait_for_exit(std::chrono::milliseconds timeout) noexcept {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (running() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds{1});
  return reaped_;
}

bool child_process::succeeded() const noexcept {
  return reaped_ && WIFEXITED(status_) && WEXITSTATUS(status_) == 0;
}

void child_process::terminate(std::chrono::milliseconds grace) noexcept {
  if (!running()) return;
  ::kill(pid_, SIGTERM);
  auto until = std::chrono::steady_clock::now() + grace;
  while (running() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds{1});
  if (reaped_) return;
  ::kill(pid_, SIGKILL);
  while (::waitpid(pid_, &status_, 0) < 0 && errno == EINTR) {}
  reaped_ = true;
}

std::string child_process::describe() const {
  if (!reaped_) return "running";
  if (WIFEXITED(status_)) return "exited with status " + std::to_string(WEXITSTATUS(status_));
  if (WIFSIGNALED(status_)) return "killed by signal " + std::to_string(WTERMSIG(status_));
  return "stopped";
}

std::filesystem::path self_executable() {
  std::error_code ec;
  auto path = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::system_error(ec, "cannot read /proc/self/exe");
  return path;
}

std::string tail_of(const std::filesystem::path& file, std::size_t max_bytes) {
  std::ifstream in{file, std::ios::binary | std::ios::ate};
  if (!in) return {};
  const auto size = static_cast<std::size_t>(std::max<std::streamoff>(in.tellg(), 0));
  const auto skip = size > max_bytes ? size - max_bytes : 0;
  std::string text(size - skip, '\0');
  in.seekg(static_cast<std::streamoff>(skip));
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(std::max<std::streamsize>(in.gcount(), 0)));
  return skip > 0 ? "..." + text : text;
}

} // namespace plexus::bench
