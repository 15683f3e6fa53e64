// SPDX-License-Identifier: Apache-2.0
#include "crc32c.hpp"

#include <array>
#include <cstddef>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace plexus::broker::store {

namespace {

constexpr std::uint32_t poly = 0x82F63B78u; // 0x1EDC6F41 reflected

using tables = std::array<std::array<std::uint32_t, 256>, 8>;

// t[0][b]: the CRC of byte b; t[k][b]: of byte b followed by k zero bytes.
constexpr tables make_tables() {
  tables t{};
  for (std::uint32_t b = 0; b < 256; ++b) {
    std::uint32_t c = b;
    for (int i = 0; i < 8; ++i) c = (c >> 1) ^ ((c & 1u) != 0 ? poly : 0u);
    t[0][b] = c;
  }
  for (std::size_t k = 1; k < 8; ++k)
    for (std::size_t b = 0; b < 256; ++b)
      t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFFu];
  return t;
}

constexpr tables table = make_tables();

std::uint32_t load32_le(const unsigned char* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8
         | static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

// Both take and return the register form (inverted).
std::uint32_t portable_raw(std::uint32_t c, const unsigned char* p, std::size_t n) noexcept {
  for (; n >= 8; p += 8, n -= 8) {
    auto lo = c ^ load32_le(p);
    auto hi = load32_le(p + 4);
    c = table[7][lo & 0xFFu] ^ table[6][(lo >> 8) & 0xFFu] ^ table[5][(lo >> 16) & 0xFFu]
        ^ table[4][lo >> 24] ^ table[3][hi & 0xFFu] ^ table[2][(hi >> 8) & 0xFFu]
        ^ table[1][(hi >> 16) & 0xFFu] ^ table[0][hi >> 24];
  }
  for (; n > 0; ++p, --n) c = (c >> 8) ^ table[0][(c ^ *p) & 0xFFu];
  return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t sse42_raw(std::uint32_t crc,
                                                          const unsigned char* p,
                                                          std::size_t n) noexcept {
  std::uint64_t c = crc;
  for (; n > 0 && (reinterpret_cast<std::uintptr_t>(p) & 7u) != 0; ++p, --n)
    c = _mm_crc32_u8(static_cast<std::uint32_t>(c), *p);
  for (; n >= 8; p += 8, n -= 8) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
  }
  for (; n > 0; ++p, --n) c = _mm_crc32_u8(static_cast<std::uint32_t>(c), *p);
  return static_cast<std::uint32_t>(c);
}

bool detect_sse42() noexcept {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2") != 0;
}
#else
std::uint32_t sse42_raw(std::uint32_t crc, const unsigned char* p, std::size_t n) noexcept {
  return portable_raw(crc, p, n);
}
bool detect_sse42() noexcept { return false; }
#endif

const unsigned char* bytes_of(std::string_view s) noexcept {
  return reinterpret_cast<const unsigned char*>(s.data());
}

using raw_fn = std::uint32_t (*)(std::uint32_t, const unsigned char*, std::size_t) noexcept;

// Function-local statics: right even when called from another static's
// initialiser.
bool has_sse42() noexcept {
  static const bool yes = detect_sse42();
  return yes;
}

raw_fn best() noexcept {
  static const raw_fn f = has_sse42() ? sse42_raw : portable_raw;
  return f;
}

} // namespace

std::uint32_t crc32c_portable(std::uint32_t crc, std::string_view bytes) noexcept {
  return ~portable_raw(~crc, bytes_of(bytes), bytes.size());
}

bool crc32c_sse42_available() noexcept { return has_sse42(); }

std::uint32_t crc32c_sse42(std::uint32_t crc, std::string_view bytes) noexcept {
  return ~sse42_raw(~crc, bytes_of(bytes), bytes.size());
}

std::uint32_t crc32c_extend(std::uint32_t crc, std::string_view bytes) noexcept {
  return ~best()(~crc, bytes_of(bytes), bytes.size());
}

std::uint32_t crc32c(std::string_view bytes) noexcept { return crc32c_extend(0, bytes); }

} // namespace plexus::broker::store
