// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for topics and patterns. The input is `pattern \0 topic`
// (no 0 byte: the whole input is both). Validation and matching are checked
// against the small reference implementations below, and matching is only
// ever asked about a valid pattern and a valid topic, as its contract says.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "check.hpp"
#include "plexus/topic.hpp"

namespace {

using plexus::topic_errc;
using plexus::topic_limits;

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> tokens;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == '.') {
      tokens.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return tokens;
}

// The rules of topic.hpp, token by token.
bool reference_valid(std::string_view s, const topic_limits& lim, bool pattern) {
  if (s.empty() || s.size() > lim.max_bytes) return false;
  auto tokens = split(s);
  if (tokens.size() > lim.max_tokens) return false;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    auto tok = tokens[i];
    if (tok.empty()) return false;
    for (char ch : tok) {
      auto c = static_cast<unsigned char>(ch);
      if (c <= 0x20 || c == 0x7f) return false;
    }
    if (tok.find_first_of("*>") == std::string_view::npos) continue;
    if (!pattern || tok.size() != 1) return false;
    if (tok == ">" && i + 1 != tokens.size()) return false;
  }
  return true;
}

// `*` is exactly one token, `>` one or more trailing tokens; a pattern whose
// first token is a wildcard does not match a topic starting with '$'.
bool reference_matches(std::string_view pattern, std::string_view topic) {
  auto p = split(pattern);
  auto t = split(topic);
  if ((p[0] == "*" || p[0] == ">") && topic[0] == '$') return false;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == ">") return i + 1 == p.size() && i < t.size();
    if (i >= t.size()) return false;
    if (p[i] != "*" && p[i] != t[i]) return false;
  }
  return p.size() == t.size();
}

plexus::reserved reference_reserved(std::string_view s) {
  auto tokens = split(s);
  if (tokens.size() < 2) return plexus::reserved::none;
  if (tokens[0] == "$SYS") return plexus::reserved::sys;
  if (tokens[0] == "$DLQ") return plexus::reserved::dlq;
  if (tokens[0] == "_INBOX") return plexus::reserved::inbox;
  return plexus::reserved::none;
}

// Tight, default, loose: validity can only grow along this list.
const std::array<topic_limits, 3> all_limits{
  topic_limits{8, 3}, topic_limits{}, topic_limits{std::size_t{1} << 20, std::size_t{1} << 16}};

// Validates `s` both ways under every limit; true if valid as a topic /
// pattern under the defaults (all_limits[1]).
void check_validity(std::string_view s, bool& topic_ok, bool& pattern_ok) {
  std::array<bool, 3> as_topic{}, as_pattern{};
  for (std::size_t i = 0; i < all_limits.size(); ++i) {
    auto t = plexus::validate_topic(s, all_limits[i]);
    auto p = plexus::validate_pattern(s, all_limits[i]);
    as_topic[i] = t == topic_errc::ok;
    as_pattern[i] = p == topic_errc::ok;
    PLEXUS_FUZZ_CHECK(as_topic[i] == reference_valid(s, all_limits[i], false));
    PLEXUS_FUZZ_CHECK(as_pattern[i] == reference_valid(s, all_limits[i], true));
    PLEXUS_FUZZ_CHECK(!as_topic[i] || as_pattern[i]); // a topic is a pattern
    PLEXUS_FUZZ_CHECK(std::string_view{plexus::to_string(t)}.size() > 0);
    if (s.empty()) PLEXUS_FUZZ_CHECK(t == topic_errc::empty && p == topic_errc::empty);
    if (i > 0) {
      PLEXUS_FUZZ_CHECK(!as_topic[i - 1] || as_topic[i]);
      PLEXUS_FUZZ_CHECK(!as_pattern[i - 1] || as_pattern[i]);
    }
  }
  topic_ok = as_topic[1];
  pattern_ok = as_pattern[1];
}

void check_tokens(std::string_view s) {
  std::string joined;
  std::size_t n = 0;
  plexus::for_each_token(s, [&](std::string_view tok) {
    PLEXUS_FUZZ_CHECK(!tok.empty());
    PLEXUS_FUZZ_CHECK(tok.find('.') == std::string_view::npos);
    if (n++ > 0) joined += '.';
    joined += tok;
  });
  PLEXUS_FUZZ_CHECK(joined == s);
  PLEXUS_FUZZ_CHECK(n == split(s).size());
  PLEXUS_FUZZ_CHECK(n <= all_limits[1].max_tokens);
}

bool valid_pattern(std::string_view p) {
  return plexus::validate_pattern(p, all_limits[1]) == topic_errc::ok;
}

// Patterns built from a valid topic, with the answer known in advance.
void check_derived_patterns(std::string_view topic) {
  PLEXUS_FUZZ_CHECK(plexus::matches(topic, topic));
  bool dollar = topic[0] == '$';
  PLEXUS_FUZZ_CHECK(plexus::matches(">", topic) == !dollar);
  auto tokens = split(topic);
  std::string stars = "*";
  for (std::size_t i = 1; i < tokens.size(); ++i) stars += ".*";
  PLEXUS_FUZZ_CHECK(plexus::matches(stars, topic) == !dollar);
  if (std::string more = stars + ".*"; valid_pattern(more))
    PLEXUS_FUZZ_CHECK(!plexus::matches(more, topic));
  if (tokens.size() > 1) PLEXUS_FUZZ_CHECK(!plexus::matches("*", topic));
  // A concrete prefix followed by `>` matches only if tokens remain.
  std::string prefix;
  for (std::size_t k = 0; k < tokens.size(); ++k) {
    if (k > 0) prefix += '.';
    prefix += tokens[k];
    std::string tail = prefix + ".>";
    if (valid_pattern(tail)) PLEXUS_FUZZ_CHECK(plexus::matches(tail, topic) == (k + 1 < tokens.size()));
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in{reinterpret_cast<const char*>(data), size};
  auto zero = in.find('\0');
  auto pattern = in.substr(0, zero);
  auto topic = zero == std::string_view::npos ? in : in.substr(zero + 1);

  bool pattern_is_topic = false, pattern_ok = false, topic_ok = false, topic_is_pattern = false;
  check_validity(pattern, pattern_is_topic, pattern_ok);
  check_validity(topic, topic_ok, topic_is_pattern);
  PLEXUS_FUZZ_CHECK(plexus::reserved_namespace(pattern) == reference_reserved(pattern));
  PLEXUS_FUZZ_CHECK(plexus::reserved_namespace(topic) == reference_reserved(topic));

  if (pattern_ok) check_tokens(pattern);
  if (topic_is_pattern) check_tokens(topic);
  if (topic_ok) check_derived_patterns(topic);
  if (pattern_is_topic) check_derived_patterns(pattern);
  if (pattern_ok && topic_ok) {
    bool got = plexus::matches(pattern, topic);
    PLEXUS_FUZZ_CHECK(got == reference_matches(pattern, topic));
    if (pattern_is_topic) PLEXUS_FUZZ_CHECK(got == (pattern == topic));
  }
  return 0;
}
