// SPDX-License-Identifier: Apache-2.0
// The `$SYS.trace` payload: written by a node's span sink
// (encode_span_batch), read by anyone (decode_spans).
//
//   [node, [name, ...], [span, ...]]
//   span = [fixed (bin, 56 bytes), topic, msg_id (bin), cause, callee]
//   fixed = trace_hi, trace_lo, span_id, parent_id, start_ns, duration_ns
//           (u64 each), delivery (u32), name index (u16), status (u8),
//           flags (u8: 1 request, 2 cold start), all little-endian
//
// Names once per batch and a span's numbers as one block: writing a span
// is a few stores and copies (~70 bytes; as a msgpack map with its keys it
// was ~300 bytes and most of what tracing cost). The encoder writes
// msgpack by hand; decode_spans reads it with msgpack-c, which checks it.

#include <algorithm>
#include <bit>
#include <cstring>
#include <stdexcept>

#include <msgpack.hpp>

#include "span_record.hpp"

namespace plexus {

namespace detail {

namespace {

constexpr char hex_digits[] = "0123456789abcdef";
constexpr std::size_t fixed_bytes = 56;
static_assert(span_wire_overhead == 1 + 2 + fixed_bytes + 4 * 3);
constexpr std::uint32_t span_fields = 5;
constexpr std::size_t max_text = span_text_max;

// msgpack, written at a cursor into room reserved beforehand.
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
  void bin(std::string_view s) {
    s = s.substr(0, max_text);
    bin_header(s.size());
    copy(s);
  }
  void bin_header(std::size_t n) {
    if (n <= 0xff) byte(0xc4), be(n, 1);
    else byte(0xc5), be(n, 2);
  }
  /// The fixed block of a span (see the layout above).
  void fixed(const span_record& r, std::uint16_t name) {
    bin_header(fixed_bytes);
    const std::uint64_t wide[6] = {r.trace_hi, r.trace_lo,  r.span_id,
                                   r.parent_id, r.start_ns, r.duration_ns};
    const std::uint8_t flags = static_cast<std::uint8_t>((r.request ? 1 : 0) | (r.cold_start ? 2 : 0));
    if constexpr (std::endian::native == std::endian::little) {
      std::memcpy(p_, wide, sizeof wide); // one block: what it is in memory
      std::memcpy(p_ + 48, &r.delivery, 4);
      std::memcpy(p_ + 52, &name, 2);
      p_ += 54;
    } else {
      for (auto v : wide) le(v, 8);
      le(r.delivery, 4);
      le(name, 2);
    }
    byte(static_cast<std::uint8_t>(r.status));
    byte(flags);
  }

  /// The most a string or bin takes: its bytes (cut) and a 3-byte header.
  static std::size_t bound(std::string_view s) { return std::min(s.size(), max_text) + 3; }

private:
  void byte(std::uint8_t b) { *p_++ = static_cast<char>(b); }
  void be(std::size_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) *p_++ = static_cast<char>(v >> (8 * i));
  }
  void le(std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) *p_++ = static_cast<char>(v >> (8 * i));
  }
  void copy(std::string_view s) {
    if (!s.empty()) std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  char* p_;
};

std::uint64_t read_le(const char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= std::uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

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
  // The batch's names, in first-use order (a node has few functions).
  std::vector<const std::string*> names;
  std::size_t bound = 3 * 5 + writer::bound(node);
  for (std::size_t i = 0; i < n; ++i) {
    const auto& r = spans[i].chunk->spans[spans[i].index];
    if (std::find(names.begin(), names.end(), r.name) == names.end()) {
      names.push_back(r.name);
      bound += writer::bound(r.name ? std::string_view{*r.name} : std::string_view{});
    }
    bound += span_chunk::wire_bound(r);
  }
  if (room.size() < bound) room.resize(bound); // only ever grows: no zeroing once warm
  writer w{room.data()};
  w.array(3);
  w.str(node);
  w.array(names.size());
  for (auto* name : names) w.str(name ? std::string_view{*name} : std::string_view{});
  w.array(n);
  const std::string* last = nullptr; // spans of one function come in runs
  std::uint16_t last_index = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& c = *spans[i].chunk;
    const auto& r = c.spans[spans[i].index];
    if (r.name != last || i == 0) {
      auto at = std::find(names.begin(), names.end(), r.name) - names.begin();
      last = r.name;
      last_index = static_cast<std::uint16_t>(std::min<std::ptrdiff_t>(at, 0xffff));
    }
    w.array(span_fields);
    w.fixed(r, last_index);
    w.str(c.topic(r));
    w.bin(c.msg_id(r));
    w.str(c.cause(r));
    w.str(c.callee(r));
  }
  return {room.data(), static_cast<std::size_t>(w.at() - room.data())};
}

} // namespace detail

std::vector<span> decode_spans(std::string_view payload) {
  // Explicit limits: msgpack's defaults let a few bytes ask for gigabytes.
  msgpack::unpack_limit limit{65536, 64, 1 << 16, 1 << 16, 64, 8};
  msgpack::object_handle handle;
  try {
    handle = msgpack::unpack(payload.data(), payload.size(), nullptr, nullptr, limit);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string{"not a batch of spans: "} + e.what());
  }
  auto fail = [] { return std::runtime_error("not a batch of spans"); };
  const auto& root = handle.get();
  if (root.type != msgpack::type::ARRAY || root.via.array.size != 3) throw fail();
  const auto* top = root.via.array.ptr;
  if (top[1].type != msgpack::type::ARRAY || top[2].type != msgpack::type::ARRAY) throw fail();
  try {
    auto node = top[0].as<std::string>();
    std::vector<std::pair<std::string, std::string>> names; // service, function
    for (std::uint32_t i = 0; i < top[1].via.array.size; ++i) {
      auto name = top[1].via.array.ptr[i].as<std::string>();
      auto dot = name.find('.');
      if (dot == std::string::npos) names.emplace_back(name, std::string{});
      else names.emplace_back(name.substr(0, dot), name.substr(dot + 1));
    }
    std::vector<span> out;
    out.reserve(top[2].via.array.size);
    for (std::uint32_t i = 0; i < top[2].via.array.size; ++i) {
      const auto& o = top[2].via.array.ptr[i];
      if (o.type != msgpack::type::ARRAY || o.via.array.size < detail::span_fields) throw fail();
      const auto* f = o.via.array.ptr;
      if (f[0].type != msgpack::type::BIN || f[0].via.bin.size < detail::fixed_bytes) throw fail();
      const char* x = f[0].via.bin.ptr;
      span s;
      s.trace_id.reserve(32);
      detail::append_hex(s.trace_id, detail::read_le(x, 8));
      detail::append_hex(s.trace_id, detail::read_le(x + 8, 8));
      detail::append_hex(s.span_id, detail::read_le(x + 16, 8));
      if (auto parent = detail::read_le(x + 24, 8); parent != 0) detail::append_hex(s.parent_id, parent);
      s.start_ns = detail::read_le(x + 32, 8);
      s.duration_ns = detail::read_le(x + 40, 8);
      s.delivery = static_cast<std::uint32_t>(detail::read_le(x + 48, 4));
      auto name = detail::read_le(x + 52, 2);
      auto status = detail::read_le(x + 54, 1);
      auto flags = detail::read_le(x + 55, 1);
      if (name >= names.size()) throw fail();
      if (status > static_cast<unsigned>(span_status::dead_lettered)) throw fail();
      s.status = static_cast<span_status>(status);
      s.kind = flags & 1 ? "request" : "invocation";
      s.cold_start = (flags & 2) != 0;
      s.service = names[name].first;
      s.function = names[name].second;
      s.node = node;
      s.topic = f[1].as<std::string>();
      if (f[2].type != msgpack::type::BIN) throw fail();
      s.msg_id.assign(f[2].via.bin.ptr, f[2].via.bin.size);
      s.cause = f[3].as<std::string>();
      s.callee = f[4].as<std::string>();
      out.push_back(std::move(s));
    }
    return out;
  } catch (const msgpack::type_error&) {
    throw fail();
  }
}

} // namespace plexus
