// SPDX-License-Identifier: Apache-2.0
// The `$SYS.trace` payload: written by a node's span sink
// (encode_span_batch), read by anyone (decode_spans).
//
//   [node, [name, ...], [topic, ...], spans (bin)]
//
// spans: the batch's spans back to back, each
//
//   head (u8): status (bits 0-3), request (4), cold start (5), has a
//              parent (6), has a cause or callee (7)
//   name index, topic index (varint, into the batch's tables)
//   trace_hi, trace_lo, span_id (u64 each, little-endian)
//   parent_id (u64, little-endian)            when it has a parent
//   start_ns (varint, zigzag of the difference to the span before; the
//             first: to 0, all modulo 2^64)
//   duration_ns, delivery (varint)
//   msg_id (varint length, bytes)
//   cause, callee (varint length, bytes each) when it has them
//
// Names and topics once per batch, times as differences, and no per-span
// msgpack header: a span of the `function` bench is ~35 bytes (it was 74
// with a fixed 56-byte block, ~300 as a msgpack map with its keys). What a
// streamed span costs is mostly the bytes that each hop copies. The encoder
// writes by hand; decode_spans reads the outer msgpack with msgpack-c and
// the spans with a reader that checks every length before it trusts it.

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

#include <msgpack.hpp>

#include "span_record.hpp"

namespace plexus {

namespace detail {

namespace {

constexpr char hex_digits[] = "0123456789abcdef";
constexpr std::size_t max_text = span_text_max;
constexpr unsigned flag_request = 0x10, flag_cold = 0x20, flag_parent = 0x40, flag_texts = 0x80;

// msgpack and the span fields, written at a cursor into room reserved
// beforehand.
class writer {
public:
  explicit writer(char* at) noexcept : p_(at) {}
  [[nodiscard]] char* at() const noexcept { return p_; }

  void array(std::size_t n) {
    if (n < 16) return byte(static_cast<std::uint8_t>(0x90 | n));
    if (n <= 0xffff) return byte(0xdc), be(n, 2);
    byte(0xdd), be(n, 4);
  }
  void str(std::string_view s) {
    s = s.substr(0, max_text);
    auto n = s.size();
    if (n < 32) byte(static_cast<std::uint8_t>(0xa0 | n));
    else if (n <= 0xff) byte(0xd9), be(n, 1);
    else byte(0xda), be(n, 2);
    copy(s);
  }
  /// A bin32 header whose length is filled in later (fill_bin).
  char* bin_placeholder() {
    byte(0xc6);
    auto* at = p_;
    p_ += 4;
    return at;
  }
  static void fill_bin(char* at, std::size_t n) {
    for (int i = 3; i >= 0; --i) *at++ = static_cast<char>(n >> (8 * i));
  }
  void byte(std::uint8_t b) { *p_++ = static_cast<char>(b); }
  void varint(std::uint64_t v) {
    while (v >= 0x80) {
      *p_++ = static_cast<char>(v | 0x80);
      v >>= 7;
    }
    *p_++ = static_cast<char>(v);
  }
  void u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) *p_++ = static_cast<char>(v >> (8 * i));
  }
  void text(std::string_view s) {
    s = s.substr(0, max_text);
    varint(s.size());
    copy(s);
  }

  /// The most a string takes in a table: its bytes (cut) and a 3-byte header.
  static std::size_t bound(std::string_view s) { return std::min(s.size(), max_text) + 3; }

private:
  void be(std::size_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) *p_++ = static_cast<char>(v >> (8 * i));
  }
  void copy(std::string_view s) {
    if (!s.empty()) std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  char* p_;
};

// The spans of a batch, read with every length checked first.
class reader {
public:
  explicit reader(std::string_view in) noexcept : p_(in.data()), end_(in.data() + in.size()) {}
  [[nodiscard]] bool done() const noexcept { return p_ == end_; }
  std::uint8_t byte() {
    need(1);
    return static_cast<std::uint8_t>(*p_++);
  }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      auto b = byte();
      if (shift == 63 && b > 1) throw bad();
      v |= std::uint64_t{b & 0x7fu} << shift;
      if (!(b & 0x80)) return v;
    }
    throw bad();
  }
  std::uint64_t u64() {
    need(8);
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= std::uint64_t{static_cast<unsigned char>(p_[i])} << (8 * i);
    p_ += 8;
    return v;
  }
  std::string_view text() {
    auto n = varint();
    if (n > max_text) throw bad();
    need(n);
    std::string_view s{p_, static_cast<std::size_t>(n)};
    p_ += n;
    return s;
  }
  static std::runtime_error bad() { return std::runtime_error("not a batch of spans"); }

private:
  void need(std::uint64_t n) const {
    if (n > static_cast<std::uint64_t>(end_ - p_)) throw bad();
  }
  const char* p_;
  const char* end_;
};

} // namespace

void append_hex(std::string& out, std::uint64_t v) {
  char buf[16];
  for (int i = 15; i >= 0; --i, v >>= 4) buf[i] = hex_digits[v & 15];
  out.append(buf, sizeof buf);
}

bool parse_hex(std::string_view hex, std::uint64_t& v) noexcept {
  if (hex.size() != 16) return false;
  std::uint64_t r = 0;
  for (char c : hex) {
    unsigned d;
    if (c >= '0' && c <= '9') d = static_cast<unsigned>(c - '0');
    else if (c >= 'a' && c <= 'f') d = static_cast<unsigned>(c - 'a' + 10);
    else return false;
    r = (r << 4) | d;
  }
  v = r;
  return true;
}

std::string_view encode_span_batch(std::string_view node, const span_ref* spans, std::size_t n,
                                   std::string& room) {
  // The batch's names and topics, in first-use order, and each span's
  // places in them (a node has few functions, a function few topics: the
  // span before is asked first, a map only when it differs).
  std::vector<const std::string*> names;
  std::vector<std::string_view> topics;
  std::unordered_map<std::string_view, std::uint32_t> topic_at;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> places(n);
  std::size_t bound = 1 + 3 * 5 + writer::bound(node) + 5;
  const std::string* last_name = nullptr;
  std::uint32_t last_name_at = 0;
  std::string_view last_topic;
  std::uint32_t last_topic_at = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& c = *spans[i].chunk;
    const auto& r = c.spans[spans[i].index];
    if (r.name != last_name || names.empty()) {
      auto at = std::find(names.begin(), names.end(), r.name);
      if (at == names.end()) {
        at = names.insert(names.end(), r.name);
        bound += writer::bound(r.name ? std::string_view{*r.name} : std::string_view{});
      }
      last_name = r.name;
      last_name_at = static_cast<std::uint32_t>(at - names.begin());
    }
    auto topic = c.topic(r).substr(0, max_text);
    if (topic != last_topic || topics.empty()) {
      auto [it, added] = topic_at.try_emplace(topic, static_cast<std::uint32_t>(topics.size()));
      if (added) topics.push_back(topic);
      last_topic = topic;
      last_topic_at = it->second;
    }
    places[i] = {last_name_at, last_topic_at};
    bound += span_chunk::wire_bound(r); // a topic's table entry included
  }
  if (room.size() < bound) room.resize(bound); // only ever grows: no zeroing once warm
  writer w{room.data()};
  w.array(4);
  w.str(node);
  w.array(names.size());
  for (auto* name : names) w.str(name ? std::string_view{*name} : std::string_view{});
  w.array(topics.size());
  for (auto topic : topics) w.str(topic);
  auto* bin = w.bin_placeholder();
  auto* first = w.at();
  std::uint64_t start = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& c = *spans[i].chunk;
    const auto& r = c.spans[spans[i].index];
    auto cause = c.cause(r), callee = c.callee(r);
    const bool texts = !cause.empty() || !callee.empty();
    w.byte(static_cast<std::uint8_t>(static_cast<unsigned>(r.status) | (r.request ? flag_request : 0u) |
                                     (r.cold_start ? flag_cold : 0u) |
                                     (r.parent_id ? flag_parent : 0u) | (texts ? flag_texts : 0u)));
    w.varint(places[i].first);
    w.varint(places[i].second);
    w.u64(r.trace_hi);
    w.u64(r.trace_lo);
    w.u64(r.span_id);
    if (r.parent_id) w.u64(r.parent_id);
    const auto delta = static_cast<std::int64_t>(r.start_ns - start); // modulo 2^64
    w.varint((static_cast<std::uint64_t>(delta) << 1) ^ static_cast<std::uint64_t>(delta >> 63));
    start = r.start_ns;
    w.varint(r.duration_ns);
    w.varint(r.delivery);
    w.text(c.msg_id(r));
    if (texts) {
      w.text(cause);
      w.text(callee);
    }
  }
  writer::fill_bin(bin, static_cast<std::size_t>(w.at() - first));
  return {room.data(), static_cast<std::size_t>(w.at() - room.data())};
}

} // namespace detail

std::vector<span> decode_spans(std::string_view payload) {
  // Explicit limits: msgpack's defaults let a few bytes ask for gigabytes.
  msgpack::unpack_limit limit{65536, 64, 1 << 16, 1 << 22, 64, 8};
  msgpack::object_handle handle;
  try {
    handle = msgpack::unpack(payload.data(), payload.size(), nullptr, nullptr, limit);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string{"not a batch of spans: "} + e.what());
  }
  auto fail = [] { return detail::reader::bad(); };
  const auto& root = handle.get();
  if (root.type != msgpack::type::ARRAY || root.via.array.size != 4) throw fail();
  const auto* top = root.via.array.ptr;
  if (top[1].type != msgpack::type::ARRAY || top[2].type != msgpack::type::ARRAY ||
      top[3].type != msgpack::type::BIN)
    throw fail();
  try {
    auto node = top[0].as<std::string>();
    std::vector<std::pair<std::string, std::string>> names; // service, function
    for (std::uint32_t i = 0; i < top[1].via.array.size; ++i) {
      auto name = top[1].via.array.ptr[i].as<std::string>();
      auto dot = name.find('.');
      if (dot == std::string::npos) names.emplace_back(name, std::string{});
      else names.emplace_back(name.substr(0, dot), name.substr(dot + 1));
    }
    std::vector<std::string> topics;
    for (std::uint32_t i = 0; i < top[2].via.array.size; ++i)
      topics.push_back(top[2].via.array.ptr[i].as<std::string>());
    detail::reader in{{top[3].via.bin.ptr, top[3].via.bin.size}};
    std::vector<span> out;
    std::uint64_t start = 0;
    while (!in.done()) {
      span s;
      const auto head = in.byte();
      const auto status = head & 0x0fu;
      if (status > static_cast<unsigned>(last_span_status)) throw fail();
      s.status = static_cast<span_status>(status);
      s.kind = head & detail::flag_request ? "request" : "invocation";
      s.cold_start = (head & detail::flag_cold) != 0;
      const auto name = in.varint(), topic = in.varint();
      if (name >= names.size() || topic >= topics.size()) throw fail();
      s.service = names[name].first;
      s.function = names[name].second;
      s.topic = topics[topic];
      s.node = node;
      s.trace_id.reserve(32);
      detail::append_hex(s.trace_id, in.u64());
      detail::append_hex(s.trace_id, in.u64());
      detail::append_hex(s.span_id, in.u64());
      if (head & detail::flag_parent) {
        auto parent = in.u64();
        if (parent == 0) throw fail(); // flagged, so never 0
        detail::append_hex(s.parent_id, parent);
      }
      const auto zz = in.varint();
      start += (zz >> 1) ^ (~(zz & 1) + 1); // zigzag back, modulo 2^64
      s.start_ns = start;
      s.duration_ns = in.varint();
      const auto delivery = in.varint();
      if (delivery > 0xffffffffu) throw fail();
      s.delivery = static_cast<std::uint32_t>(delivery);
      s.msg_id = std::string{in.text()};
      if (head & detail::flag_texts) {
        s.cause = std::string{in.text()};
        s.callee = std::string{in.text()};
        if (s.cause.empty() && s.callee.empty()) throw fail(); // flagged, so one is there
      }
      out.push_back(std::move(s));
    }
    return out;
  } catch (const msgpack::type_error&) {
    throw fail();
  }
}

} // namespace plexus
