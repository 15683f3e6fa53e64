// SPDX-License-Identifier: Apache-2.0
#include "reader.hpp"


namespace plexus::wire::detail {

namespace {
using kind = scalar::kind;
} // namespace

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
