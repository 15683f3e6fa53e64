// SPDX-License-Identifier: Apache-2.0
// The `$SYS.trace` payload: written by a node's span sink
// (encode_span_batch), read by anyone (decode_spans).
//
//   [node, [name, ...], [span, ...]]
//   span = [trace_hi, trace_lo, span_id, parent_id, flags (1 request,
//           2 cold start), name index, topic, msg_id (bin), delivery,
//           start_ns, duration_ns, status, cause, callee]
//
// Positional and with names once per batch: a span is ~70 bytes, and
// writing one is a few dozen stores (as a msgpack map with its keys it was
// ~300 bytes and most of what tracing cost).

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include <msgpack.hpp>

#include "span_record.hpp"

namespace plexus {

namespace detail {

namespace {

constexpr char hex_digits[] = "0123456789abcdef";
constexpr std::uint32_t span_fields = 14;
constexpr std::size_t max_text = 4096; // causes are cut here: a reader's limit

// Writes at a cursor into room reserved beforehand (span_bytes bounds it).
struct cursor_sink {
  char* p;
  void write(const char* d, std::size_t n) {
    std::memcpy(p, d, n);
    p += n;
  }
};
using packer = msgpack::packer<cursor_sink>;

void pack_str(packer& pk, std::string_view s) {
  s = s.substr(0, max_text);
  pk.pack_str(static_cast<std::uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
}

// The most a string takes: its bytes (cut) and a 5-byte header.
std::size_t str_bound(std::string_view s) { return std::min(s.size(), max_text) + 5; }

// The most one span takes: the array header, 10 numbers of at most 9
// bytes, and its 4 strings.
std::size_t span_bound(const span_record& s) {
  return 5 + 10 * 9 + str_bound(s.texts.topic()) + str_bound(s.texts.msg_id())
         + str_bound(s.cause) + str_bound(s.callee);
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

void encode_span_batch(std::string_view node, const span_record* const* spans, std::size_t n,
                       std::string& out) {
  // The batch's names, in first-use order (a node has few functions).
  std::vector<const std::string*> names;
  std::vector<std::uint32_t> index(n);
  for (std::size_t i = 0; i < n; ++i) {
    auto it = std::find(names.begin(), names.end(), spans[i]->name);
    if (it == names.end()) it = names.insert(names.end(), spans[i]->name);
    index[i] = static_cast<std::uint32_t>(it - names.begin());
  }
  std::size_t bound = 3 * 5 + str_bound(node);
  for (auto* name : names) bound += str_bound(name ? std::string_view{*name} : std::string_view{});
  for (std::size_t i = 0; i < n; ++i) bound += span_bound(*spans[i]);
  const auto start = out.size();
  out.resize(start + bound);
  cursor_sink sink{out.data() + start};
  packer pk{sink};
  pk.pack_array(3);
  pack_str(pk, node);
  pk.pack_array(static_cast<std::uint32_t>(names.size()));
  for (auto* name : names) pack_str(pk, name ? std::string_view{*name} : std::string_view{});
  pk.pack_array(static_cast<std::uint32_t>(n));
  for (std::size_t i = 0; i < n; ++i) {
    const auto& s = *spans[i];
    pk.pack_array(span_fields);
    pk.pack_uint64(s.trace_hi);
    pk.pack_uint64(s.trace_lo);
    pk.pack_uint64(s.span_id);
    pk.pack_uint64(s.parent_id);
    pk.pack_uint8(static_cast<std::uint8_t>((s.request ? 1 : 0) | (s.cold_start ? 2 : 0)));
    pk.pack_uint32(index[i]);
    pack_str(pk, s.texts.topic());
    auto id = s.texts.msg_id().substr(0, max_text);
    pk.pack_bin(static_cast<std::uint32_t>(id.size()));
    pk.pack_bin_body(id.data(), static_cast<std::uint32_t>(id.size()));
    pk.pack_uint32(s.delivery);
    pk.pack_uint64(s.start_ns);
    pk.pack_uint64(s.duration_ns);
    pk.pack_uint8(static_cast<std::uint8_t>(s.status));
    pack_str(pk, s.cause);
    pack_str(pk, s.callee);
  }
  out.resize(static_cast<std::size_t>(sink.p - out.data()));
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
      span s;
      s.trace_id.reserve(32);
      detail::append_hex(s.trace_id, f[0].as<std::uint64_t>());
      detail::append_hex(s.trace_id, f[1].as<std::uint64_t>());
      detail::append_hex(s.span_id, f[2].as<std::uint64_t>());
      if (auto parent = f[3].as<std::uint64_t>(); parent != 0) detail::append_hex(s.parent_id, parent);
      auto flags = f[4].as<unsigned>();
      s.kind = flags & 1 ? "request" : "invocation";
      s.cold_start = (flags & 2) != 0;
      auto name = f[5].as<std::uint32_t>();
      if (name >= names.size()) throw fail();
      s.service = names[name].first;
      s.function = names[name].second;
      s.node = node;
      s.topic = f[6].as<std::string>();
      if (f[7].type != msgpack::type::BIN) throw fail();
      s.msg_id.assign(f[7].via.bin.ptr, f[7].via.bin.size);
      s.delivery = f[8].as<std::uint32_t>();
      s.start_ns = f[9].as<std::uint64_t>();
      s.duration_ns = f[10].as<std::uint64_t>();
      auto status = f[11].as<unsigned>();
      if (status > static_cast<unsigned>(span_status::dead_lettered)) throw fail();
      s.status = static_cast<span_status>(status);
      s.cause = f[12].as<std::string>();
      s.callee = f[13].as<std::string>();
      out.push_back(std::move(s));
    }
    return out;
  } catch (const msgpack::type_error&) {
    throw fail();
  }
}

} // namespace plexus
