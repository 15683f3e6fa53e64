// SPDX-License-Identifier: Apache-2.0
#pragma once

// JSON text for the places that write it (Zipkin export, the bench's
// results): one escaping, one UTF-8 check.

#include <string>
#include <string_view>

namespace plexus {

/// Appends `text` to `out` as a JSON string, quotes included: RFC 8259's
/// escapes (other control characters and DEL as \u00XX), and U+FFFD for
/// each byte that does not belong to well-formed UTF-8.
void append_json_string(std::string& out, std::string_view text);

} // namespace plexus
