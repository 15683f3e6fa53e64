// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the `$SYS.trace` payload: anyone can publish on
// `$SYS.trace.<node>`, and `plexus trace`, `plexus graph` and collectors
// decode what arrives. decode_spans must refuse garbage with an exception
// (never crash, never allocate past its limits), and what it accepts must
// be well-formed spans that the encoder writes back to the same spans.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "check.hpp"
#include "span_record.hpp"

namespace {

using namespace plexus;

bool is_hex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::uint64_t from_hex(std::string_view s) {
  std::uint64_t v = 0;
  PLEXUS_FUZZ_CHECK(detail::parse_hex(s, v));
  return v;
}

bool same(const span& a, const span& b) {
  return a.trace_id == b.trace_id && a.span_id == b.span_id && a.parent_id == b.parent_id
         && a.kind == b.kind && a.node == b.node && a.service == b.service
         && a.function == b.function && a.topic == b.topic && a.msg_id == b.msg_id
         && a.delivery == b.delivery && a.cold_start == b.cold_start && a.start_ns == b.start_ns
         && a.duration_ns == b.duration_ns && a.status == b.status && a.cause == b.cause
         && a.callee == b.callee;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input{reinterpret_cast<const char*>(data), size};
  std::vector<span> spans;
  try {
    spans = decode_spans(input);
  } catch (const std::runtime_error&) {
    return 0; // refused, as it should be
  }
  // Accepted: well-formed spans.
  for (auto& s : spans) {
    PLEXUS_FUZZ_CHECK(s.trace_id.size() == 32 && is_hex(s.trace_id));
    PLEXUS_FUZZ_CHECK(s.span_id.size() == 16 && is_hex(s.span_id));
    PLEXUS_FUZZ_CHECK(s.parent_id.empty() || (s.parent_id.size() == 16 && is_hex(s.parent_id)));
    PLEXUS_FUZZ_CHECK(s.kind == "invocation" || s.kind == "request");
    PLEXUS_FUZZ_CHECK(static_cast<unsigned>(s.status) <= static_cast<unsigned>(last_span_status));
  }
  // Written back by the encoder (texts it would cut aside), read again:
  // the same spans.
  std::deque<std::string> names;
  detail::span_chunk chunk;
  for (auto& s : spans) {
    if (s.topic.size() > 4096 || s.msg_id.size() > 4096 || s.cause.size() > 4096
        || s.callee.size() > 4096 || s.node.size() > 4096 || s.service.size() + s.function.size() >= 4096)
      return 0;
    detail::span_record r;
    r.trace_hi = from_hex(std::string_view{s.trace_id}.substr(0, 16));
    r.trace_lo = from_hex(std::string_view{s.trace_id}.substr(16));
    r.span_id = from_hex(s.span_id);
    r.parent_id = s.parent_id.empty() ? 0 : from_hex(s.parent_id);
    // A parent id of zeros reads back as "no parent": compare it so.
    if (r.parent_id == 0) s.parent_id.clear();
    r.start_ns = s.start_ns;
    r.duration_ns = s.duration_ns;
    r.delivery = s.delivery;
    r.status = s.status;
    r.request = s.kind == "request";
    r.cold_start = s.cold_start;
    auto name = s.service + "." + s.function;
    if (s.function.empty() && s.service.find('.') == std::string::npos) name = s.service;
    std::string* interned = nullptr;
    for (auto& n : names)
      if (n == name) interned = &n;
    r.name = interned ? interned : &names.emplace_back(name);
    chunk.add(r, s.topic, s.msg_id, s.cause, s.callee);
  }
  if (spans.empty()) return 0;
  std::vector<detail::span_ref> refs;
  for (std::size_t i = 0; i < chunk.size(); ++i) refs.push_back({&chunk, i});
  std::string room;
  auto again = detail::encode_span_batch(spans.front().node, refs.data(), refs.size(), room);
  std::vector<span> back;
  try {
    back = decode_spans(again);
  } catch (const std::runtime_error&) {
    PLEXUS_FUZZ_CHECK(false && "the encoder wrote what decode_spans refuses");
  }
  PLEXUS_FUZZ_CHECK(back.size() == spans.size());
  for (std::size_t i = 0; i < spans.size(); ++i) {
    auto expect = spans[i];
    expect.node = spans.front().node; // one batch, one node
    PLEXUS_FUZZ_CHECK(same(back[i], expect));
  }
  return 0;
}
