// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the envelope codec. Every input is fed three ways:
// as one header frame (decode_header), as a batch frame (decode_batch) and,
// after a few control bytes, as the 1-3 frames of a message (decode_message);
// each under tight, default and loose limits. Whatever decodes must satisfy
// the invariants below, and re-encoding it must decode to the same fields.
//
// Message layout: byte 0 picks the frame count (1 + b0 % 3), then one
// big-endian uint16 per split point (modulo the rest's size + 1); the rest is
// cut at those points. make_corpus.py writes seeds in this layout ("msg-*").

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "check.hpp"
#include "plexus/topic.hpp"
#include "plexus/wire.hpp"

namespace {

namespace wire = plexus::wire;

// Tighter than the defaults in every field, so that whatever decodes under
// them also decodes under the defaults.
wire::limits tight_limits() {
  wire::limits l;
  l.max_header_bytes = 96;
  l.max_payload_bytes = 16;
  l.topic = {24, 3};
  l.max_headers = 2;
  l.max_header_key_bytes = 4;
  l.max_header_value_bytes = 8;
  l.max_msg_id_bytes = 8;
  l.max_name_bytes = 8;
  l.max_text_bytes = 8;
  l.max_map_size = 8;
  l.max_array_size = 2;
  l.max_depth = 2;
  l.max_batch_count = 3;
  l.max_batch_bytes = 256;
  return l;
}

// Looser than the defaults in every field; max_depth beyond the reader's
// hard ceiling, so that ceiling is what stops deep nesting.
wire::limits loose_limits() {
  wire::limits l;
  l.max_header_bytes = std::size_t{1} << 30;
  l.max_payload_bytes = std::size_t{1} << 30;
  l.topic = {std::size_t{1} << 20, std::size_t{1} << 16};
  l.max_headers = std::size_t{1} << 20;
  l.max_header_key_bytes = std::size_t{1} << 20;
  l.max_header_value_bytes = std::size_t{1} << 20;
  l.max_msg_id_bytes = std::size_t{1} << 20;
  l.max_name_bytes = std::size_t{1} << 20;
  l.max_text_bytes = std::size_t{1} << 20;
  l.max_map_size = std::size_t{1} << 32;
  l.max_array_size = std::size_t{1} << 32;
  l.max_depth = 1000;
  l.max_batch_count = std::size_t{1} << 32;
  l.max_batch_bytes = std::size_t{1} << 30;
  return l;
}

// Re-encoding is canonical and never longer, except that the encoder always
// writes msg_id as bin: a fixstr msg_id read from the wire grows one byte.
// A batch also trades a fixarray head (1 byte) for array32 (5 bytes).
wire::limits relaxed(wire::limits l, std::size_t entries) {
  l.max_header_bytes += 1;
  l.max_batch_bytes += 4 + entries;
  return l;
}

bool inside(std::string_view v, std::string_view buf) {
  if (v.data() == nullptr) return v.empty();
  auto b = reinterpret_cast<std::uintptr_t>(buf.data());
  auto p = reinterpret_cast<std::uintptr_t>(v.data());
  return p >= b && p - b <= buf.size() && v.size() <= buf.size() - (p - b);
}

bool is_topic_op(wire::op o) {
  return o == wire::op::pub || o == wire::op::msg || o == wire::op::fwd;
}

bool is_pattern_op(wire::op o) {
  return o == wire::op::sub || o == wire::op::unsub || o == wire::op::interest_add
         || o == wire::op::interest_remove;
}

// A key no header map can hold: longer than any key the limits allow.
std::string_view absent_key(const wire::limits& lim) {
  static const std::string keys(4096, 'k');
  return std::string_view{keys}.substr(0, std::min(keys.size(), lim.max_header_key_bytes + 1));
}

void check_string_map(const wire::string_map_view& m, std::string_view buf,
                      const wire::limits& lim) {
  PLEXUS_FUZZ_CHECK(inside(m.raw(), buf));
  PLEXUS_FUZZ_CHECK(m.size() <= lim.max_headers);
  auto items = m.items();
  PLEXUS_FUZZ_CHECK(items.size() == m.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    auto [k, v] = items[i];
    PLEXUS_FUZZ_CHECK(inside(k, m.raw()));
    PLEXUS_FUZZ_CHECK(inside(v, m.raw()));
    PLEXUS_FUZZ_CHECK(k.size() <= lim.max_header_key_bytes);
    PLEXUS_FUZZ_CHECK(v.size() <= lim.max_header_value_bytes);
    // find() answers the first pair with this key.
    std::size_t first = 0;
    while (items[first].first != k) ++first;
    auto found = m.find(k);
    PLEXUS_FUZZ_CHECK(found == items[first].second);
    PLEXUS_FUZZ_CHECK(inside(found, m.raw()));
  }
  if (absent_key(lim).size() > lim.max_header_key_bytes)
    PLEXUS_FUZZ_CHECK(m.find(absent_key(lim)).empty());
}

void check_string_list(const wire::string_list_view& l, std::string_view buf,
                       const wire::limits& lim) {
  PLEXUS_FUZZ_CHECK(inside(l.raw(), buf));
  PLEXUS_FUZZ_CHECK(l.size() <= lim.max_array_size);
  auto items = l.items();
  PLEXUS_FUZZ_CHECK(items.size() == l.size());
  for (auto v : items) {
    PLEXUS_FUZZ_CHECK(inside(v, l.raw()));
    PLEXUS_FUZZ_CHECK(v.size() <= lim.max_name_bytes);
  }
}

// What every successfully decoded header promises, `buf` being the bytes it
// was decoded from.
void check_header(const wire::header& h, std::string_view buf, const wire::limits& lim) {
  for (auto v : {h.topic, h.queue, h.msg_id, h.reply_to, h.traceparent, h.text, h.node})
    PLEXUS_FUZZ_CHECK(inside(v, buf));
  PLEXUS_FUZZ_CHECK(h.version == wire::protocol_version);
  PLEXUS_FUZZ_CHECK(std::string_view{wire::to_string(h.kind)} != "?");
  PLEXUS_FUZZ_CHECK(h.topic.size() <= lim.topic.max_bytes);
  PLEXUS_FUZZ_CHECK(h.reply_to.size() <= lim.topic.max_bytes);
  PLEXUS_FUZZ_CHECK(h.queue.size() <= lim.max_name_bytes);
  PLEXUS_FUZZ_CHECK(h.traceparent.size() <= lim.max_name_bytes);
  PLEXUS_FUZZ_CHECK(h.node.size() <= lim.max_name_bytes);
  PLEXUS_FUZZ_CHECK(h.msg_id.size() <= lim.max_msg_id_bytes);
  PLEXUS_FUZZ_CHECK(h.text.size() <= lim.max_text_bytes);
  PLEXUS_FUZZ_CHECK(static_cast<unsigned>(h.ack) <= 1);
  PLEXUS_FUZZ_CHECK(static_cast<unsigned>(h.action) <= 2);
  if (h.kind == wire::op::pub && (h.flags & wire::flag_confirm))
    PLEXUS_FUZZ_CHECK(!h.msg_id.empty());
  if (is_topic_op(h.kind))
    PLEXUS_FUZZ_CHECK(plexus::validate_topic(h.topic, lim.topic) == plexus::topic_errc::ok);
  if (is_pattern_op(h.kind) && !h.topic.empty())
    PLEXUS_FUZZ_CHECK(plexus::validate_pattern(h.topic, lim.topic) == plexus::topic_errc::ok);
  if (!h.reply_to.empty())
    PLEXUS_FUZZ_CHECK(plexus::validate_topic(h.reply_to, lim.topic) == plexus::topic_errc::ok);
  check_string_map(h.headers, buf, lim);
  check_string_list(h.brokers, buf, lim);
}

void check_same(const wire::header& a, const wire::header& b) {
  PLEXUS_FUZZ_CHECK(a.kind == b.kind);
  PLEXUS_FUZZ_CHECK(a.version == b.version);
  PLEXUS_FUZZ_CHECK(a.sid == b.sid);
  PLEXUS_FUZZ_CHECK(a.topic == b.topic);
  PLEXUS_FUZZ_CHECK(a.queue == b.queue);
  PLEXUS_FUZZ_CHECK(a.msg_id == b.msg_id);
  PLEXUS_FUZZ_CHECK(a.reply_to == b.reply_to);
  PLEXUS_FUZZ_CHECK(a.headers.size() == b.headers.size());
  PLEXUS_FUZZ_CHECK(a.headers.items() == b.headers.items());
  // User headers travel byte for byte.
  PLEXUS_FUZZ_CHECK(a.headers.empty() || a.headers.raw() == b.headers.raw());
  PLEXUS_FUZZ_CHECK(a.deadline_ns == b.deadline_ns);
  PLEXUS_FUZZ_CHECK(a.traceparent == b.traceparent);
  PLEXUS_FUZZ_CHECK(a.flags == b.flags);
  PLEXUS_FUZZ_CHECK(a.seq == b.seq);
  PLEXUS_FUZZ_CHECK(a.delivery == b.delivery);
  PLEXUS_FUZZ_CHECK(a.credit == b.credit);
  PLEXUS_FUZZ_CHECK(a.ack == b.ack);
  PLEXUS_FUZZ_CHECK(a.ack_wait_ms == b.ack_wait_ms);
  PLEXUS_FUZZ_CHECK(a.max_deliver == b.max_deliver);
  PLEXUS_FUZZ_CHECK(a.action == b.action);
  PLEXUS_FUZZ_CHECK(a.delay_ms == b.delay_ms);
  PLEXUS_FUZZ_CHECK(a.code == b.code);
  PLEXUS_FUZZ_CHECK(a.text == b.text);
  PLEXUS_FUZZ_CHECK(a.node == b.node);
  PLEXUS_FUZZ_CHECK(a.heartbeat_ms == b.heartbeat_ms);
  PLEXUS_FUZZ_CHECK(a.brokers.size() == b.brokers.size());
  PLEXUS_FUZZ_CHECK(a.brokers.items() == b.brokers.items());
  PLEXUS_FUZZ_CHECK(a.brokers.empty() || a.brokers.raw() == b.brokers.raw());
  PLEXUS_FUZZ_CHECK(a.max_payload == b.max_payload);
}

void check_payload(const wire::entry& en, std::string_view buf, const wire::limits& lim) {
  PLEXUS_FUZZ_CHECK(inside(en.payload, buf));
  PLEXUS_FUZZ_CHECK(en.payload.size() <= lim.max_payload_bytes);
  if (!wire::carries_payload(en.h.kind)) PLEXUS_FUZZ_CHECK(en.payload.empty());
}

// encode(decode(bytes)) decodes to the same fields, and encoding is a fixed
// point from there on.
void check_round_trip(const wire::header& h, std::size_t original_bytes,
                      const wire::limits& lim) {
  std::string re;
  wire::encode_header(h, re);
  PLEXUS_FUZZ_CHECK(re.size() <= original_bytes + 1);
  wire::header back;
  auto e = wire::decode_header(re, relaxed(lim, 0), back);
  PLEXUS_FUZZ_CHECK(e.ok());
  check_same(h, back);
  check_header(back, re, relaxed(lim, 0));
  std::string again;
  wire::encode_header(back, again);
  PLEXUS_FUZZ_CHECK(again == re);
}

bool fuzz_header(std::string_view bytes, const wire::limits& lim, wire::header& h) {
  auto e = wire::decode_header(bytes, lim, h);
  if (e) {
    PLEXUS_FUZZ_CHECK(!wire::to_string(e).empty());
    return false;
  }
  PLEXUS_FUZZ_CHECK(bytes.size() <= lim.max_header_bytes);
  PLEXUS_FUZZ_CHECK(!wire::is_batch_frame(bytes));
  check_header(h, bytes, lim);
  check_round_trip(h, bytes.size(), lim);
  return true;
}

bool fuzz_batch(std::string_view frame, const wire::limits& lim, std::vector<wire::entry>& out) {
  auto e = wire::decode_batch(frame, lim, out);
  if (e) {
    PLEXUS_FUZZ_CHECK(out.empty()); // all or nothing
    PLEXUS_FUZZ_CHECK(!wire::to_string(e).empty());
    return false;
  }
  PLEXUS_FUZZ_CHECK(wire::is_batch_frame(frame));
  PLEXUS_FUZZ_CHECK(frame.size() <= lim.max_batch_bytes);
  PLEXUS_FUZZ_CHECK(!out.empty() && out.size() <= lim.max_batch_count);
  for (const auto& en : out) {
    check_header(en.h, frame, lim);
    check_payload(en, frame, lim);
  }
  std::string re;
  wire::batch_writer w{re};
  w.begin();
  for (const auto& en : out) w.add(en.h, en.payload);
  w.finish();
  PLEXUS_FUZZ_CHECK(w.count() == out.size());
  PLEXUS_FUZZ_CHECK(w.bytes() == re.size());
  PLEXUS_FUZZ_CHECK(wire::is_batch_frame(re));
  PLEXUS_FUZZ_CHECK(re.size() <= frame.size() + 4 + out.size());
  std::vector<wire::entry> back;
  auto lim2 = relaxed(lim, out.size());
  PLEXUS_FUZZ_CHECK(wire::decode_batch(re, lim2, back).ok());
  PLEXUS_FUZZ_CHECK(back.size() == out.size());
  for (std::size_t i = 0; i < out.size(); ++i) {
    check_same(out[i].h, back[i].h);
    PLEXUS_FUZZ_CHECK(out[i].payload == back[i].payload);
    check_header(back[i].h, re, lim2);
    check_payload(back[i], re, lim2);
  }
  return true;
}

bool fuzz_message(std::span<const std::string_view> frames, const wire::limits& lim,
                  wire::entry& en) {
  auto e = wire::decode_message(frames, lim, en);
  if (frames.empty() || frames.size() > 2) {
    PLEXUS_FUZZ_CHECK(e.code == (frames.empty() ? wire::errc::truncated
                                                : wire::errc::too_many_frames));
    return false;
  }
  // The header frame decodes on its own exactly as it does in a message.
  wire::header alone;
  auto he = wire::decode_header(frames[0], lim, alone);
  if (he) {
    PLEXUS_FUZZ_CHECK(e.code == he.code && e.where == he.where);
    return false;
  }
  if (e) {
    PLEXUS_FUZZ_CHECK(e.where == wire::field::payload);
    return false;
  }
  check_same(en.h, alone);
  check_header(en.h, frames[0], lim);
  if (wire::carries_payload(en.h.kind)) {
    PLEXUS_FUZZ_CHECK(frames.size() == 2);
    PLEXUS_FUZZ_CHECK(en.payload.data() == frames[1].data());
    PLEXUS_FUZZ_CHECK(en.payload.size() == frames[1].size());
    PLEXUS_FUZZ_CHECK(en.payload.size() <= lim.max_payload_bytes);
  } else {
    PLEXUS_FUZZ_CHECK(frames.size() == 1);
    PLEXUS_FUZZ_CHECK(en.payload.empty());
  }
  return true;
}

// See the layout at the top of the file.
std::vector<std::string_view> split_frames(std::string_view in) {
  std::vector<std::string_view> frames;
  if (in.empty()) return frames;
  std::size_t count = 1 + static_cast<unsigned char>(in[0]) % 3u;
  in.remove_prefix(1);
  std::array<std::size_t, 2> raw{};
  for (std::size_t i = 0; i + 1 < count; ++i) {
    if (in.size() >= 2) {
      raw[i] = static_cast<std::size_t>(static_cast<unsigned char>(in[0])) << 8
               | static_cast<unsigned char>(in[1]);
      in.remove_prefix(2);
    }
  }
  std::array<std::size_t, 2> cut{};
  for (std::size_t i = 0; i + 1 < count; ++i) cut[i] = raw[i] % (in.size() + 1);
  std::sort(cut.begin(), cut.begin() + (count - 1));
  std::size_t from = 0;
  for (std::size_t i = 0; i + 1 < count; ++i) {
    frames.push_back(in.substr(from, cut[i] - from));
    from = cut[i];
  }
  frames.push_back(in.substr(from));
  return frames;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::array<wire::limits, 3> all{tight_limits(), wire::limits{}, loose_limits()};
  std::string_view in{reinterpret_cast<const char*>(data), size};
  auto frames = split_frames(in);

  std::array<bool, 3> header_ok{}, batch_ok{}, message_ok{};
  std::array<wire::header, 3> headers;
  std::vector<wire::entry> batch; // reused across limits, as a broker reuses it
  std::array<std::vector<wire::entry>, 3> batches;
  std::array<wire::entry, 3> messages;
  for (std::size_t i = 0; i < all.size(); ++i) {
    header_ok[i] = fuzz_header(in, all[i], headers[i]);
    batch_ok[i] = fuzz_batch(in, all[i], batch);
    batches[i] = batch;
    message_ok[i] = fuzz_message(frames, all[i], messages[i]);
  }
  // Whatever decodes under tighter limits decodes, to the same, under looser.
  for (std::size_t i = 0; i + 1 < all.size(); ++i) {
    if (header_ok[i]) {
      PLEXUS_FUZZ_CHECK(header_ok[i + 1]);
      check_same(headers[i], headers[i + 1]);
    }
    if (batch_ok[i]) {
      PLEXUS_FUZZ_CHECK(batch_ok[i + 1]);
      PLEXUS_FUZZ_CHECK(batches[i].size() == batches[i + 1].size());
      for (std::size_t j = 0; j < batches[i].size(); ++j) {
        check_same(batches[i][j].h, batches[i + 1][j].h);
        PLEXUS_FUZZ_CHECK(batches[i][j].payload == batches[i + 1][j].payload);
      }
    }
    if (message_ok[i]) {
      PLEXUS_FUZZ_CHECK(message_ok[i + 1]);
      check_same(messages[i].h, messages[i + 1].h);
      PLEXUS_FUZZ_CHECK(messages[i].payload == messages[i + 1].payload);
    }
  }
  return 0;
}
