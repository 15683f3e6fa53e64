// SPDX-License-Identifier: Apache-2.0
#pragma once

// One recording thread's spans on their way to the sink's thread: a
// single-producer single-consumer ring of records, and a ring of bytes for
// their texts. The producer (a handler's thread) writes with plain stores
// and publishes with one release store: no lock and no atomic
// read-modify-write on the handler's path. Full (the sink is behind by
// `slots` spans or `text_bytes` of text): the span is refused, and the
// caller keeps it elsewhere (span_sink's overflow). Bounded: ~300 KiB per
// recording thread.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>

#include "span_record.hpp"

namespace plexus::detail {

class span_ring {
public:
  static constexpr std::size_t slots = 2048;         // records; a power of two
  static constexpr std::size_t text_bytes = 1 << 17; // a power of two
  static constexpr std::size_t max_text = span_text_max; // per text

  /// Producer: false when full (nothing written).
  bool push(const span_record& r, std::string_view topic, std::string_view msg_id,
            std::string_view cause, std::string_view callee) noexcept {
    topic = topic.substr(0, max_text);
    msg_id = msg_id.substr(0, max_text);
    cause = cause.substr(0, max_text);
    callee = callee.substr(0, max_text);
    const auto h = head_.load(std::memory_order_relaxed);
    if (h - seen_tail_ >= slots) {
      seen_tail_ = tail_.load(std::memory_order_acquire);
      if (h - seen_tail_ >= slots) return false;
    }
    const auto n = topic.size() + msg_id.size() + cause.size() + callee.size();
    auto pos = text_head_;
    if (auto off = pos & (text_bytes - 1); off + n > text_bytes) pos += text_bytes - off; // contiguous
    if (pos + n - seen_text_tail_ > text_bytes) {
      seen_text_tail_ = text_tail_.load(std::memory_order_acquire);
      if (pos + n - seen_text_tail_ > text_bytes) return false;
    }
    const auto at = static_cast<std::uint32_t>(pos & (text_bytes - 1));
    auto& s = records_[h & (slots - 1)];
    s = r;
    place_texts(s, text_.get() + at, at, topic, msg_id, cause, callee);
    text_end_[h & (slots - 1)] = pos + n;
    text_head_ = pos + n;
    head_.store(h + 1, std::memory_order_release);
    return true;
  }
  /// Producer: how many it has pushed so far.
  [[nodiscard]] std::uint64_t pushed() const noexcept { return head_.load(std::memory_order_relaxed); }
  /// Producer: how many text bytes it has pushed so far (and skipped at
  /// the end of the ring).
  [[nodiscard]] std::uint64_t text_pushed() const noexcept { return text_head_; }
  /// Producer: whether the consumer has left half the ring (records or
  /// text) undrained. Reads what the consumer publishes: not for every push.
  [[nodiscard]] bool half_full() noexcept {
    seen_tail_ = tail_.load(std::memory_order_acquire);
    seen_text_tail_ = text_tail_.load(std::memory_order_acquire);
    return head_.load(std::memory_order_relaxed) - seen_tail_ >= slots / 2 ||
           text_head_ - seen_text_tail_ >= text_bytes / 2;
  }

  /// Consumer: moves everything pushed so far into `out`; how many. In
  /// bulk: the records in at most two copies, their texts (with the unused
  /// tail a wrap skipped) in at most two, then each record's text offset
  /// rebased.
  std::size_t drain(span_chunk& out) {
    const auto h = head_.load(std::memory_order_acquire);
    const auto t = tail_.load(std::memory_order_relaxed);
    if (h == t) return 0;
    const auto text_from = text_tail_.load(std::memory_order_relaxed);
    const auto text_to = text_end_[(h - 1) & (slots - 1)];
    const auto base = out.text.size();
    append_out(text_.get(), text_bytes, text_from, text_to - text_from, out.text);
    const auto first = out.spans.size();
    append_out(records_.get(), slots, t, h - t, out.spans);
    for (auto i = t; i < h; ++i) {
      auto& s = out.spans[first + (i - t)];
      const auto size = std::uint64_t{s.topic_size} + s.msg_id_size + s.cause_size + s.callee_size;
      s.text_at = static_cast<std::uint32_t>(base + (text_end_[i & (slots - 1)] - size - text_from));
    }
    text_tail_.store(text_to, std::memory_order_release);
    tail_.store(h, std::memory_order_release);
    return static_cast<std::size_t>(h - t);
  }

private:
  /// Appends `n` elements from position `from` of the ring `ring` of
  /// `size` (a power of two) to `to`, in at most two pieces (and without
  /// first zeroing the room, as a resize would).
  template <class T, class To>
  static void append_out(const T* ring, std::size_t size, std::uint64_t from, std::uint64_t n, To& to) {
    const auto at = static_cast<std::size_t>(from & (size - 1));
    const auto first = std::min<std::size_t>(static_cast<std::size_t>(n), size - at);
    to.insert(to.end(), ring + at, ring + at + first);
    to.insert(to.end(), ring, ring + (static_cast<std::size_t>(n) - first));
  }

  std::unique_ptr<span_record[]> records_{new span_record[slots]};
  std::unique_ptr<std::uint64_t[]> text_end_{new std::uint64_t[slots]};
  std::unique_ptr<char[]> text_{new char[text_bytes]};
  // The producer's: what it pushed, and what it last saw consumed.
  alignas(64) std::atomic<std::uint64_t> head_{0};
  std::uint64_t text_head_ = 0, seen_tail_ = 0, seen_text_tail_ = 0;
  // The consumer's.
  alignas(64) std::atomic<std::uint64_t> tail_{0};
  std::atomic<std::uint64_t> text_tail_{0};
};

} // namespace plexus::detail
