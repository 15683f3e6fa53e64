// SPDX-License-Identifier: Apache-2.0
#pragma once

// The broker's auth file (--auth FILE, issue #18), sans-IO: text in, the
// users, their keys and permissions, and the peers' keys out. TOML:
//
//   secret_key_file = "broker.key"   # the broker's CURVE secret key (Z85),
//                                    # relative to the auth file's folder
//   [[users]]
//   name = "orders-svc"              # the identity; not starting with '$'
//   public_key = "<40 chars Z85>"    # from `plexus keys user`
//   publish_allow = ["orders.>"]     # plexus patterns; all four optional
//   publish_deny = []
//   subscribe_allow = ["orders.>"]
//   subscribe_deny = []
//   allow_responses = true           # optional, default true
//   queue_groups = ["workers"]       # optional; empty: any
//
//   [[peers]]
//   public_key = "<40 chars Z85>"    # a broker allowed to link (its --creds)

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "permissions.hpp"

namespace plexus::broker {

struct auth_user_key {
  std::string name;
  std::string public_key; // Z85
};

struct auth_file {
  std::string secret_key_file; // as written (the caller resolves it)
  std::vector<auth_user_key> users;
  std::vector<std::string> peer_keys; // Z85
  auth_policy policy;                 // the users' permissions, by name
};

/// Parses an auth file's text; `name` (its path) starts `error`, a line a
/// user can act on (the field and the user it is about). nullopt on error.
[[nodiscard]] std::optional<auth_file> parse_auth_file(std::string_view text, std::string_view name,
                                                       std::string& error);

} // namespace plexus::broker
