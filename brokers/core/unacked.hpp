// SPDX-License-Identifier: Apache-2.0
#pragma once

// A subscription's unacked deliveries, in seq order. Seqs come from the
// connection's counter, so they only grow: a new delivery goes at the back
// of a ring. Settling one leaves a tombstone, dropped once it reaches the
// front (or when tombstones outnumber the live entries). A lookup guesses
// the slot from the seq (exact when the connection has one acked
// subscription: its seqs are consecutive) and falls back to a binary search.
// No allocation per delivery: the ring grows by doubling and is kept.

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace plexus::broker {

template <class T>
class seq_ring {
public:
  struct slot {
    std::uint64_t seq = 0;
    bool live = false;
    T value{};
  };

  /// Live entries.
  [[nodiscard]] std::size_t size() const noexcept { return live_; }
  [[nodiscard]] bool empty() const noexcept { return live_ == 0; }

  /// Adds `seq` (greater than every seq added before).
  void push(std::uint64_t seq, T value) {
    assert(count_ == 0 || seq > at(count_ - 1).seq);
    if (count_ == slots_.size()) grow();
    auto& s = at(count_++);
    s.seq = seq;
    s.live = true;
    s.value = std::move(value);
    ++live_;
  }

  /// Takes the live entry `seq` into `out`; false when there is none.
  bool take(std::uint64_t seq, T& out) {
    auto i = find(seq);
    if (i == count_) return false;
    auto& s = at(i);
    if (s.seq != seq || !s.live) return false;
    out = std::move(s.value);
    bury(s);
    return true;
  }

  /// Takes the live entries with first <= seq <= last, in order: `f(T&&)`
  /// for each, which may add to this ring (seqs past `last`). Returns how
  /// many. The walk is over stored entries, never over the range itself.
  template <class F>
  std::uint64_t take_range(std::uint64_t first, std::uint64_t last, F&& f) {
    std::uint64_t n = 0;
    auto i = find(first);
    while (i < count_) {
      auto& s = at(i);
      if (s.seq > last) break;
      if (!s.live) {
        ++i;
        continue;
      }
      auto seq = s.seq;
      T v = std::move(s.value);
      bury(s);
      ++n;
      f(std::move(v));
      if (seq == last) break;
      i = find(seq + 1); // burying may have moved the slots
    }
    return n;
  }

  /// Live entries in seq order until `f(seq, const T&)` returns false.
  template <class F>
  void scan(F&& f) const {
    for (std::size_t i = 0; i < count_; ++i) {
      const auto& s = at(i);
      if (s.live && !f(s.seq, s.value)) return;
    }
  }

  /// Takes every live entry, in seq order (the ring is empty after).
  [[nodiscard]] std::vector<std::pair<std::uint64_t, T>> take_all() {
    std::vector<std::pair<std::uint64_t, T>> out;
    out.reserve(live_);
    for (std::size_t i = 0; i < count_; ++i) {
      auto& s = at(i);
      if (s.live) out.emplace_back(s.seq, std::move(s.value));
      s = slot{};
    }
    head_ = count_ = live_ = 0;
    return out;
  }

  /// Stored slots, tombstones included (for tests).
  [[nodiscard]] std::size_t stored() const noexcept { return count_; }

private:
  slot& at(std::size_t i) noexcept { return slots_[(head_ + i) & (slots_.size() - 1)]; }
  const slot& at(std::size_t i) const noexcept {
    return slots_[(head_ + i) & (slots_.size() - 1)];
  }

  // The index of the first stored slot with seq >= `seq` (count_ if none).
  [[nodiscard]] std::size_t find(std::uint64_t seq) const noexcept {
    if (count_ == 0) return 0;
    auto front = at(0).seq;
    if (seq <= front) return 0;
    auto guess = seq - front;
    if (guess < count_ && at(guess).seq == seq) return static_cast<std::size_t>(guess);
    std::size_t lo = 0, hi = count_;
    while (lo < hi) {
      auto mid = lo + (hi - lo) / 2;
      if (at(mid).seq < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  void bury(slot& s) {
    s.live = false;
    s.value = T{};
    --live_;
    while (count_ > 0 && !at(0).live) {
      head_ = (head_ + 1) & (slots_.size() - 1);
      --count_;
    }
    if (count_ == 0) head_ = 0;
    // Tombstones behind an old live entry: compact once they dominate.
    else if (count_ >= 64 && live_ * 4 < count_) compact();
  }

  void compact() {
    std::size_t w = 0;
    for (std::size_t r = 0; r < count_; ++r) {
      auto& s = at(r);
      if (!s.live) continue;
      if (w != r) {
        at(w) = std::move(s);
        s = slot{};
      }
      ++w;
    }
    count_ = w;
  }

  void grow() {
    std::vector<slot> bigger(slots_.empty() ? 16 : slots_.size() * 2);
    for (std::size_t i = 0; i < count_; ++i) bigger[i] = std::move(at(i));
    slots_ = std::move(bigger);
    head_ = 0;
  }

  std::vector<slot> slots_; // capacity a power of two
  std::size_t head_ = 0, count_ = 0, live_ = 0;
};

} // namespace plexus::broker
