// SPDX-License-Identifier: Apache-2.0
// The permission rules of permissions.hpp: pure functions over patterns.
#include "permissions.hpp"

#include <algorithm>

#include "plexus/topic.hpp"

namespace plexus::broker {

namespace {

// Topics and patterns have at most topic_limits::max_tokens tokens by
// default, but a broker may be configured with more: no fixed array.
std::vector<std::string_view> tokens_of(std::string_view s) {
  std::vector<std::string_view> t;
  for_each_token(s, [&](std::string_view tok) { t.push_back(tok); });
  return t;
}

std::string_view first_token(std::string_view s) noexcept { return s.substr(0, s.find('.')); }

bool is_wildcard(std::string_view tok) noexcept { return tok == "*" || tok == ">"; }

// plexus::matches: a pattern whose first token is a wildcard never matches
// a topic whose first token starts with `$`.
bool dollar_apart(std::string_view wild_first, std::string_view other_first) noexcept {
  return is_wildcard(wild_first) && !is_wildcard(other_first) && other_first.starts_with('$');
}

// Granted only by an allow pattern that names the first token literally.
bool needs_literal_grant(std::string_view first) noexcept {
  return first.starts_with('$') || first == "_INBOX";
}

bool granted_literally(const std::vector<std::string>& allow, std::string_view first,
                       std::string_view pattern) {
  return std::any_of(allow.begin(), allow.end(), [&](const std::string& a) {
    return first_token(a) == first && pattern_covers(a, pattern);
  });
}

// The inbox rule for a pattern whose first token is literally _INBOX.
bool may_subscribe_inbox(const user_permissions& p, std::string_view pattern,
                         std::string_view own_node) {
  auto t = tokens_of(pattern);
  // Node ids are one token (the plexus client insists; with auth the core
  // refuses a HELLO whose node is not), so the second token is the node.
  if (t.size() >= 2 && !own_node.empty() && t[1] == own_node) return true;
  return granted_literally(p.subscribe.allow, "_INBOX", pattern);
}

} // namespace

bool patterns_overlap(std::string_view a, std::string_view b) noexcept {
  if (dollar_apart(first_token(a), first_token(b)) || dollar_apart(first_token(b), first_token(a)))
    return false;
  std::size_t pa = 0, pb = 0;
  for (;;) {
    bool a_end = pa > a.size(), b_end = pb > b.size();
    if (a_end || b_end) return a_end && b_end;
    auto ea = std::min(a.find('.', pa), a.size());
    auto eb = std::min(b.find('.', pb), b.size());
    auto ta = a.substr(pa, ea - pa), tb = b.substr(pb, eb - pb);
    // `>` takes one or more tokens: the other has at least one left.
    if (ta == ">" || tb == ">") return true;
    if (ta != "*" && tb != "*" && ta != tb) return false;
    pa = ea + 1;
    pb = eb + 1;
  }
}

bool pattern_covers(std::string_view allow, std::string_view pattern) noexcept {
  if (dollar_apart(first_token(allow), first_token(pattern))) return false;
  std::size_t pa = 0, pp = 0;
  for (;;) {
    bool a_end = pa > allow.size(), p_end = pp > pattern.size();
    if (a_end || p_end) return a_end && p_end;
    auto ea = std::min(allow.find('.', pa), allow.size());
    auto ep = std::min(pattern.find('.', pp), pattern.size());
    auto ta = allow.substr(pa, ea - pa), tp = pattern.substr(pp, ep - pp);
    if (ta == ">") return true;      // the pattern has one or more tokens left
    if (tp == ">") return false;     // any number of tokens against a bounded number
    if (ta != "*" && ta != tp) return false; // a literal covers only itself, never `*`
    pa = ea + 1;
    pp = ep + 1;
  }
}

bool may_publish(const user_permissions& p, std::string_view topic) {
  const auto& l = p.publish;
  if (std::any_of(l.deny.begin(), l.deny.end(),
                  [&](const std::string& d) { return matches(d, topic); }))
    return false;
  auto first = first_token(topic);
  bool literal = needs_literal_grant(first);
  if (l.allow.empty()) return !literal;
  return std::any_of(l.allow.begin(), l.allow.end(), [&](const std::string& a) {
    return matches(a, topic) && (!literal || first_token(a) == first);
  });
}

bool may_respond(const user_permissions& p, std::string_view topic) {
  const auto& d = p.publish.deny;
  return p.allow_responses
         && std::none_of(d.begin(), d.end(), [&](const std::string& x) { return matches(x, topic); });
}

bool may_subscribe(const user_permissions& p, std::string_view pattern, std::string_view own_node) {
  const auto& l = p.subscribe;
  if (std::any_of(l.deny.begin(), l.deny.end(),
                  [&](const std::string& d) { return patterns_overlap(d, pattern); }))
    return false;
  auto first = first_token(pattern);
  if (first == "_INBOX") return may_subscribe_inbox(p, pattern, own_node);
  if (first.starts_with('$')) return granted_literally(l.allow, first, pattern);
  // A literal first token, or a wildcard one (never a `$` topic then).
  bool allowed = l.allow.empty()
                 || std::any_of(l.allow.begin(), l.allow.end(),
                                [&](const std::string& a) { return pattern_covers(a, pattern); });
  if (!allowed || !is_wildcard(first)) return allowed;
  // A wildcard first token reaches into _INBOX too: that part needs the
  // inbox rule (`*.n1.>` is n1's own inbox; `>` is everyone's).
  std::string inbox_part;
  if (first == ">") {
    inbox_part = "_INBOX.>";
  } else {
    inbox_part = "_INBOX";
    inbox_part += pattern.substr(1);
  }
  if (!patterns_overlap(inbox_part, "_INBOX.>")) return true; // `*` alone: no inbox topic
  return may_subscribe_inbox(p, inbox_part, own_node);
}

bool may_join(const user_permissions& p, std::string_view group) {
  const auto& q = p.queue_groups;
  if (q.empty()) return true;
  bool topic_like = validate_topic(group) == topic_errc::ok;
  return std::any_of(q.begin(), q.end(), [&](const std::string& g) {
    return g == group
           || (topic_like && validate_pattern(g) == topic_errc::ok && matches(g, group));
  });
}

} // namespace plexus::broker
