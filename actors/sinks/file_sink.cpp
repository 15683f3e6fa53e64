// SPDX-License-Identifier: Apache-2.0
// The file sink: a blocking function of one instance that appends each
// message as a record (sink_core.hpp) and fdatasyncs before it returns ok,
// so the ACK (and the publisher's confirm 0) means "on disk".

#include "plexus/actors/sinks.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "plexus/topic.hpp"
#include "actor_support.hpp"
#include "sink_core.hpp"

namespace plexus::actors {
namespace {

std::string errno_text(const char* what, int err) { return std::string{what} + ": " + std::strerror(err); }

/// The open file: written by one instance at a time (the mutex covers a
/// restarted instance meeting one still draining).
class appender {
public:
  explicit appender(file_sink_options o) : o_(std::move(o)) {}
  appender(const appender&) = delete;
  appender& operator=(const appender&) = delete;
  ~appender() {
    if (fd_ >= 0) {
      if (dirty_) ::fdatasync(fd_);
      ::close(fd_);
    }
  }

  /// Opens the file (at add time and after rotation); the error, or nullopt.
  std::optional<std::string> open() {
    int fd = ::open(o_.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return errno_text("open", errno);
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      auto why = errno_text("fstat", errno);
      ::close(fd);
      return why;
    }
    if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode)) {
      ::close(fd);
      return std::string{"not a regular file"};
    }
    fd_ = fd;
    dev_ = st.st_dev;
    ino_ = st.st_ino;
    return std::nullopt;
  }

  result<void> write(std::string_view topic, std::string_view msg_id, std::string_view payload) {
    std::lock_guard lock{m_};
    buf_.clear();
    if (auto why = detail::append_record(o_.format, topic, msg_id, payload, buf_)) return reject{*why};
    if (auto why = follow_rotation()) return error{"file sink " + o_.path + ": " + *why};
    struct stat st {};
    off_t before = ::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode) ? st.st_size : -1; // -1: not a file
    std::string_view rest = buf_;
    while (!rest.empty()) {
      auto n = ::write(fd_, rest.data(), rest.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        auto why = errno_text("write", n < 0 ? errno : EIO);
        // A partial record would corrupt the file's framing: cut it off.
        if (before >= 0 && rest.size() != buf_.size()) (void)::ftruncate(fd_, before);
        return error{"file sink " + o_.path + ": " + why};
      }
      rest.remove_prefix(static_cast<std::size_t>(n));
    }
    dirty_ = true;
    auto now = std::chrono::steady_clock::now();
    if (o_.sync == sync_policy::every_message || now - last_sync_ >= o_.sync_interval) {
      if (::fdatasync(fd_) != 0 && errno != EINVAL) { // EINVAL: a device without sync (/dev/null)
        // After a failed sync the page cache's state is unknown (the
        // kernel may have dropped the dirty pages): reopen, and let the
        // broker redeliver; the record may then appear twice.
        auto why = errno_text("fdatasync", errno);
        reopen_later();
        return error{"file sink " + o_.path + ": " + why};
      }
      dirty_ = false;
      last_sync_ = now;
    }
    return {};
  }

private:
  /// Reopens when the path names another file than the open one (renamed
  /// or removed by log rotation), or the last write left it closed.
  std::optional<std::string> follow_rotation() {
    if (fd_ >= 0) {
      struct stat st {};
      if (::stat(o_.path.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) return std::nullopt;
      if (dirty_) ::fdatasync(fd_); // the old file's last records
      ::close(fd_);
      fd_ = -1;
      dirty_ = false;
    }
    return open();
  }
  void reopen_later() {
    ::close(fd_);
    fd_ = -1;
    dirty_ = false;
  }

  file_sink_options o_;
  std::mutex m_;
  int fd_ = -1;
  dev_t dev_{};
  ino_t ino_{};
  bool dirty_ = false; // written since the last fdatasync
  std::chrono::steady_clock::time_point last_sync_{};
  std::string buf_;
};

std::shared_ptr<appender> check(file_sink_options o) {
  std::string problems;
  auto bad = [&](const std::string& what) { detail::add_problem(problems, what); };
  if (!detail::valid_token(o.name, detail::max_sink_name))
    bad("name \"" + o.name + "\": 1-40 letters, digits, '_' or '-'");
  if (auto why = detail::topic_problem("on", o.on, true); !why.empty()) bad(why);
  if (o.format != record_format::line && o.format != record_format::length_prefixed &&
      o.format != record_format::json_line)
    bad("format " + std::to_string(static_cast<int>(o.format)) + ": line, length_prefixed or json_line");
  if (o.sync == sync_policy::interval && o.sync_interval.count() <= 0)
    bad("sync_interval " + std::to_string(o.sync_interval.count()) + "ms: more than 0");
  if (o.max_deliver == 0 || o.max_deliver > 100)
    bad("max_deliver " + std::to_string(o.max_deliver) + ": 1 to 100");
  auto name = o.name, path = o.path;
  std::shared_ptr<appender> out;
  if (path.empty()) {
    bad("path: empty (the file to append to)");
  } else {
    out = std::make_shared<appender>(std::move(o));
    if (auto why = out->open()) bad("path \"" + path + "\": " + *why);
  }
  if (!problems.empty()) throw std::invalid_argument("file sink \"" + name + "\": " + problems);
  return out;
}

} // namespace

std::string file_sink_function_name(std::string_view name) { return "file-sink-" + std::string{name}; }

function_builder& add_file_sink(service& svc, file_sink_options o) {
  auto name = o.name;
  auto on = o.on;
  auto max_deliver = o.max_deliver;
  auto out = check(std::move(o));
  return svc.function(file_sink_function_name(name))
    .on(std::move(on))
    .instances(1)
    .prefetch(256) // fdatasyncs of ~10 ms on a disk: the last waits seconds, not the 30 s ack wait
    .blocking()
    .max_deliver(max_deliver)
    .handle([out](std::string_view payload, context& ctx) -> result<void> {
      return out->write(ctx.topic(), ctx.msg_id(), payload);
    });
}

} // namespace plexus::actors
