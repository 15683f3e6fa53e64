// SPDX-License-Identifier: Apache-2.0
#pragma once

// Who may do what on a broker with authentication (issue #18): each
// connection is one identity, admitted by the shell (CurveZMQ + ZAP), and
// the core checks every PUB, SUB and queue-group join against that
// identity's permissions. Pure data and pure functions: no I/O.
//
// Rules (NATS-like; brokers/PROTOCOL.md, "Authentication"):
// - allow empty = everything not reserved is allowed; a pattern in deny
//   wins over any allow;
// - reserved namespaces ($SYS.>, $DLQ.>) are never granted by a pattern
//   that starts with a wildcard: only an allow pattern whose first token
//   is literally $SYS or $DLQ grants them;
// - _INBOX.<node>.> (reply subjects): subscribing needs the connection's
//   own node id as <node>; publishing on another's inbox needs
//   allow_responses and an open request to answer (at most once, before
//   its deadline), or an explicit publish allow for it.

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace plexus::broker {

/// The identity of another broker (the shell admits a link key as this;
/// '$': no user's name starts with it). With auth, only a connection of
/// this identity may say PEER_HELLO.
inline constexpr std::string_view peer_user_id = "$peer";

struct permission_lists {
  std::vector<std::string> allow; // plexus patterns; empty: all (reserved aside)
  std::vector<std::string> deny;  // wins over allow
};

struct user_permissions {
  permission_lists publish;
  permission_lists subscribe;
  /// May answer requests delivered to it on their reply subjects.
  bool allow_responses = true;
  /// Queue groups it may join; empty: any.
  std::vector<std::string> queue_groups;
};

/// The broker's users by name (the identity the shell admitted).
struct auth_policy {
  std::map<std::string, user_permissions> users;
};

// The rule engine (permissions.cpp). Topics and patterns must be valid
// (the decoder has checked them); matching is plexus::matches, including
// its rule that a wildcard first token never matches a `$` first token.

/// True if some topic matches both patterns (a topic is a pattern too).
[[nodiscard]] bool patterns_overlap(std::string_view a, std::string_view b) noexcept;
/// True if every topic `pattern` matches, `allow` matches too:
/// `orders.>` covers `orders.*.shipped`; `orders.*` does not cover `orders.>`.
[[nodiscard]] bool pattern_covers(std::string_view allow, std::string_view pattern) noexcept;

/// Publishing on `topic` by the lists alone: not denied, and allowed
/// (allow empty: any topic outside $SYS, $DLQ and _INBOX; those three only
/// by an allow pattern whose first token names them literally). Answering
/// a request (allow_responses) is the core's to add: see may_respond.
[[nodiscard]] bool may_publish(const user_permissions& p, std::string_view topic);
/// Answering on reply subject `topic` with an open request for it (the
/// core keeps those): allow_responses, and no publish deny matches it.
[[nodiscard]] bool may_respond(const user_permissions& p, std::string_view topic);
/// Subscribing to `pattern` for a connection whose HELLO said `own_node`:
/// no subscribe deny overlaps it (deny wins, conservatively), and every
/// topic it can match is allowed: covered by an allow pattern (allow empty:
/// anything outside the reserved namespaces); $SYS/$DLQ/_INBOX topics only
/// by an allow pattern naming them literally, except the connection's own
/// inbox, `_INBOX.<own_node>.…`, which is always allowed unless denied.
/// So `>` needs an explicit `_INBOX.>` allow too: it would match other
/// connections' replies.
[[nodiscard]] bool may_subscribe(const user_permissions& p, std::string_view pattern,
                                 std::string_view own_node = {});
/// Joining queue group `group`: queue_groups empty, or an entry equal to
/// the name (or a pattern matching it, when the name is a valid topic).
[[nodiscard]] bool may_join(const user_permissions& p, std::string_view group);

} // namespace plexus::broker
