// SPDX-License-Identifier: Apache-2.0
#include "reader.hpp"

#include <cassert>

namespace plexus::wire::detail {

namespace {
using kind = scalar::kind;
} // namespace

errc reader::next_any(scalar& out) noexcept {
  if (off_ >= bytes_.size()) return errc::truncated;
  auto b = static_cast<unsigned char>(bytes_[off_]);
  assert(b > 0x7f && "next() takes positive fixints itself");
  if (b >= 0xe0) {
    out.type = scalar::kind::nint;
    ++off_;
    return errc::ok;
  }
  if (b <= 0x8f) return container(scalar::kind::map, 0, b & 0x0f, out);
  if (b <= 0x9f) return container(scalar::kind::array, 0, b & 0x0f, out);
  if (b <= 0xbf) return sized(scalar::kind::str, 0, b & 0x1f, 0, out);
  switch (b) {
    case 0xc0: out.type = scalar::kind::nil; ++off_; return errc::ok;
    case 0xc2: case 0xc3:
      out.type = scalar::kind::boolean;
      out.u = b & 1;
      ++off_;
      return errc::ok;
    case 0xc4: return sized(scalar::kind::bin, 1, 0, 0, out);
    case 0xc5: return sized(scalar::kind::bin, 2, 0, 0, out);
    case 0xc6: return sized(scalar::kind::bin, 4, 0, 0, out);
    case 0xc7: return sized(scalar::kind::ext, 1, 0, 1, out);
    case 0xc8: return sized(scalar::kind::ext, 2, 0, 1, out);
    case 0xc9: return sized(scalar::kind::ext, 4, 0, 1, out);
    case 0xca: return number(scalar::kind::real, 4, out);
    case 0xcb: return number(scalar::kind::real, 8, out);
    case 0xcc: return number(scalar::kind::uint, 1, out);
    case 0xcd: return number(scalar::kind::uint, 2, out);
    case 0xce: return number(scalar::kind::uint, 4, out);
    case 0xcf: return number(scalar::kind::uint, 8, out);
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
      // Signed formats: a non-negative value is an unsigned integer, as
      // msgpack-c reads it (some encoders write small ints this way).
      std::size_t n = std::size_t{1} << (b - 0xd0);
      if (auto e = number(scalar::kind::uint, n, out); e != errc::ok) return e;
      auto sign_bit = std::uint64_t{1} << (8 * n - 1);
      if (out.u & sign_bit) out.type = scalar::kind::nint;
      return errc::ok;
    }
    case 0xd4: return sized(scalar::kind::ext, 0, 1, 1, out);
    case 0xd5: return sized(scalar::kind::ext, 0, 2, 1, out);
    case 0xd6: return sized(scalar::kind::ext, 0, 4, 1, out);
    case 0xd7: return sized(scalar::kind::ext, 0, 8, 1, out);
    case 0xd8: return sized(scalar::kind::ext, 0, 16, 1, out);
    case 0xd9: return sized(scalar::kind::str, 1, 0, 0, out);
    case 0xda: return sized(scalar::kind::str, 2, 0, 0, out);
    case 0xdb: return sized(scalar::kind::str, 4, 0, 0, out);
    case 0xdc: return container(scalar::kind::array, 2, 0, out);
    case 0xdd: return container(scalar::kind::array, 4, 0, out);
    case 0xde: return container(scalar::kind::map, 2, 0, out);
    case 0xdf: return container(scalar::kind::map, 4, 0, out);
    default: return errc::malformed; // 0xc1: never used
  }
}

errc reader::skip(std::size_t depth, const limits& lim) noexcept {
  scalar s;
  if (auto e = next(s); e != errc::ok) return e;
  if (s.type != kind::map && s.type != kind::array) return errc::ok;
  if (depth > lim.max_depth || depth > depth_ceiling) return errc::too_deep;
  if (s.type == kind::map && s.u > lim.max_map_size) return errc::map_too_large;
  if (s.type == kind::array && s.u > lim.max_array_size) return errc::array_too_large;
  auto items = s.type == kind::map ? s.u * 2 : s.u;
  for (std::uint64_t i = 0; i < items; ++i)
    if (auto e = skip(depth + 1, lim); e != errc::ok) return e;
  return errc::ok;
}

} // namespace plexus::wire::detail
