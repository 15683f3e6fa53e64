// SPDX-License-Identifier: Apache-2.0
// Z85 (ZeroMQ RFC 32) for CURVE keys: 40 characters <-> 32 bytes.
#include "plexus/creds.hpp"

namespace plexus {

namespace {

constexpr std::string_view z85_alphabet =
  "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

int z85_value(char ch) noexcept {
  auto at = z85_alphabet.find(ch);
  return at == std::string_view::npos ? -1 : static_cast<int>(at);
}

} // namespace

std::optional<std::array<std::uint8_t, curve_key_bytes>> z85_key_bytes(std::string_view text) noexcept {
  if (text.size() != z85_key_chars) return std::nullopt;
  std::array<std::uint8_t, curve_key_bytes> out{};
  for (std::size_t group = 0; group < z85_key_chars / 5; ++group) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < 5; ++i) {
      auto d = z85_value(text[group * 5 + i]);
      if (d < 0) return std::nullopt;
      v = v * 85 + static_cast<std::uint64_t>(d);
    }
    if (v > 0xffffffffu) return std::nullopt;
    for (std::size_t i = 0; i < 4; ++i)
      out[group * 4 + i] = static_cast<std::uint8_t>(v >> (8 * (3 - i)));
  }
  return out;
}

bool is_z85_key(std::string_view text) noexcept { return z85_key_bytes(text).has_value(); }

std::string z85_encode_key(const std::array<std::uint8_t, curve_key_bytes>& key) {
  std::string out;
  out.reserve(z85_key_chars);
  for (std::size_t group = 0; group < curve_key_bytes / 4; ++group) {
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | key[group * 4 + i];
    char chunk[5];
    for (int i = 4; i >= 0; --i) {
      chunk[i] = z85_alphabet[v % 85];
      v /= 85;
    }
    out.append(chunk, 5);
  }
  return out;
}

} // namespace plexus
