// SPDX-License-Identifier: Apache-2.0
#include "plexus/topic.hpp"

#include <array>

namespace plexus {

const char* to_string(topic_errc e) noexcept {
  switch (e) {
    case topic_errc::ok: return "ok";
    case topic_errc::empty: return "empty topic";
    case topic_errc::too_long: return "topic too long";
    case topic_errc::too_many_tokens: return "too many tokens";
    case topic_errc::empty_token: return "empty token";
    case topic_errc::bad_character: return "bad character (space, control or DEL)";
    case topic_errc::wildcard_in_topic: return "wildcard in a concrete topic";
    case topic_errc::partial_wildcard: return "wildcard inside a token";
    case topic_errc::tail_not_last: return "'>' is not the last token";
  }
  return "unknown topic error";
}

namespace {

// What a byte means to a topic: most bytes are ordinary and cost one table
// lookup each.
constexpr unsigned char ordinary = 0, dot = 1, wildcard = 2, bad = 3;

constexpr std::array<unsigned char, 256> byte_classes = [] {
  std::array<unsigned char, 256> t{};
  for (unsigned c = 0; c <= 0x20; ++c) t[c] = bad; // controls and space
  t[0x7f] = bad;
  t['.'] = dot;
  t['*'] = wildcard;
  t['>'] = wildcard;
  return t;
}();

// One pass over the bytes: token count, empty tokens, characters, wildcards;
// errors in the order of their position.
topic_errc validate(std::string_view s, const topic_limits& limits,
                    bool allow_wildcards) noexcept {
  if (s.empty()) return topic_errc::empty;
  if (s.size() > limits.max_bytes) return topic_errc::too_long;
  const auto n = s.size();
  std::size_t tokens = 1;
  std::size_t token_start = 0;
  bool token_wild = false; // current token contains a wildcard byte
  bool after_tail = false; // a `>` token has ended
  for (std::size_t i = 0;; ++i) {
    unsigned char cls = i == n ? dot : byte_classes[static_cast<unsigned char>(s[i])];
    if (cls == ordinary) continue;
    if (cls == dot) { // a token ends: at a '.' or at the end
      auto token_len = i - token_start;
      if (token_len == 0) return topic_errc::empty_token;
      if (after_tail) return topic_errc::tail_not_last;
      if (token_wild) {
        if (token_len != 1) return topic_errc::partial_wildcard;
        if (s[i - 1] == '>') after_tail = true;
      }
      if (i == n) break;
      if (++tokens > limits.max_tokens) return topic_errc::too_many_tokens;
      token_start = i + 1;
      token_wild = false;
      continue;
    }
    if (cls == bad) return topic_errc::bad_character;
    if (!allow_wildcards) return topic_errc::wildcard_in_topic;
    token_wild = true;
  }
  // A partial wildcard in the final token was caught above; `>` may only end.
  return topic_errc::ok;
}

} // namespace

topic_errc validate_topic(std::string_view topic, const topic_limits& limits) noexcept {
  return validate(topic, limits, false);
}

topic_errc validate_pattern(std::string_view pattern, const topic_limits& limits) noexcept {
  return validate(pattern, limits, true);
}

reserved reserved_namespace(std::string_view topic) noexcept {
  if (topic.starts_with("$SYS.")) return reserved::sys;
  if (topic.starts_with("$DLQ.")) return reserved::dlq;
  if (topic.starts_with("_INBOX.")) return reserved::inbox;
  return reserved::none;
}

bool matches(std::string_view pattern, std::string_view topic) noexcept {
  if (!pattern.empty() && (pattern[0] == '*' || pattern[0] == '>')
      && !topic.empty() && topic[0] == '$')
    return false;
  std::size_t p = 0;
  std::size_t t = 0;
  for (;;) {
    auto pe = pattern.find('.', p);
    if (pe == std::string_view::npos) pe = pattern.size();
    auto te = topic.find('.', t);
    if (te == std::string_view::npos) te = topic.size();
    auto ptok = pattern.substr(p, pe - p);
    if (ptok == ">") return t < topic.size(); // one or more tokens remain
    if (ptok != "*" && ptok != topic.substr(t, te - t)) return false;
    bool p_end = pe == pattern.size();
    bool t_end = te == topic.size();
    if (p_end || t_end) return p_end && t_end;
    p = pe + 1;
    t = te + 1;
  }
}

} // namespace plexus
