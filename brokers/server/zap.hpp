// SPDX-License-Identifier: Apache-2.0
#pragma once

// The broker's ZAP handler's decision (ZeroMQ RFC 27), sans-IO: a
// request's frames in, the reply's frames out. It admits exactly the
// CURVE keys it lists, each as its user id (which libzmq then attaches to
// every message of the connection as the property "User-Id"); anything
// else (NULL or PLAIN, an unknown key, a malformed request) gets 400.

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "permissions.hpp" // peer_user_id

namespace plexus::broker {

/// The ZAP endpoint libzmq asks, on the socket's context.
inline constexpr const char* zap_endpoint = "inproc://zeromq.zap.01";

struct zap_policy {
  /// 32-byte CURVE public key (binary) -> user id.
  std::map<std::string, std::string, std::less<>> keys;

  /// Admits `z85_key` as `user`; false when the key is not a Z85 key.
  bool admit(std::string_view z85_key, std::string user);
};

/// The reply's six frames: version, request id, status code ("200" or
/// "400"), status text, user id, metadata (empty).
[[nodiscard]] std::vector<std::string> zap_reply(std::span<const std::string_view> request,
                                                 const zap_policy& policy);

} // namespace plexus::broker
