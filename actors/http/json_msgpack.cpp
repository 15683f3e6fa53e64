// SPDX-License-Identifier: Apache-2.0
#include "json_msgpack.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>

#include <msgpack.hpp>

#include "plexus/json.hpp"

namespace plexus::actors::detail {

namespace {

// msgpack's packer writes to a stream with write(): this one appends to a string.
struct string_out {
  std::string& s;
  void write(const char* p, std::size_t n) { s.append(p, n); }
};
using packer = msgpack::packer<string_out>;

// A parsed document packed as msgpack: containers with their sizes, a
// number as an integer when it was written whole and fits 64 bits, else a
// double.
void pack_json(const json_value& v, packer& pk) {
  switch (v.type) {
    case json_value::kind::null: pk.pack_nil(); return;
    case json_value::kind::boolean: v.boolean ? pk.pack_true() : pk.pack_false(); return;
    case json_value::kind::string: pk.pack(v.text); return;
    case json_value::kind::array:
      pk.pack_array(static_cast<std::uint32_t>(v.items.size()));
      for (const auto& item : v.items) pack_json(item, pk);
      return;
    case json_value::kind::object:
      pk.pack_map(static_cast<std::uint32_t>(v.members.size()));
      for (const auto& [key, member] : v.members) {
        pk.pack(key);
        pack_json(member, pk);
      }
      return;
    case json_value::kind::number: break;
  }
  const auto& t = v.text;
  if (t.find_first_of(".eE") == std::string::npos) {
    const auto* end = t.data() + t.size();
    if (t.front() == '-') {
      std::int64_t n = 0;
      if (auto [p, ec] = std::from_chars(t.data(), end, n); ec == std::errc{} && p == end) {
        pk.pack(n);
        return;
      }
    } else {
      std::uint64_t n = 0;
      if (auto [p, ec] = std::from_chars(t.data(), end, n); ec == std::errc{} && p == end) {
        pk.pack(n);
        return;
      }
    }
  }
  pk.pack(v.number); // a fraction, an exponent, or a whole number past 64 bits
}

bool write_json(const msgpack::object& o, std::string& out, std::size_t depth) {
  if (depth >= max_json_depth) return false;
  switch (o.type) {
    case msgpack::type::NIL: out += "null"; return true;
    case msgpack::type::BOOLEAN: out += o.via.boolean ? "true" : "false"; return true;
    case msgpack::type::POSITIVE_INTEGER: out += std::to_string(o.via.u64); return true;
    case msgpack::type::NEGATIVE_INTEGER: out += std::to_string(o.via.i64); return true;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: {
      if (!std::isfinite(o.via.f64)) {
        out += "null";
        return true;
      }
      char buf[32];
      auto [p, ec] = std::to_chars(buf, buf + sizeof buf, o.via.f64);
      out.append(buf, p);
      return true;
    }
    case msgpack::type::STR: append_json_string(out, {o.via.str.ptr, o.via.str.size}); return true;
    case msgpack::type::BIN: append_json_string(out, {o.via.bin.ptr, o.via.bin.size}); return true;
    case msgpack::type::ARRAY:
      out += '[';
      for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
        if (i) out += ',';
        if (!write_json(o.via.array.ptr[i], out, depth + 1)) return false;
      }
      out += ']';
      return true;
    case msgpack::type::MAP:
      out += '{';
      for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        if (i) out += ',';
        const auto& kv = o.via.map.ptr[i];
        if (kv.key.type == msgpack::type::STR) {
          append_json_string(out, {kv.key.via.str.ptr, kv.key.via.str.size});
        } else { // a key of another type: its JSON text, as a string
          std::string key;
          if (!write_json(kv.key, key, depth + 1)) return false;
          append_json_string(out, key);
        }
        out += ':';
        if (!write_json(kv.val, out, depth + 1)) return false;
      }
      out += '}';
      return true;
    default: return false; // ext
  }
}

} // namespace

bool json_to_msgpack(std::string_view json, std::string& out, std::string& error) {
  try {
    auto doc = parse_json(json);
    string_out sink{out};
    packer pk{sink};
    pack_json(doc, pk);
    return true;
  } catch (const json_error& e) {
    error = "at byte " + std::to_string(e.offset) + ": " + e.reason;
    return false;
  }
}

bool msgpack_to_json(std::string_view mp, std::string& out) {
  if (mp.empty()) return false;
  try {
    std::size_t off = 0;
    // Bounded: a reply is a function's, but no header is trusted.
    const msgpack::unpack_limit limit{1u << 20, 1u << 20, 1u << 26, 1u << 26, 1u << 26, max_json_depth};
    auto handle = msgpack::unpack(mp.data(), mp.size(), off, nullptr, nullptr, limit);
    if (off != mp.size()) return false;
    std::string text;
    if (!write_json(handle.get(), text, 0)) return false;
    out += text;
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

} // namespace plexus::actors::detail
