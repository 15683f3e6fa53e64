// SPDX-License-Identifier: Apache-2.0
#include "render.hpp"

#include <cmath>
#include <cstdio>

#include <msgpack.hpp>

#include "plexus/json.hpp"

namespace plexus::cli {

namespace {

void append_hex(std::string& out, std::string_view bytes) {
  static constexpr char hex[] = "0123456789abcdef";
  out += "0x";
  for (unsigned char c : bytes) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
}

void append_json(std::string& out, const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL: out += "null"; return;
    case msgpack::type::BOOLEAN: out += o.via.boolean ? "true" : "false"; return;
    case msgpack::type::POSITIVE_INTEGER: out += std::to_string(o.via.u64); return;
    case msgpack::type::NEGATIVE_INTEGER: out += std::to_string(o.via.i64); return;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: {
      if (!std::isfinite(o.via.f64)) { // JSON has no NaN or infinity
        out += "null";
        return;
      }
      char b[32];
      std::snprintf(b, sizeof b, "%.17g", o.via.f64);
      out += b;
      return;
    }
    case msgpack::type::STR: append_json_string(out, {o.via.str.ptr, o.via.str.size}); return;
    case msgpack::type::BIN: {
      std::string hex;
      append_hex(hex, {o.via.bin.ptr, o.via.bin.size});
      append_json_string(out, hex);
      return;
    }
    case msgpack::type::EXT: {
      std::string hex;
      append_hex(hex, {o.via.ext.data(), o.via.ext.size});
      out += "{\"ext\":" + std::to_string(o.via.ext.type()) + ",\"data\":";
      append_json_string(out, hex);
      out += '}';
      return;
    }
    case msgpack::type::ARRAY:
      out += '[';
      for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
        if (i) out += ',';
        append_json(out, o.via.array.ptr[i]);
      }
      out += ']';
      return;
    case msgpack::type::MAP:
      out += '{';
      for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        if (i) out += ',';
        auto& kv = o.via.map.ptr[i];
        if (kv.key.type == msgpack::type::STR) {
          append_json(out, kv.key);
        } else { // JSON keys are strings: the key's JSON, quoted
          std::string key;
          append_json(key, kv.key);
          append_json_string(out, key);
        }
        out += ':';
        append_json(out, kv.val);
      }
      out += '}';
      return;
  }
  out += "null";
}

} // namespace

bool is_text(std::string_view bytes) noexcept {
  for (std::size_t i = 0; i < bytes.size();) {
    auto c = static_cast<unsigned char>(bytes[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\n' && c != '\t' && c != '\r') || c == 0x7f) return false;
      ++i;
      continue;
    }
    // Continuation bytes after a lead byte: 1 for C2-DF, 2 for E0-EF, 3 for F0-F4.
    std::size_t n = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : 0;
    if (n == 0 || bytes.size() - i <= n) return false;
    auto b1 = static_cast<unsigned char>(bytes[i + 1]);
    // No overlong forms, no surrogates, nothing past U+10FFFF.
    if ((c == 0xe0 && b1 < 0xa0) || (c == 0xed && b1 > 0x9f) || (c == 0xf0 && b1 < 0x90)
        || (c == 0xf4 && b1 > 0x8f))
      return false;
    for (std::size_t k = 1; k <= n; ++k)
      if ((static_cast<unsigned char>(bytes[i + k]) & 0xc0) != 0x80) return false;
    i += n + 1;
  }
  return true;
}

std::optional<std::string> msgpack_as_json(std::string_view bytes) {
  if (bytes.empty()) return std::nullopt;
  try {
    std::size_t off = 0;
    // Bounded like the wire's decoder: a payload is not trusted.
    msgpack::unpack_limit limit{65536, 65536, bytes.size(), bytes.size(), bytes.size(), 32};
    auto handle = msgpack::unpack(bytes.data(), bytes.size(), off, nullptr, nullptr, limit);
    if (off != bytes.size()) return std::nullopt; // more than one value: not ours to guess
    std::string out;
    append_json(out, handle.get());
    return out;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string printable(std::string_view bytes) {
  if (is_text(bytes)) return std::string{bytes};
  if (auto json = msgpack_as_json(bytes)) return std::move(*json);
  std::string out;
  append_hex(out, bytes);
  return out;
}

std::string header_lines(const wire::string_map_view& headers) {
  std::string out;
  for (auto [key, value] : headers.items()) {
    out += "  ";
    out += printable(key);
    out += ": ";
    out += printable(value);
    out += '\n';
  }
  return out;
}

} // namespace plexus::cli
