// SPDX-License-Identifier: Apache-2.0
#pragma once

// Payloads that say what a message is for a scenario's handler: one byte of
// kind (a char enum), then the round number in decimal.

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace plexus::bench {

template <class Kind>
struct tagged {
  Kind kind{};
  std::uint64_t round = 0;
};

template <class Kind>
[[nodiscard]] std::string tagged_payload(Kind kind, std::uint64_t round) {
  return static_cast<char>(kind) + std::to_string(round);
}

template <class Kind>
[[nodiscard]] std::optional<tagged<Kind>> parse_tagged(std::string_view payload) {
  if (payload.size() < 2) return std::nullopt;
  tagged<Kind> p{static_cast<Kind>(payload[0]), 0};
  auto [end, ec] = std::from_chars(payload.data() + 1, payload.data() + payload.size(), p.round);
  if (ec != std::errc{} || end != payload.data() + payload.size()) return std::nullopt;
  return p;
}

} // namespace plexus::bench
