// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the broker's auth file parser (brokers/server/
// auth_file.hpp): any text gives a file or one line of error, never both
// or neither; what it gives holds CURVE keys, one per user or peer, and
// every user's permissions.

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "auth_file.hpp"
#include "check.hpp"
#include "plexus/creds.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 64 * 1024) return 0;
  std::string_view text{reinterpret_cast<const char*>(data), size};
  std::string error;
  auto file = plexus::broker::parse_auth_file(text, "auth.toml", error);
  PLEXUS_FUZZ_CHECK(file.has_value() != !error.empty());
  if (!file) {
    PLEXUS_FUZZ_CHECK(error.starts_with("auth.toml"));
    return 0;
  }
  PLEXUS_FUZZ_CHECK(!file->secret_key_file.empty());
  std::set<std::string> keys;
  for (auto& u : file->users) {
    PLEXUS_FUZZ_CHECK(plexus::is_z85_key(u.public_key));
    PLEXUS_FUZZ_CHECK(!u.name.empty() && u.name.front() != '$');
    PLEXUS_FUZZ_CHECK(file->policy.users.contains(u.name));
    PLEXUS_FUZZ_CHECK(keys.insert(u.public_key).second);
  }
  PLEXUS_FUZZ_CHECK(file->policy.users.size() == file->users.size());
  for (auto& k : file->peer_keys) {
    PLEXUS_FUZZ_CHECK(plexus::is_z85_key(k));
    PLEXUS_FUZZ_CHECK(keys.insert(k).second);
  }
  return 0;
}
