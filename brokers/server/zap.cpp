// SPDX-License-Identifier: Apache-2.0
#include "zap.hpp"

#include "plexus/creds.hpp"

namespace plexus::broker {

bool zap_policy::admit(std::string_view z85_key, std::string user) {
  auto bytes = z85_key_bytes(z85_key);
  if (!bytes) return false;
  keys.insert_or_assign(std::string{bytes->begin(), bytes->end()}, std::move(user));
  return true;
}

std::vector<std::string> zap_reply(std::span<const std::string_view> request,
                                   const zap_policy& policy) {
  // version, request id, domain, address, routing id, mechanism, credentials...
  std::string request_id = request.size() > 1 ? std::string{request[1]} : std::string{};
  auto deny = [&](std::string why) {
    return std::vector<std::string>{"1.0", request_id, "400", std::move(why), "", ""};
  };
  if (request.size() < 6 || request[0] != "1.0") return deny("malformed ZAP request");
  if (request[5] != "CURVE") return deny("CURVE required");
  if (request.size() != 7 || request[6].size() != curve_key_bytes) return deny("malformed CURVE credentials");
  auto it = policy.keys.find(request[6]);
  if (it == policy.keys.end()) return deny("unknown key");
  return {"1.0", request_id, "200", "OK", it->second, ""};
}

} // namespace plexus::broker
