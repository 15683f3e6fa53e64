// SPDX-License-Identifier: Apache-2.0
#include "file_io.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include <sodium.h>

#include "plexus/actors/files.hpp"
#include "plexus/payload.hpp"

namespace plexus::actors::detail {

namespace {

namespace fs = std::filesystem;

std::string errno_text(const std::string& what, int err = errno) { return what + ": " + std::strerror(err); }

std::int64_t mtime_of(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

std::string path_in(const std::string& dir, const std::string& name) { return (fs::path{dir} / name).string(); }

bool write_all(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    auto n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

// RENAME_NOREPLACE: a name taken in done/ (by an earlier file of the same
// name) is never overwritten, even by a rename racing this one.
int rename_no_replace(const std::string& from, const std::string& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return errno;
  struct stat st{}; // a file system without RENAME_NOREPLACE
  if (::lstat(to.c_str(), &st) == 0) return EEXIST;
  return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

} // namespace

std::optional<std::string> prepare_dirs(const drop_paths& p) {
  for (const auto* d : {&p.dir, &p.done, &p.failed}) {
    std::error_code ec;
    fs::create_directories(*d, ec);
    if (ec) return "dir \"" + *d + "\": " + ec.message();
    if (!fs::is_directory(*d, ec)) return "dir \"" + *d + "\": not a directory";
    if (::access(d->c_str(), W_OK | X_OK) != 0) return errno_text("dir \"" + *d + "\"");
  }
  return std::nullopt;
}

scan_result scan_dir(const drop_paths& p, const std::string& pattern) {
  scan_result out;
  std::error_code ec;
  for (fs::directory_iterator it{p.dir, ec}, end; !ec && it != end; it.increment(ec)) {
    auto name = it->path().filename().string();
    if (!wanted(name, pattern)) continue;
    struct stat st{};
    if (::stat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    out.files.push_back({std::move(name), static_cast<std::uint64_t>(st.st_size), mtime_of(st)});
  }
  if (ec) out.error = "cannot list " + p.dir + ": " + ec.message();
  return out;
}

read_result read_event(const drop_paths& p, const std::string& name, std::uint64_t max_content,
                       std::uint64_t max_payload) {
  read_result r;
  auto path = path_in(p.dir, name);
  // O_NONBLOCK: a FIFO dropped here must not hang the reader.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  struct stat st{};
  if (fd >= 0 && (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
    ::close(fd);
    r.outcome = read_outcome::gone; // not a file the drop takes
    return r;
  }
  if (fd < 0) {
    r.outcome = errno == ENOENT ? read_outcome::gone : read_outcome::failed;
    r.why = errno_text("open " + path);
    return r;
  }
  file_event ev;
  ev.name = name;
  ev.path = path;
  ev.mtime_ns = mtime_of(st);
  bool inline_it = static_cast<std::uint64_t>(st.st_size) <= max_content;
  crypto_hash_sha256_state sha;
  crypto_hash_sha256_init(&sha);
  std::string buf(64 * 1024, '\0');
  std::uint64_t total = 0;
  for (;;) {
    auto n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      r.outcome = read_outcome::failed;
      r.why = errno_text("read " + path);
      ::close(fd);
      return r;
    }
    if (n == 0) break;
    crypto_hash_sha256_update(&sha, reinterpret_cast<const unsigned char*>(buf.data()),
                              static_cast<unsigned long long>(n));
    total += static_cast<std::uint64_t>(n);
    if (inline_it && total <= max_content) ev.content.append(buf.data(), static_cast<std::size_t>(n));
    else inline_it = false; // it grew past the limit while read
  }
  ::close(fd);
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final(&sha, digest);
  ev.sha256 = to_hex({reinterpret_cast<const char*>(digest), sizeof digest});
  ev.size = total;
  ev.has_content = inline_it;
  if (!inline_it) ev.content.clear();
  r.payload = encode_payload(ev);
  if (ev.has_content && max_payload != 0 && r.payload.size() > max_payload) {
    ev.has_content = false; // the broker would refuse it: the path alone
    ev.content.clear();
    r.payload = encode_payload(ev);
  }
  r.size = total;
  r.mtime_ns = ev.mtime_ns;
  r.base = id_base(name, r.size, r.mtime_ns);
  return r;
}

move_result move_file(const drop_paths& p, const std::string& name, destination to, const std::string& reason,
                      std::uint64_t size, std::int64_t mtime_ns) {
  move_result m;
  auto from = path_in(p.dir, name);
  struct stat st{};
  if (::stat(from.c_str(), &st) != 0) {
    m.outcome = errno == ENOENT ? move_outcome::gone : move_outcome::failed;
    m.why = errno_text("stat " + from);
    return m;
  }
  if (static_cast<std::uint64_t>(st.st_size) != size || mtime_of(st) != mtime_ns) {
    m.outcome = move_outcome::changed;
    return m;
  }
  const auto& dest = to == destination::done ? p.done : p.failed;
  int err = EEXIST;
  for (unsigned n = 0; err == EEXIST && n < 10000; ++n) {
    m.where = path_in(dest, n == 0 ? name : clash_name(name, n));
    err = rename_no_replace(from, m.where);
  }
  if (err != 0) {
    m.outcome = err == ENOENT ? move_outcome::gone : move_outcome::failed;
    m.why = errno_text("rename " + from + " to " + m.where, err);
    return m;
  }
  if (to == destination::failed) {
    auto path = m.where + ".reason";
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    bool ok = fd >= 0 && write_all(fd, reason);
    if (!ok) std::fprintf(stderr, "file drop: cannot write %s: %s\n", path.c_str(), std::strerror(errno));
    if (fd >= 0) ::close(fd);
  }
  return m;
}

std::unique_ptr<dir_watcher> dir_watcher::start(const std::string& dir, std::string pattern, callbacks cb,
                                                std::string& why) {
  int ino = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (ino < 0) {
    why = errno_text("inotify_init1");
    return nullptr;
  }
  constexpr std::uint32_t mask =
    IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK;
  if (::inotify_add_watch(ino, dir.c_str(), mask) < 0) {
    why = errno_text("inotify_add_watch " + dir);
    ::close(ino);
    return nullptr;
  }
  int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    why = errno_text("eventfd");
    ::close(ino);
    return nullptr;
  }
  std::unique_ptr<dir_watcher> w{new dir_watcher{ino, wake}};
  w->thread_ = std::thread{[raw = w.get(), pattern = std::move(pattern), cb = std::move(cb)]() mutable {
    raw->run(std::move(pattern), std::move(cb));
  }};
  return w;
}

dir_watcher::~dir_watcher() {
  std::uint64_t one = 1;
  if (::write(wake_, &one, sizeof one) < 0) std::perror("file drop: eventfd write");
  if (thread_.joinable()) thread_.join();
  ::close(wake_);
  ::close(ino_);
}

void dir_watcher::run(std::string pattern, callbacks cb) {
  alignas(inotify_event) char buf[64 * 1024];
  pollfd fds[2] = {{ino_, POLLIN, 0}, {wake_, POLLIN, 0}};
  for (;;) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return cb.lost(errno_text("poll"));
    }
    if (fds[1].revents != 0) return; // stop
    for (;;) {
      auto n = ::read(ino_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break; // EAGAIN: all read
      for (char* at = buf; at < buf + n;) {
        const auto* ev = reinterpret_cast<const inotify_event*>(at);
        at += sizeof(inotify_event) + ev->len;
        if (ev->mask & IN_Q_OVERFLOW) cb.overflow();
        if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT))
          return cb.lost("the watched directory was removed, moved or unmounted");
        if (ev->len == 0 || (ev->mask & IN_ISDIR) || !(ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO))) continue;
        std::string name{ev->name}; // NUL-padded
        if (wanted(name, pattern)) cb.seen(std::move(name));
      }
    }
  }
}

} // namespace plexus::actors::detail
