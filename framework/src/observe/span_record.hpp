// SPDX-License-Identifier: Apache-2.0
#pragma once

// Spans as a node holds them on their way out: a chunk of fixed-size
// records (ids as integers, the function's name interned) with their texts
// (topic, msg id, and for failures cause and callee) back to back in one
// string beside them. Recording a span copies ~80 bytes and its texts and
// allocates nothing once the chunk is warm; dropping a chunk's spans frees
// nothing one by one. The public plexus::span, with hex ids and a string
// per field, is what decode_spans makes of them on the reading side.
// encode_span_batch writes the `$SYS.trace.<node>` payload it reads.

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "plexus/trace.hpp"

namespace plexus::detail {

/// The most of one text (topic, msg id, cause, callee) a span carries:
/// longer ones are cut (the encoder's bound, and decode_spans' limits).
inline constexpr std::size_t span_text_max = 4096;

struct span_record {
  std::uint64_t trace_hi = 0, trace_lo = 0; // the W3C trace id, 128 bits
  std::uint64_t span_id = 0, parent_id = 0; // parent 0 at a root
  std::uint64_t start_ns = 0, duration_ns = 0; // Unix epoch ns
  const std::string* name = nullptr; // "service.function", interned by the sink (lives as long)
  std::uint32_t delivery = 0;
  span_status status = span_status::ok;
  bool request = false; // else an invocation
  bool cold_start = false;
  // Its texts in the chunk's `text`, from `text_at`: topic (a request:
  // where it went), msg id, cause, callee.
  std::uint32_t text_at = 0;
  std::uint32_t topic_size = 0, msg_id_size = 0, cause_size = 0, callee_size = 0;
};
static_assert(std::is_trivially_copyable_v<span_record>);

/// Copies a span's texts back to back to `to` and notes in `s` their
/// sizes and `at`, where `to` is in the text store they belong to.
inline void place_texts(span_record& s, char* to, std::uint32_t at, std::string_view topic,
                        std::string_view msg_id, std::string_view cause, std::string_view callee) noexcept {
  s.text_at = at;
  s.topic_size = static_cast<std::uint32_t>(topic.size());
  s.msg_id_size = static_cast<std::uint32_t>(msg_id.size());
  s.cause_size = static_cast<std::uint32_t>(cause.size());
  s.callee_size = static_cast<std::uint32_t>(callee.size());
  for (auto part : {topic, msg_id, cause, callee}) {
    if (!part.empty()) std::memcpy(to, part.data(), part.size());
    to += part.size();
  }
}

/// The most a span takes in a batch beside its texts (head, two varint
/// indexes, three ids and a parent, three varints, four text lengths or a
/// topic's table header).
inline constexpr std::size_t span_wire_overhead = 1 + 2 * 5 + 4 * 8 + 10 + 10 + 5 + 4 * 3;

/// Spans and their texts. A span's texts lie at its `text_at`, and the
/// spans' texts in span order (with gaps, after a ring's wrap).
struct span_chunk {
  std::vector<span_record> spans;
  std::string text;

  void add(const span_record& r, std::string_view topic, std::string_view msg_id,
           std::string_view cause, std::string_view callee) {
    auto at = text.size();
    text.resize(at + topic.size() + msg_id.size() + cause.size() + callee.size());
    place_texts(spans.emplace_back(r), text.data() + at, static_cast<std::uint32_t>(at), topic,
                msg_id, cause, callee);
  }
  /// Appends `from`'s spans from the `first`th on: two bulk copies, then
  /// each text offset rebased.
  void append(const span_chunk& from, std::size_t first = 0) {
    if (first >= from.spans.size()) return;
    const auto text_from = from.spans[first].text_at;
    const auto base = text.size();
    text.append(from.text, text_from);
    const auto at = spans.size();
    spans.insert(spans.end(), from.spans.begin() + static_cast<std::ptrdiff_t>(first), from.spans.end());
    for (auto i = at; i < spans.size(); ++i)
      spans[i].text_at = static_cast<std::uint32_t>(spans[i].text_at - text_from + base);
  }
  [[nodiscard]] std::string_view topic(const span_record& s) const noexcept {
    return std::string_view{text}.substr(s.text_at, s.topic_size);
  }
  [[nodiscard]] std::string_view msg_id(const span_record& s) const noexcept {
    return std::string_view{text}.substr(s.text_at + s.topic_size, s.msg_id_size);
  }
  [[nodiscard]] std::string_view cause(const span_record& s) const noexcept {
    return std::string_view{text}.substr(s.text_at + s.topic_size + s.msg_id_size, s.cause_size);
  }
  [[nodiscard]] std::string_view callee(const span_record& s) const noexcept {
    return std::string_view{text}.substr(
      s.text_at + s.topic_size + s.msg_id_size + s.cause_size, s.callee_size);
  }
  /// The most these spans take encoded (names aside): texts longer than
  /// span_text_max are cut, so this is an upper bound.
  [[nodiscard]] std::size_t wire_bound() const noexcept {
    return spans.size() * span_wire_overhead + text.size();
  }
  /// The most one of them takes encoded.
  [[nodiscard]] static std::size_t wire_bound(const span_record& s) noexcept {
    auto cut = [](std::uint32_t n) { return n < span_text_max ? std::size_t{n} : span_text_max; };
    return span_wire_overhead + cut(s.topic_size) + cut(s.msg_id_size) + cut(s.cause_size) +
           cut(s.callee_size);
  }
  [[nodiscard]] std::size_t size() const noexcept { return spans.size(); }
  [[nodiscard]] bool empty() const noexcept { return spans.empty(); }
  void clear() noexcept { // keeps the room
    spans.clear();
    text.clear();
  }
};

/// One span of a chunk, for the encoder.
struct span_ref {
  const span_chunk* chunk;
  std::size_t index;
};

/// A random 64-bit id, never 0 (0 is "none"): splitmix64 on a state of
/// the calling thread's (a few instructions: spans draw ids for every
/// trace that starts, and sampling draws for every message).
[[nodiscard]] std::uint64_t random_id() noexcept;

/// Appends 16 lowercase hex digits of `v` to `out`.
void append_hex(std::string& out, std::uint64_t v);
/// 16 hex digits -> `v`; false (and `v` untouched) if they are not that.
bool parse_hex(std::string_view hex, std::uint64_t& v) noexcept;

/// Writes the `$SYS.trace` payload for `n` spans at `spans` at the start
/// of `room`, which it grows when too small and never shrinks (its size is
/// room, not content: a warm one is not zeroed again), and returns it.
std::string_view encode_span_batch(std::string_view node, const span_ref* spans, std::size_t n,
                                   std::string& room);

} // namespace plexus::detail
