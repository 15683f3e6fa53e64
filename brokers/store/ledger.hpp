// SPDX-License-Identifier: Apache-2.0
#pragma once

// The store's accounting, sans-IO: which message id lives where (segment,
// offset, size), how much of each segment is live (appended, not acked),
// and the two decisions that follow from it.
//
// Deletion is prefix-only: the oldest segments go, each with nothing live,
// never the head (the one being written). An ack record can sit in a later
// segment than its message; deleting that later segment first would bring
// the acked message back at the next recovery.
//
// Compaction: when the store is mostly garbage (disk bytes > 2 x live
// bytes) and the oldest segment's live bytes are below `compact_below` of
// what deleting it would free (its bytes plus the dead segments behind it,
// which it pins under the prefix rule), its live messages are re-appended to
// the head with the same ids, which empties it. The old copy stays on disk
// until the copy is durable; recovery that meets both keeps one.
//
// "Durable" is counted in commits: the log calls committed() after each
// fdatasync that succeeded. A segment is held (neither deletable nor due
// for compaction) until the next committed() after it was created, after a
// record was last added to it, and after a message of it moved to the
// head. So deletion and compaction only ever meet segments whose bytes are
// all in their file: records added since the last commit may still be in
// the log's write buffer (a segment rolled away from keeps its last ones
// there until the commit), and compaction reads the file.
//
// Segment bases grow. Every id in a segment is below the next segment's
// base: a segment is named after the next id at its creation, at least one
// past the previous base, and only ids issued before then can be in it.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <utility>
#include <vector>

namespace plexus::broker::store {

class ledger {
public:
  struct segment {
    std::uint64_t base = 0;       // its name
    std::uint64_t bytes = 0;      // file header, records, any garbage read past
    std::uint64_t live = 0;       // messages here, neither acked nor moved on
    std::uint64_t live_bytes = 0; // their records, headers included
    std::uint64_t hold = 0;       // untouchable before this many committed() (see above)
  };

  struct location {
    std::uint64_t segment = 0; // sequence number of its segment (segment_at)
    std::uint64_t offset = 0;  // of the record's header in the file
    std::uint32_t size = 0;    // of the record, header included
  };

  /// Starts a new head segment of `header_bytes` named `base` (greater than
  /// every base before).
  void open_segment(std::uint64_t base, std::uint64_t header_bytes);

  /// A message record of `size` bytes at `offset` in the head (held until
  /// the next committed()). True when `id` is new; false when it was live
  /// already (a moved copy): the copy replaces it, the old segment loses a
  /// live message and is held.
  bool add_message(std::uint64_t id, std::uint64_t offset, std::uint32_t size);

  /// Any other record (ack, ack range) or unread bytes in the head (held
  /// until the next committed()).
  void add_bytes(std::uint64_t n);

  /// Settles a live message; false when `id` is not live (unknown, acked).
  bool ack(std::uint64_t id);

  /// Settles the live messages among first .. first + count - 1; returns how
  /// many there were. The walk is over live entries, not over the range.
  std::uint64_t ack_range(std::uint64_t first, std::uint32_t count);

  /// Everything added so far is durable.
  void committed() noexcept { ++epoch_; }

  /// How many of the oldest segments may be deleted now: the prefix with
  /// nothing live and not held, never the head.
  [[nodiscard]] std::size_t deletable() const noexcept;

  /// Forgets the oldest segment (deleted). Only when deletable() > 0.
  void drop_oldest();

  /// Whether the oldest segment should be compacted now (see above).
  [[nodiscard]] bool compaction_due(double compact_below) const noexcept;

  /// The live messages of the oldest segment, in id order.
  [[nodiscard]] std::vector<std::pair<std::uint64_t, location>> live_in_oldest() const;

  /// Every live message, in id order: f(id, const location&).
  template <class F>
  void scan(F&& f) const {
    for (const auto& [id, loc] : index_) f(id, loc);
  }

  [[nodiscard]] std::optional<location> find(std::uint64_t id) const;

  [[nodiscard]] std::size_t segments() const noexcept { return segments_.size(); }
  /// Segment `seq` (a location's), or null once it is dropped.
  [[nodiscard]] const segment* segment_at(std::uint64_t seq) const noexcept;
  /// Only with segments() > 0.
  [[nodiscard]] const segment& oldest() const noexcept { return segments_.front(); }
  [[nodiscard]] const segment& head() const noexcept { return segments_.back(); }
  [[nodiscard]] std::uint64_t head_seq() const noexcept {
    return first_seq_ + segments_.size() - 1;
  }

  [[nodiscard]] std::uint64_t disk_bytes() const noexcept { return disk_bytes_; }
  [[nodiscard]] std::uint64_t live_bytes() const noexcept { return live_bytes_; }
  [[nodiscard]] std::uint64_t live_messages() const noexcept { return index_.size(); }

private:
  segment& at(std::uint64_t seq) noexcept { return segments_[seq - first_seq_]; }
  void settle(std::map<std::uint64_t, location>::iterator it);

  std::deque<segment> segments_;
  std::uint64_t first_seq_ = 0; // sequence number of segments_.front()
  std::map<std::uint64_t, location> index_;
  std::uint64_t disk_bytes_ = 0, live_bytes_ = 0;
  std::uint64_t epoch_ = 0;
};

} // namespace plexus::broker::store
