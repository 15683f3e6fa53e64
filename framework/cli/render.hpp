// SPDX-License-Identifier: Apache-2.0
#pragma once

// How `plexus sub` shows what it receives: text as text, msgpack (the
// $SYS.* payloads, most services' messages) as JSON, anything else as hex.

#include <optional>
#include <string>
#include <string_view>

#include "plexus/wire.hpp"

namespace plexus::cli {

/// True for well-formed UTF-8 without control characters (tab, CR and LF
/// aside): what a terminal shows as it is.
[[nodiscard]] bool is_text(std::string_view bytes) noexcept;

/// `bytes` as JSON when they are exactly one msgpack value; nothing else.
[[nodiscard]] std::optional<std::string> msgpack_as_json(std::string_view bytes);

/// A payload (or header value) for a person: text as it is, else one
/// msgpack value as JSON, else "0x" and hex.
[[nodiscard]] std::string printable(std::string_view bytes);

/// One line per header, "  key: value", each ending in a newline.
[[nodiscard]] std::string header_lines(const wire::string_map_view& headers);

} // namespace plexus::cli
