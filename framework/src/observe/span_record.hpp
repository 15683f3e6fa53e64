// SPDX-License-Identifier: Apache-2.0
#pragma once

// A span as a node holds it on its way out: ids as integers, the function's
// name interned, short strings inline, so recording one allocates nothing
// (a handler's exception text or a downstream cause excepted). The public
// plexus::span, with hex ids and a string per field, is what decode_spans
// makes of them on the reading side. encode_span_batch writes the
// `$SYS.trace.<node>` payload that decode_spans reads: a node's name and a
// function name table once per batch, then one positional array per span.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "plexus/trace.hpp"

namespace plexus::detail {

/// Strings of a span short enough to live inside it; longer ones go to the
/// heap. Two texts, stored back to back.
class span_texts {
public:
  void assign(std::string_view topic, std::string_view msg_id) {
    topic_ = static_cast<std::uint32_t>(topic.size());
    msg_id_ = static_cast<std::uint32_t>(msg_id.size());
    char* to = inline_;
    if (topic.size() + msg_id.size() > sizeof inline_) {
      heap_.resize(topic.size() + msg_id.size());
      to = heap_.data();
    } else {
      heap_.clear();
    }
    if (!topic.empty()) std::memcpy(to, topic.data(), topic.size());
    if (!msg_id.empty()) std::memcpy(to + topic.size(), msg_id.data(), msg_id.size());
  }
  [[nodiscard]] std::string_view topic() const noexcept { return {base(), topic_}; }
  [[nodiscard]] std::string_view msg_id() const noexcept { return {base() + topic_, msg_id_}; }

private:
  [[nodiscard]] const char* base() const noexcept { return heap_.empty() ? inline_ : heap_.data(); }
  std::uint32_t topic_ = 0, msg_id_ = 0;
  char inline_[88];
  std::string heap_;
};

struct span_record {
  std::uint64_t trace_hi = 0, trace_lo = 0; // the W3C trace id, 128 bits
  std::uint64_t span_id = 0, parent_id = 0; // parent 0 at a root
  std::uint64_t start_ns = 0, duration_ns = 0; // Unix epoch ns
  const std::string* name = nullptr; // "service.function", interned by the sink (lives as long)
  std::uint32_t delivery = 0;
  span_status status = span_status::ok;
  bool request = false; // else an invocation
  bool cold_start = false;
  span_texts texts;           // topic (a request: where it went), msg id
  std::string cause, callee;  // failures only
};

/// Appends 16 lowercase hex digits of `v` to `out`.
void append_hex(std::string& out, std::uint64_t v);
/// 16 hex digits -> `v`; false (and `v` untouched) if they are not that.
bool parse_hex(std::string_view hex, std::uint64_t& v) noexcept;

/// Appends the `$SYS.trace` payload for `n` spans at `spans` to `out`.
void encode_span_batch(std::string_view node, const span_record* const* spans, std::size_t n,
                       std::string& out);

} // namespace plexus::detail
