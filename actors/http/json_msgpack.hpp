// SPDX-License-Identifier: Apache-2.0
#pragma once

// JSON <-> msgpack for the HTTP gateway, sans-IO: a JSON request body
// becomes the msgpack map a typed handler decodes (plexus::decode_payload),
// and a msgpack reply becomes JSON for a client that asked for it. One
// value each way, nesting bounded, numbers as msgpack integers when they
// are whole and fit, else doubles.

#include <cstddef>
#include <string>
#include <string_view>

#include "plexus/json.hpp"

namespace plexus::actors::detail {

/// Nesting both ways, as plexus/json.hpp's reader.
inline constexpr std::size_t max_json_depth = static_cast<std::size_t>(plexus::max_json_depth);

/// `json` (exactly one value, whitespace around it allowed) as msgpack,
/// appended to `out`; false with `error` saying what and where ("at byte
/// 12: expected ':'") for text that is not JSON (plexus::parse_json's
/// rules: a lone surrogate escape reads as U+FFFD).
bool json_to_msgpack(std::string_view json, std::string& out, std::string& error);

/// `mp` (exactly one msgpack value) as JSON, appended to `out`: maps with
/// string keys become objects (other keys are written as their JSON text,
/// quoted), bin as a string (bytes that are not UTF-8 become U+FFFD),
/// floats as shortest round-trip text (NaN and infinities as null).
/// False when `mp` is not one complete msgpack value (or holds an ext):
/// the caller then passes the bytes on as they are.
bool msgpack_to_json(std::string_view mp, std::string& out);

} // namespace plexus::actors::detail
