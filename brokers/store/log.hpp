// SPDX-License-Identifier: Apache-2.0
#pragma once

// The store's file shell: opaque message bodies kept on disk until they are
// acknowledged, recovered after kill -9 or power loss. One directory, one
// owner (an flock on DIR/LOCK), segment files `<16 hex digits>.seg` in
// name order (the format and the rules are in README.md).
//
// Built for a single-threaded I/O loop: append() and ack() only fill a
// user-space buffer; commit() writes it with large write() calls and makes
// it durable with one fdatasync per segment touched (one, unless it
// rolled), then fsyncs the directory if a segment was created or deleted
// since the last one; maintain() reclaims space, from segments whose
// bytes are all written. The caller decides when to commit and maintain,
// in any order; nothing here runs on its own.
//
// Errors: bad options, a directory another process holds, an I/O error
// while recovering: the constructor throws. Bad data found while
// recovering is not an error: it is cut (the tail of the last segment) or
// skipped (anywhere else), and reported. An error writing or syncing
// throws std::system_error naming the file, and leaves the log broken:
// what the failed call covered is never reported durable, and every later
// commit() throws (after a failed fdatasync the kernel may have dropped the
// pages; retrying would lie). Reopen the directory to go on from what the
// disk really holds.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ledger.hpp"

namespace plexus::broker::store {

struct options {
  std::filesystem::path dir;
  std::uint64_t segment_bytes = 64ull << 20; // roll to a new segment past this
  std::uint64_t max_record_bytes = (64ull << 20) + 4096; // bound on a record's `len`
  double compact_below = 0.25; // live/size ratio of the oldest segment (see ledger.hpp)
};

struct recovered {
  std::uint64_t id = 0;
  std::string group;
  std::string body;
};

struct recovery_report {
  std::size_t segments = 0;   // segment files found
  std::size_t records = 0;    // records read
  std::size_t live = 0;       // messages recovered
  std::size_t duplicates = 0; // ids met twice (a compacted copy and its original)
  std::uint64_t torn_bytes = 0; // cut from the tail of the last segment
  std::vector<std::string> problems; // one line each: file, offset, what
};

namespace detail {

/// A file descriptor, closed when it goes.
class unique_fd {
public:
  unique_fd() noexcept = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  [[nodiscard]] int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  void reset(int fd = -1) noexcept;

private:
  int fd_ = -1;
};

} // namespace detail

class log {
public:
  /// Creates `o.dir` (0700) if missing, takes DIR/LOCK (a std::runtime_error
  /// naming the directory if another process holds it), recovers.
  explicit log(options o);
  log(const log&) = delete;
  log& operator=(const log&) = delete;
  /// Closes without committing: what is buffered is lost.
  ~log();

  [[nodiscard]] const recovery_report& report() const noexcept { return report_; }

  /// Hands each live message recovered at open to `fn(id, group, body)`,
  /// in id order, the views valid during the call only: read straight
  /// from the segment files a window at a time (pass 2 of recovery), never
  /// copied into strings of their own, so a million messages cost no
  /// million allocations. Once: a later call hands nothing. Call it before
  /// maintain() (which may move records; it throws std::logic_error
  /// otherwise). A record that changed on disk since open is skipped,
  /// acked and reported (report().problems, report().live).
  using replay_fn = std::function<void(std::uint64_t id, std::string_view group, std::string_view body)>;
  void for_each_recovered(const replay_fn& fn);
  /// for_each_recovered() into a vector: tests and tools.
  [[nodiscard]] std::vector<recovered> take_recovered();

  /// Buffers a message; returns its id (greater than every id before,
  /// across reopenings). Throws std::invalid_argument for a group over
  /// 65535 bytes or a record over max_record_bytes.
  std::uint64_t append(std::string_view group, std::string_view body);

  /// Buffers an ack. An id not live (unknown, acked already) is counted in
  /// unknown_acks() and writes nothing.
  void ack(std::uint64_t id);

  /// Acks first .. first + count - 1: one record if any of them is live;
  /// the others are counted in unknown_acks().
  void ack_range(std::uint64_t first, std::uint32_t count);

  /// Writes what is buffered, fdatasyncs it, fsyncs the directory if a
  /// segment was created or deleted since; returns durable_id(). With
  /// nothing pending it returns at once, without a system call. Throws
  /// std::system_error (with the path) if a write or a sync fails, and
  /// std::runtime_error once the log is broken by such a failure.
  std::uint64_t commit();

  /// Whether commit() has work: buffered records or a directory to sync.
  [[nodiscard]] bool pending() const noexcept {
    return !sealed_.empty() || !buf_.empty() || dir_dirty_;
  }

  /// Every message with an id up to this one is on disk (or acked).
  [[nodiscard]] std::uint64_t durable_id() const noexcept { return durable_id_; }

  /// The id the next append() gets: above every id recovered or appended.
  [[nodiscard]] std::uint64_t next_id() const noexcept { return next_id_; }

  /// Deletes the deletable oldest segments (prefix-only; their unlinks
  /// become durable at the next commit) and compacts at most one segment
  /// (preads its live records and appends them to the buffer). It only
  /// touches segments whose bytes are all in their files: a segment
  /// created or added to since the last commit (rolled away from with its
  /// last records still buffered) waits for the next commit. So it may be
  /// called at any time, between appends too, and it never writes or syncs
  /// by itself: the caller's commit policy stays whole, and a segment is
  /// held back one commit at most. No-op once broken. Throws
  /// std::system_error if an unlink or a read fails.
  void maintain();

  // Figures for metrics. Bytes count what is buffered too.
  [[nodiscard]] std::uint64_t disk_bytes() const noexcept { return ledger_.disk_bytes(); }
  [[nodiscard]] std::uint64_t live_bytes() const noexcept { return ledger_.live_bytes(); }
  [[nodiscard]] std::uint64_t live_messages() const noexcept { return ledger_.live_messages(); }
  [[nodiscard]] std::size_t segments() const noexcept { return ledger_.segments(); }
  /// fdatasync and fsync calls that succeeded (recovery's included).
  [[nodiscard]] std::uint64_t fsyncs() const noexcept { return fsyncs_; }
  [[nodiscard]] std::uint64_t torn_tails_cut() const noexcept { return torn_tails_cut_; }
  /// Acked ids that were not live.
  [[nodiscard]] std::uint64_t unknown_acks() const noexcept { return unknown_acks_; }
  /// Messages compaction re-appended.
  [[nodiscard]] std::uint64_t moved_messages() const noexcept { return moved_; }

private:
  // A segment rolled away from before its bytes were written.
  struct sealed_file {
    std::uint64_t base = 0;
    detail::unique_fd fd; // none: the file is to be created
    std::string bytes;
  };

  void recover();
  void read_recovered(const replay_fn& fn);
  void make_room(std::size_t record_bytes);
  void roll();
  void compact_oldest();
  [[nodiscard]] bool fully_written(std::uint64_t base) const noexcept;
  void datasync(int fd, const std::filesystem::path& p);
  detail::unique_fd create_segment(const std::filesystem::path& p);
  [[nodiscard]] std::filesystem::path path_of(std::uint64_t base) const;
  void problem(const std::filesystem::path& p, std::uint64_t offset, std::string_view what);

  options opts_;
  detail::unique_fd dir_fd_, lock_fd_;
  ledger ledger_;
  // The head: the ledger's last segment, when records may go to it (not so
  // after recovery skipped or kept a damaged last file: the next record
  // rolls). Its file is head_fd_, or created at the next commit.
  bool head_writable_ = false;
  detail::unique_fd head_fd_;
  std::string buf_; // the head's bytes not yet written
  std::vector<sealed_file> sealed_;
  bool dir_dirty_ = false;
  bool broken_ = false;
  std::uint64_t next_id_ = 1, durable_id_ = 0;
  std::uint64_t last_base_ = 0; // the greatest segment name seen, skipped files too
  std::uint64_t fsyncs_ = 0, torn_tails_cut_ = 0, unknown_acks_ = 0, moved_ = 0;
  recovery_report report_;
  bool replayed_ = false; // for_each_recovered() ran (or nothing was live)
};

} // namespace plexus::broker::store
