// SPDX-License-Identifier: Apache-2.0
#pragma once

// Typed payloads: user structs with MSGPACK_DEFINE_MAP travel as msgpack.
// Decoding always passes an explicit msgpack::unpack_limit: msgpack-c's
// defaults let a 5-byte input ask for 4 GiB.

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <typeinfo>

#include <msgpack.hpp>

namespace plexus {

/// Bounds for decoding a payload into a user type.
struct payload_limits {
  std::size_t max_array = 4096;
  std::size_t max_map = 4096;
  std::size_t max_str = 1 << 20;
  std::size_t max_bin = 1 << 20;
  std::size_t max_ext = 1 << 20;
  std::size_t max_depth = 32;
};

template <class T>
[[nodiscard]] std::string encode_payload(const T& value) {
  msgpack::sbuffer buf;
  msgpack::pack(buf, value);
  return {buf.data(), buf.size()};
}

/// Decodes `bytes` into `out`; on failure returns why (never throws).
template <class T>
[[nodiscard]] std::optional<std::string> decode_payload(std::string_view bytes, T& out,
                                                        const payload_limits& lim = {}) {
  try {
    msgpack::unpack_limit limit{lim.max_array, lim.max_map, lim.max_str,
                                lim.max_bin,   lim.max_ext, lim.max_depth};
    std::size_t off = 0;
    auto handle = msgpack::unpack(bytes.data(), bytes.size(), off, nullptr, nullptr, limit);
    if (off != bytes.size()) throw std::runtime_error("trailing bytes after the value");
    handle.get().convert(out);
    return std::nullopt;
  } catch (const std::exception& e) {
    return std::string{"payload does not decode as "} + typeid(T).name() + ": " + e.what();
  }
}

} // namespace plexus
