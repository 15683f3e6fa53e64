// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <string_view>

namespace plexus {

/// Topics are `.`-separated, non-empty tokens of bytes 0x21..0x7e or >= 0x80
/// (UTF-8 is passed through unchecked), compared case-sensitively.
/// Patterns may also use `*` (exactly one token) and `>` (one or more
/// trailing tokens; only as the last token). Wildcards are whole tokens.
struct topic_limits {
  std::size_t max_bytes = 256;  // NATS has no limit; MQTT allows 64 KiB.
  std::size_t max_tokens = 16;
};

enum class topic_errc {
  ok = 0,
  empty,
  too_long,
  too_many_tokens,
  empty_token,       // "a..b", ".a", "a."
  bad_character,     // space, control byte, DEL
  wildcard_in_topic, // `*` or `>` in a concrete topic
  partial_wildcard,  // `*` or `>` inside a token: "a*", "b>"
  tail_not_last,     // `>` followed by more tokens
};

[[nodiscard]] const char* to_string(topic_errc e) noexcept;

/// Validates a concrete topic (what PUB and MSG carry).
[[nodiscard]] topic_errc validate_topic(std::string_view topic,
                                        const topic_limits& limits = {}) noexcept;

/// Validates a subscription pattern (what SUB and INTEREST carry).
[[nodiscard]] topic_errc validate_pattern(std::string_view pattern,
                                          const topic_limits& limits = {}) noexcept;

/// Reserved namespaces. Only the broker publishes on `$SYS.` and `$DLQ.`;
/// `_INBOX.` carries replies. A pattern whose first token is a wildcard
/// does not match a topic whose first token starts with `$` (as MQTT does
/// for `$SYS`): `>` does not silently subscribe to broker internals.
enum class reserved { none, sys, inbox, dlq };

[[nodiscard]] reserved reserved_namespace(std::string_view topic) noexcept;

/// True if `topic` matches `pattern`. Both must already be valid; matching
/// does not allocate.
[[nodiscard]] bool matches(std::string_view pattern, std::string_view topic) noexcept;

/// Calls `fn(token)` for each token of a valid topic or pattern.
template <class Fn>
void for_each_token(std::string_view s, Fn&& fn) {
  std::size_t start = 0;
  for (;;) {
    auto dot = s.find('.', start);
    if (dot == std::string_view::npos) {
      fn(s.substr(start));
      return;
    }
    fn(s.substr(start, dot - start));
    start = dot + 1;
  }
}

} // namespace plexus
