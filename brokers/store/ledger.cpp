// SPDX-License-Identifier: Apache-2.0
#include "ledger.hpp"

#include <cassert>
#include <limits>

namespace plexus::broker::store {

void ledger::open_segment(std::uint64_t base, std::uint64_t header_bytes) {
  assert(segments_.empty() || base > segments_.back().base);
  segments_.push_back(segment{base, header_bytes, 0, 0, epoch_ + 1});
  disk_bytes_ += header_bytes;
}

bool ledger::add_message(std::uint64_t id, std::uint64_t offset, std::uint32_t size) {
  assert(!segments_.empty());
  auto seq = head_seq();
  auto& h = segments_.back();
  h.bytes += size;
  h.hold = epoch_ + 1; // its new bytes are written at the next commit
  h.live += 1;
  h.live_bytes += size;
  disk_bytes_ += size;
  live_bytes_ += size;
  if (index_.empty() || id > index_.rbegin()->first) { // the usual case: ids grow
    index_.emplace_hint(index_.end(), id, location{seq, offset, size});
    return true;
  }
  auto [it, fresh] = index_.try_emplace(id, location{seq, offset, size});
  if (fresh) return true;
  auto& old = at(it->second.segment);
  old.live -= 1;
  old.live_bytes -= it->second.size;
  old.hold = epoch_ + 1;
  live_bytes_ -= it->second.size;
  it->second = location{seq, offset, size};
  return false;
}

void ledger::add_bytes(std::uint64_t n) {
  assert(!segments_.empty());
  auto& h = segments_.back();
  h.bytes += n;
  h.hold = epoch_ + 1;
  disk_bytes_ += n;
}

void ledger::settle(std::map<std::uint64_t, location>::iterator it) {
  auto& s = at(it->second.segment);
  s.live -= 1;
  s.live_bytes -= it->second.size;
  live_bytes_ -= it->second.size;
  index_.erase(it);
}

bool ledger::ack(std::uint64_t id) {
  auto it = index_.find(id);
  if (it == index_.end()) return false;
  settle(it);
  return true;
}

std::uint64_t ledger::ack_range(std::uint64_t first, std::uint32_t count) {
  if (count == 0) return 0;
  auto max = std::numeric_limits<std::uint64_t>::max();
  auto last = first > max - (count - 1) ? max : first + (count - 1);
  std::uint64_t n = 0;
  for (auto it = index_.lower_bound(first); it != index_.end() && it->first <= last; ++n)
    settle(it++);
  return n;
}

std::size_t ledger::deletable() const noexcept {
  std::size_t n = 0;
  // Never the head: stop one short.
  while (n + 1 < segments_.size() && segments_[n].live == 0 && segments_[n].hold <= epoch_) ++n;
  return n;
}

void ledger::drop_oldest() {
  assert(deletable() > 0);
  disk_bytes_ -= segments_.front().bytes;
  segments_.pop_front();
  ++first_seq_;
}

bool ledger::compaction_due(double compact_below) const noexcept {
  if (segments_.size() < 2) return false; // the oldest is the head
  const auto& o = segments_.front();
  if (o.live == 0 || o.hold > epoch_) return false;
  if (disk_bytes_ <= 2 * live_bytes_) return false;
  // What deleting it frees: itself and the dead run behind it, short of
  // the head.
  auto frees = o.bytes;
  for (std::size_t i = 1; i + 1 < segments_.size() && segments_[i].live == 0; ++i)
    frees += segments_[i].bytes;
  return static_cast<double>(o.live_bytes) < compact_below * static_cast<double>(frees);
}

std::vector<std::pair<std::uint64_t, ledger::location>> ledger::live_in_oldest() const {
  std::vector<std::pair<std::uint64_t, location>> out;
  if (segments_.empty()) return out;
  const auto& o = segments_.front();
  out.reserve(o.live);
  // Every id in the oldest is below the next base; past it nothing is.
  auto end = segments_.size() > 1 ? index_.lower_bound(segments_[1].base) : index_.end();
  for (auto it = index_.begin(); it != end && out.size() < o.live; ++it)
    if (it->second.segment == first_seq_) out.emplace_back(it->first, it->second);
  assert(out.size() == o.live);
  return out;
}

std::optional<ledger::location> ledger::find(std::uint64_t id) const {
  auto it = index_.find(id);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

const ledger::segment* ledger::segment_at(std::uint64_t seq) const noexcept {
  if (seq < first_seq_ || seq - first_seq_ >= segments_.size()) return nullptr;
  return &segments_[seq - first_seq_];
}

} // namespace plexus::broker::store
