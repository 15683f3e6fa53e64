// SPDX-License-Identifier: Apache-2.0
#pragma once

// A bounded msgpack cursor over one buffer: never reads past the end, never
// allocates, never trusts a length before checking what is left.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "plexus/wire.hpp"

namespace plexus::wire::detail {

struct scalar {
  enum class kind : std::uint8_t { nil, boolean, uint, nint, real, str, bin, ext, map, array };
  kind type = kind::nil;
  std::uint64_t u = 0;
  std::string_view s; // str, bin, ext body
};

/// Hard ceiling on nesting whatever limits::max_depth says: skipping unknown
/// values recurses once per level.
inline constexpr std::size_t depth_ceiling = 64;

class reader {
public:
  explicit reader(std::string_view bytes) noexcept : bytes_(bytes) {}

  [[nodiscard]] std::size_t offset() const noexcept { return off_; }
  [[nodiscard]] bool at_end() const noexcept { return off_ == bytes_.size(); }
  [[nodiscard]] std::string_view span(std::size_t from) const noexcept {
    return bytes_.substr(from, off_ - from);
  }

  /// Reads any value's first element. For a map or an array only the
  /// container header is consumed and `out.u` holds its element count.
  [[nodiscard]] errc next(scalar& out) noexcept;

  /// Skips one complete value, enforcing depth and container-size limits.
  /// `depth` is the nesting level the value sits at.
  [[nodiscard]] errc skip(std::size_t depth, const limits& lim) noexcept;

private:
  /// next() for the formats it does not inline (it inlines those a header
  /// is made of: positive fixint keys and values, fixstr strings).
  [[nodiscard]] errc next_any(scalar& out) noexcept;
  [[nodiscard]] errc container(scalar::kind k, std::size_t len_bytes, std::uint64_t inline_count,
                               scalar& out) noexcept;
  [[nodiscard]] errc sized(scalar::kind k, std::size_t len_bytes, std::size_t fixed_len,
                           std::size_t extra, scalar& out) noexcept;
  [[nodiscard]] errc number(scalar::kind k, std::size_t n, scalar& out) noexcept;
  std::string_view bytes_;
  std::size_t off_ = 0;
};

// msgpack-c's visitor parser reserves a heap stack on every call (measured:
// 21 allocations for one PUB header), so scalars are read here, by format
// byte, with every length checked against what is left. msgpack-c still
// writes every byte we send (codec.cpp) and is the baseline in plexus-bench.

inline std::uint64_t read_be(const char* p, std::size_t n) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

inline errc reader::container(scalar::kind k, std::size_t len_bytes, std::uint64_t inline_count,
                       scalar& out) noexcept {
  if (bytes_.size() - off_ < 1 + len_bytes) return errc::truncated;
  out.type = k;
  out.u = len_bytes == 0 ? inline_count : read_be(bytes_.data() + off_ + 1, len_bytes);
  off_ += 1 + len_bytes;
  return errc::ok;
}

// A value of `body` bytes after a `head`-byte prefix whose last `len_bytes`
// bytes (big endian) give the body length; `extra` bytes (an ext type) come
// before the body and are not part of it.
inline errc reader::sized(scalar::kind k, std::size_t len_bytes, std::size_t fixed_len, std::size_t extra,
                   scalar& out) noexcept {
  auto left = bytes_.size() - off_ - 1;
  if (left < len_bytes + extra) return errc::truncated;
  auto len = len_bytes ? read_be(bytes_.data() + off_ + 1, len_bytes) : fixed_len;
  left -= len_bytes + extra;
  if (len > left) return errc::truncated;
  out.type = k;
  out.s = bytes_.substr(off_ + 1 + len_bytes + extra, static_cast<std::size_t>(len));
  off_ += 1 + len_bytes + extra + static_cast<std::size_t>(len);
  return errc::ok;
}

inline errc reader::number(scalar::kind k, std::size_t n, scalar& out) noexcept {
  if (bytes_.size() - off_ - 1 < n) return errc::truncated;
  out.type = k;
  out.u = read_be(bytes_.data() + off_ + 1, n);
  off_ += 1 + n;
  return errc::ok;
}

inline errc reader::next(scalar& out) noexcept {
  if (off_ < bytes_.size()) [[likely]] {
    auto b = static_cast<unsigned char>(bytes_[off_]);
    if (b <= 0x7f) {
      out.type = scalar::kind::uint;
      out.u = b;
      ++off_;
      return errc::ok;
    }
    if ((b & 0xe0) == 0xa0) { // fixstr
      std::size_t len = b & 0x1f;
      if (len > bytes_.size() - off_ - 1) return errc::truncated;
      out.type = scalar::kind::str;
      out.s = std::string_view{bytes_.data() + off_ + 1, len};
      off_ += 1 + len;
      return errc::ok;
    }
  }
  return next_any(out);
}

} // namespace plexus::wire::detail
