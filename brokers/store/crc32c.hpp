// SPDX-License-Identifier: Apache-2.0
#pragma once

// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of the
// store's records. Two implementations with the same result: a portable
// slice-by-8 table walk, and the SSE4.2 `crc32` instruction, picked once at
// run time when the CPU has it. Both are exposed so tests can force each.

#include <cstdint>
#include <string_view>

namespace plexus::broker::store {

/// CRC32C of `bytes`: crc32c("123456789") == 0xE3069283.
[[nodiscard]] std::uint32_t crc32c(std::string_view bytes) noexcept;

/// The CRC32C of (what gave `crc`) followed by `bytes`:
/// crc32c_extend(crc32c(a), b) == crc32c(a + b), and crc32c_extend(0, b) ==
/// crc32c(b).
[[nodiscard]] std::uint32_t crc32c_extend(std::uint32_t crc, std::string_view bytes) noexcept;

/// The portable slice-by-8 implementation of crc32c_extend.
[[nodiscard]] std::uint32_t crc32c_portable(std::uint32_t crc, std::string_view bytes) noexcept;

/// Whether this CPU has SSE4.2 (crc32c_sse42 may be called).
[[nodiscard]] bool crc32c_sse42_available() noexcept;

/// crc32c_extend with the SSE4.2 instruction. Only when
/// crc32c_sse42_available(); elsewhere (not x86-64) it is the portable one.
[[nodiscard]] std::uint32_t crc32c_sse42(std::uint32_t crc, std::string_view bytes) noexcept;

} // namespace plexus::broker::store
