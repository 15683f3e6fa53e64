// SPDX-License-Identifier: Apache-2.0
#include "log.hpp"

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <system_error>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "record.hpp"

namespace plexus::broker::store {

namespace fs = std::filesystem;

void detail::unique_fd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

namespace {

using detail::unique_fd;

// Keeps a buffer's memory between commits, unless a burst made it huge.
constexpr std::size_t keep_buffer_bytes = 16u << 20;

[[noreturn]] void throw_errno(int err, std::string_view what, const fs::path& p) {
  throw std::system_error(err, std::generic_category(),
                          "store: " + std::string{what} + " " + p.string());
}

unique_fd open_or_throw(const fs::path& p, int flags, mode_t mode = 0) {
  int fd;
  do fd = ::open(p.c_str(), flags | O_CLOEXEC, mode);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) throw_errno(errno, "open", p);
  return unique_fd{fd};
}

std::string segment_name(std::uint64_t base) {
  char name[32];
  std::snprintf(name, sizeof name, "%016" PRIx64 ".seg", base);
  return name;
}

std::optional<std::uint64_t> parse_segment_name(std::string_view name) {
  if (name.size() != 20 || name.substr(16) != ".seg") return std::nullopt;
  std::uint64_t v = 0;
  for (char c : name.substr(0, 16)) {
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else return std::nullopt;
    v = v << 4 | static_cast<std::uint64_t>(d);
  }
  return v;
}

void write_all(int fd, std::string_view bytes, const fs::path& p) {
  while (!bytes.empty()) {
    auto n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno(errno, "write", p);
    if (n == 0) throw_errno(EIO, "write", p);
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

// Reads into `data` from `offset`, up to `n` bytes or the end of the file;
// returns how many it read.
std::size_t pread_some(int fd, char* data, std::size_t n, std::uint64_t offset,
                       const fs::path& p) {
  std::size_t done = 0;
  while (done < n) {
    auto got = ::pread(fd, data + done, n - done, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw_errno(errno, "read", p);
    if (got == 0) break;
    done += static_cast<std::size_t>(got);
  }
  return done;
}

// Fills `out` from `offset`; false at end of file first.
bool pread_all(int fd, std::string& out, std::uint64_t offset, const fs::path& p) {
  return pread_some(fd, out.data(), out.size(), offset, p) == out.size();
}

bool all_zero(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == '\0'; });
}

std::uint64_t file_size(int fd, const fs::path& p) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno(errno, "stat", p);
  return static_cast<std::uint64_t>(st.st_size);
}

// Recovery reads segments a window at a time: this much, or one record
// that is bigger. Its memory is one window whatever the segments hold, not
// a whole segment (64 MiB by default) in fresh pages for each.
constexpr std::size_t recovery_window = 1u << 20;

// A window of a file: bytes() are the file's from offset(). The buffer is
// reused from read to read and never zeroed before it is read over.
class file_window {
public:
  [[nodiscard]] std::string_view bytes() const noexcept { return {data_.get(), size_}; }
  [[nodiscard]] std::uint64_t offset() const noexcept { return offset_; }
  /// Whether the last read() stopped at the end of the file.
  [[nodiscard]] bool at_end() const noexcept { return at_end_; }
  [[nodiscard]] bool holds(std::uint64_t offset, std::size_t n) const noexcept {
    return offset >= offset_ && offset - offset_ <= size_ && n <= size_ - (offset - offset_);
  }

  /// Holds nothing, keeping the buffer: for another file.
  void forget() noexcept { size_ = 0; }

  /// Reads `n` bytes from `offset`, fewer at the end of the file.
  void read(int fd, std::uint64_t offset, std::size_t n, const fs::path& p) {
    if (n > capacity_) {
      data_.reset(); // not both at once
      data_ = std::make_unique_for_overwrite<char[]>(n);
      capacity_ = n;
    }
    offset_ = offset;
    size_ = pread_some(fd, data_.get(), n, offset, p);
    at_end_ = size_ < n;
  }

private:
  std::unique_ptr<char[]> data_;
  std::size_t size_ = 0, capacity_ = 0;
  std::uint64_t offset_ = 0;
  bool at_end_ = false;
};

// Decodes a segment's records from file offset `from`, a window at a time,
// `w` holding the first (read from 0): f(const record&, file offset) for
// each. Returns why the decoder stopped and the file offset of the end of
// the last good record, as a decoder over the whole file would.
template <class F>
std::pair<stop_reason, std::uint64_t> replay(int fd, const fs::path& p, file_window& w,
                                             std::uint64_t from, std::uint32_t max_record,
                                             F&& f) {
  auto pos = static_cast<std::size_t>(std::min<std::uint64_t>(from, w.bytes().size()));
  while (true) {
    decoder d{w.bytes(), pos, max_record};
    while (auto r = d.next()) f(*r, w.offset() + r->offset);
    const auto stop = w.offset() + d.offset();
    const bool short_of_bytes =
        d.stopped() == stop_reason::end || d.stopped() == stop_reason::truncated;
    if (!short_of_bytes || w.at_end()) return {d.stopped(), stop};
    // The window ends, not the file: the next one starts where this
    // stopped, with the record that ran past it (if one did) whole: its
    // len is within max_record.
    auto rest = w.bytes().substr(d.offset());
    std::size_t need = recovery_window;
    if (rest.size() >= record_header_size) { // u32 len, little-endian
      std::uint32_t len = 0;
      for (int i = 3; i >= 0; --i) len = len << 8 | static_cast<std::uint8_t>(rest[i]);
      need = std::max<std::size_t>(need, record_header_size + len);
    }
    w.read(fd, stop, need, p);
    pos = 0;
  }
}

void validate(const options& o) {
  if (o.dir.empty()) throw std::invalid_argument("store: no directory given");
  if (o.segment_bytes <= file_header_size)
    throw std::invalid_argument("store: segment_bytes must be over " +
                                std::to_string(file_header_size));
  constexpr std::uint64_t max_len = std::numeric_limits<std::uint32_t>::max() - record_header_size;
  if (o.max_record_bytes < 64 || o.max_record_bytes > max_len)
    throw std::invalid_argument("store: max_record_bytes must be within 64 .. " +
                                std::to_string(max_len));
  if (!(o.compact_below >= 0.0 && o.compact_below <= 1.0))
    throw std::invalid_argument("store: compact_below must be within 0 .. 1");
}

} // namespace

log::log(options o) : opts_(std::move(o)) {
  validate(opts_);
  const auto& dir = opts_.dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    if (dir.has_parent_path() && !dir.parent_path().empty()) fs::create_directories(dir.parent_path());
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) throw_errno(errno, "mkdir", dir);
  }
  dir_fd_ = open_or_throw(dir, O_RDONLY | O_DIRECTORY);
  auto lock_path = dir / "LOCK";
  lock_fd_ = open_or_throw(lock_path, O_RDWR | O_CREAT, 0600);
  if (::flock(lock_fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      throw std::runtime_error("store " + dir.string() + ": another broker holds it (" +
                               lock_path.string() + " is locked)");
    throw_errno(errno, "flock", lock_path);
  }
  recover();
}

log::~log() = default;

fs::path log::path_of(std::uint64_t base) const { return opts_.dir / segment_name(base); }

void log::problem(const fs::path& p, std::uint64_t offset, std::string_view what) {
  report_.problems.push_back(p.string() + ": offset " + std::to_string(offset) + ": " +
                             std::string{what});
}

void log::datasync(int fd, const fs::path& p) {
  if (::fdatasync(fd) != 0) throw_errno(errno, "fdatasync", p);
  ++fsyncs_;
}

unique_fd log::create_segment(const fs::path& p) {
  auto fd = open_or_throw(p, O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0600);
  dir_dirty_ = true;
  return fd;
}

void log::recover() {
  std::vector<std::pair<std::uint64_t, fs::path>> files;
  for (const auto& e : fs::directory_iterator{opts_.dir})
    if (auto base = parse_segment_name(e.path().filename().string()))
      files.emplace_back(*base, e.path());
  std::sort(files.begin(), files.end());
  report_.segments = files.size();

  std::uint64_t max_id = 0;
  // Pass 1, the replay: each segment read once, in order, a window at a
  // time (pass 2 is read_recovered()).
  file_window w;
  const auto max_record = static_cast<std::uint32_t>(opts_.max_record_bytes);
  for (std::size_t i = 0; i < files.size(); ++i) {
    // Named, not a structured binding: clang 14 lets no lambda capture one.
    const auto base = files[i].first;
    const auto& path = files[i].second;
    const bool last = i + 1 == files.size();
    last_base_ = std::max(last_base_, base);
    auto fd = open_or_throw(path, last ? O_RDWR | O_APPEND : O_RDONLY);
    w.read(fd.get(), 0, recovery_window, path);
    // Where the file ends: the window's end once it met it, or later.
    auto file_end = [&] {
      return w.at_end() ? w.offset() + w.bytes().size() : file_size(fd.get(), path);
    };

    auto header = check_file_header(w.bytes());
    // A head whose header never reached the disk (short, or a size that
    // did while the bytes did not): write it again.
    bool torn_header = last && (header == header_status::truncated
                                || (header != header_status::ok
                                    && all_zero(w.bytes().substr(0, file_header_size))));
    if (torn_header) {
      auto size = file_end();
      if (::ftruncate(fd.get(), 0) != 0) throw_errno(errno, "truncate", path);
      std::string h;
      encode_file_header(h);
      write_all(fd.get(), h, path);
      datasync(fd.get(), path);
      report_.torn_bytes += size;
      ++torn_tails_cut_;
      problem(path, 0, "torn tail (" + std::string{to_string(header)} + "): cut " +
                         std::to_string(size) + " bytes");
      ledger_.open_segment(base, file_header_size);
      head_fd_ = std::move(fd);
      head_writable_ = true;
      continue;
    }
    if (header != header_status::ok) {
      problem(path, 0, std::string{to_string(header)} + ": segment skipped, left as it is");
      continue;
    }

    ledger_.open_segment(base, file_header_size);
    auto [stopped, stop_at] = replay(fd.get(), path, w, file_header_size, max_record,
                                     [&](const record& r, std::uint64_t offset) {
      ++report_.records;
      switch (r.kind) {
        case record_kind::message:
          max_id = std::max(max_id, r.id);
          if (!ledger_.add_message(r.id, offset, static_cast<std::uint32_t>(r.size)))
            ++report_.duplicates;
          break;
        case record_kind::ack:
          ledger_.ack(r.id);
          ledger_.add_bytes(r.size);
          break;
        case record_kind::ack_range:
          ledger_.ack_range(r.id, r.count);
          ledger_.add_bytes(r.size);
          break;
      }
    });
    if (stopped != stop_reason::end) {
      auto rest = file_end() - stop_at;
      auto why = std::string{to_string(stopped)};
      if (last) {
        // A torn tail, or garbage no record after could be found behind:
        // appending after it would hide the new records too.
        if (::ftruncate(fd.get(), static_cast<off_t>(stop_at)) != 0)
          throw_errno(errno, "truncate", path);
        report_.torn_bytes += rest;
        ++torn_tails_cut_;
        problem(path, stop_at, "torn tail (" + why + "): cut " + std::to_string(rest) + " bytes");
      } else {
        ledger_.add_bytes(rest);
        problem(path, stop_at, why + ": the " + std::to_string(rest) + " bytes from here are not read");
      }
    }
    // What a killed process wrote may still be only in the page cache:
    // make it durable before anything is decided on it.
    datasync(fd.get(), path);
    if (last) {
      head_fd_ = std::move(fd);
      head_writable_ = true;
    }
  }
  if (::fsync(dir_fd_.get()) != 0) throw_errno(errno, "fsync", opts_.dir);
  ++fsyncs_;
  ledger_.committed();

  next_id_ = std::max(max_id + 1, ledger_.segments() > 0 ? ledger_.head().base : 1);
  durable_id_ = next_id_ - 1;
  report_.live = ledger_.live_messages();
  replayed_ = report_.live == 0;
}

void log::for_each_recovered(const replay_fn& fn) {
  if (std::exchange(replayed_, true)) return;
  read_recovered(fn);
  report_.live = ledger_.live_messages();
}

std::vector<recovered> log::take_recovered() {
  std::vector<recovered> out;
  out.reserve(ledger_.live_messages());
  for_each_recovered([&](std::uint64_t id, std::string_view group, std::string_view body) {
    out.push_back(recovered{id, std::string{group}, std::string{body}});
  });
  return out;
}

// Pass 2 of recovery: the replay settled every ack, so the ledger knows
// which messages are live and where. Their records are read again in file
// order, a window of a segment at a time (a window starts at a live
// record and never goes past its segment's last one), and cut out of the
// window: a few reads per segment, not one per message.
void log::read_recovered(const replay_fn& fn) {
  const auto n = ledger_.live_messages();
  if (n == 0) return;
  const auto first_seq = ledger_.head_seq() + 1 - ledger_.segments();
  // Where each segment's last live record ends; whether id order (the
  // order they are handed over in) is file order: it is unless compaction
  // moved a message, its copy now after younger ids.
  std::vector<std::uint64_t> live_end(ledger_.segments(), 0);
  bool file_order = true;
  std::pair<std::uint64_t, std::uint64_t> prev{0, 0};
  ledger_.scan([&](std::uint64_t, const ledger::location& loc) {
    auto& end = live_end[loc.segment - first_seq];
    end = std::max(end, loc.offset + loc.size);
    std::pair<std::uint64_t, std::uint64_t> at{loc.segment, loc.offset};
    if (at < prev) file_order = false;
    prev = at;
  });

  file_window w;
  unique_fd fd;
  fs::path path;
  std::uint64_t open_seq = std::numeric_limits<std::uint64_t>::max();
  const auto max_record = static_cast<std::uint32_t>(opts_.max_record_bytes);
  // Fills `out` from the record of `id` at `loc`; false (reported) when it
  // is not what pass 1 read there.
  auto take = [&](std::uint64_t id, const ledger::location& loc, std::optional<record>& r) {
    if (loc.segment != open_seq) {
      path = path_of(ledger_.segment_at(loc.segment)->base);
      fd = open_or_throw(path, O_RDONLY);
      open_seq = loc.segment;
      w.forget();
    }
    if (!w.holds(loc.offset, loc.size)) {
      auto to_end = live_end[loc.segment - first_seq] - loc.offset;
      auto want = std::min<std::uint64_t>(std::max<std::uint64_t>(recovery_window, loc.size), to_end);
      w.read(fd.get(), loc.offset, static_cast<std::size_t>(want), path);
    }
    r.reset();
    if (w.holds(loc.offset, loc.size)) {
      decoder d{w.bytes().substr(static_cast<std::size_t>(loc.offset - w.offset()), loc.size), 0,
                max_record};
      r = d.next();
    }
    if (!r || r->kind != record_kind::message || r->id != id || r->size != loc.size) {
      problem(path, loc.offset, "message " + std::to_string(id) + " changed on disk while read");
      return false;
    }
    return true;
  };

  std::vector<std::uint64_t> unreadable;
  std::optional<record> r;
  if (file_order) { // straight from the window to `fn`
    ledger_.scan([&](std::uint64_t id, const ledger::location& loc) {
      if (take(id, loc, r)) fn(id, r->group, r->body);
      else unreadable.push_back(id);
    });
  } else { // read in file order, copied, handed over in id order
    struct entry {
      std::uint64_t id;
      ledger::location loc;
      std::size_t at; // in id order
    };
    std::vector<entry> order;
    order.reserve(n);
    ledger_.scan([&](std::uint64_t id, const ledger::location& loc) {
      order.push_back(entry{id, loc, order.size()});
    });
    std::sort(order.begin(), order.end(), [](const entry& a, const entry& b) {
      return a.loc.segment != b.loc.segment ? a.loc.segment < b.loc.segment
                                            : a.loc.offset < b.loc.offset;
    });
    std::vector<recovered> copies(n);
    std::vector<bool> got(n, false);
    for (const auto& e : order) {
      if (take(e.id, e.loc, r)) {
        copies[e.at] = recovered{e.id, std::string{r->group}, std::string{r->body}};
        got[e.at] = true;
      } else {
        unreadable.push_back(e.id);
      }
    }
    for (std::size_t i = 0; i < n; ++i)
      if (got[i]) fn(copies[i].id, copies[i].group, copies[i].body);
  }
  for (auto id : unreadable) ledger_.ack(id);
}


void log::make_room(std::size_t record_bytes) {
  if (!head_writable_) return roll();
  const auto& h = ledger_.head();
  if (h.bytes > file_header_size && h.bytes + record_bytes > opts_.segment_bytes) roll();
}

void log::roll() {
  if (head_writable_ && !buf_.empty())
    sealed_.push_back(sealed_file{ledger_.head().base, std::move(head_fd_), std::move(buf_)});
  head_fd_.reset();
  buf_ = std::string{};
  auto base = std::max(next_id_, last_base_ + 1);
  last_base_ = base;
  encode_file_header(buf_);
  ledger_.open_segment(base, file_header_size);
  head_writable_ = true;
}

std::uint64_t log::append(std::string_view group, std::string_view body) {
  if (group.size() > max_group_size)
    throw std::invalid_argument("store: a group name of " + std::to_string(group.size()) +
                                " bytes (at most 65535)");
  auto size = message_record_size(group.size(), body.size());
  if (size - record_header_size > opts_.max_record_bytes)
    throw std::invalid_argument("store: a record of " + std::to_string(size - record_header_size) +
                                " bytes, over max_record_bytes (" +
                                std::to_string(opts_.max_record_bytes) + ")");
  make_room(size);
  auto id = next_id_++;
  auto offset = ledger_.head().bytes;
  encode_message(buf_, id, group, body);
  ledger_.add_message(id, offset, static_cast<std::uint32_t>(size));
  return id;
}

void log::ack(std::uint64_t id) {
  if (!ledger_.ack(id)) {
    ++unknown_acks_;
    return;
  }
  make_room(ack_record_size);
  encode_ack(buf_, id);
  ledger_.add_bytes(ack_record_size);
}

void log::ack_range(std::uint64_t first, std::uint32_t count) {
  auto n = ledger_.ack_range(first, count);
  unknown_acks_ += count - n;
  if (n == 0) return;
  make_room(ack_range_record_size);
  encode_ack_range(buf_, first, count);
  ledger_.add_bytes(ack_range_record_size);
}

std::uint64_t log::commit() {
  if (broken_)
    throw std::runtime_error("store " + opts_.dir.string() +
                             ": an earlier write or sync failed; reopen it to recover");
  if (!pending()) return durable_id_;
  try {
    for (auto& f : sealed_) {
      auto p = path_of(f.base);
      if (!f.fd) f.fd = create_segment(p);
      write_all(f.fd.get(), f.bytes, p);
      datasync(f.fd.get(), p);
    }
    sealed_.clear();
    if (!buf_.empty()) {
      auto p = path_of(ledger_.head().base);
      if (!head_fd_) head_fd_ = create_segment(p);
      write_all(head_fd_.get(), buf_, p);
      if (buf_.capacity() > keep_buffer_bytes) buf_ = std::string{};
      else buf_.clear();
      datasync(head_fd_.get(), p);
    }
    if (dir_dirty_) {
      if (::fsync(dir_fd_.get()) != 0) throw_errno(errno, "fsync", opts_.dir);
      ++fsyncs_;
      dir_dirty_ = false;
    }
  } catch (...) {
    broken_ = true;
    throw;
  }
  ledger_.committed();
  durable_id_ = next_id_ - 1;
  return durable_id_;
}

// What maintain() touches is all in its file: the ledger holds a segment
// until the commit after its last record (see ledger.hpp), and that commit
// wrote everything sealed_ had of it.
bool log::fully_written(std::uint64_t base) const noexcept {
  return std::none_of(sealed_.begin(), sealed_.end(),
                      [&](const sealed_file& f) { return f.base == base; })
         && !(base == ledger_.head().base && !buf_.empty());
}

void log::maintain() {
  if (broken_) return;
  if (!replayed_) throw std::logic_error("store: maintain() before for_each_recovered() (it may move records)");
  for (auto n = ledger_.deletable(); n > 0; --n) {
    assert(fully_written(ledger_.oldest().base));
    auto p = path_of(ledger_.oldest().base);
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) throw_errno(errno, "unlink", p);
    ledger_.drop_oldest();
    dir_dirty_ = true;
  }
  if (ledger_.compaction_due(opts_.compact_below)) compact_oldest();
}

void log::compact_oldest() {
  assert(fully_written(ledger_.oldest().base));
  auto live = ledger_.live_in_oldest();
  auto p = path_of(ledger_.oldest().base);
  auto fd = open_or_throw(p, O_RDONLY);
  std::string rec;
  for (const auto& [id, loc] : live) {
    rec.resize(loc.size);
    decoder d{rec, 0, static_cast<std::uint32_t>(opts_.max_record_bytes)};
    std::optional<record> r;
    if (pread_all(fd.get(), rec, loc.offset, p)) r = d.next();
    if (!r || r->kind != record_kind::message || r->id != id || r->size != rec.size())
      throw std::runtime_error("store: " + p.string() + ": offset " + std::to_string(loc.offset) +
                               ": message " + std::to_string(id) + " changed on disk");
    make_room(rec.size());
    auto offset = ledger_.head().bytes;
    buf_ += rec;
    ledger_.add_message(id, offset, loc.size);
    ++moved_;
  }
}

} // namespace plexus::broker::store
