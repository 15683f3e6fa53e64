// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the broker's ZAP decision (brokers/server/zap.hpp).
// The input is a ZAP request: frames, each a length byte and that many
// bytes. Whatever it holds, the reply is six frames of version 1.0, and it
// admits (200) only a well-formed CURVE request with a listed key, as that
// key's user.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "check.hpp"
#include "zap.hpp"

namespace {

using namespace plexus::broker;

const std::string alice_key(32, 'a');
const std::string peer_key = [] {
  std::string k(32, '\0');
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<char>(i * 7);
  return k;
}();

const zap_policy& policy() {
  static const zap_policy p = [] {
    zap_policy q;
    q.keys.emplace(alice_key, "alice");
    q.keys.emplace(peer_key, std::string{peer_user_id});
    return q;
  }();
  return p;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  plexus::fuzz::input in{data, size};
  std::vector<std::string_view> frames;
  while (!in.done() && frames.size() < 16) frames.push_back(in.bytes(in.byte()));
  auto reply = zap_reply(frames, policy());
  PLEXUS_FUZZ_CHECK(reply.size() == 6);
  PLEXUS_FUZZ_CHECK(reply[0] == "1.0");
  PLEXUS_FUZZ_CHECK(reply[2] == "200" || reply[2] == "400");
  PLEXUS_FUZZ_CHECK(reply[1] == (frames.size() > 1 ? frames[1] : std::string_view{}));
  bool admissible = frames.size() == 7 && frames[0] == "1.0" && frames[5] == "CURVE"
                    && (frames[6] == alice_key || frames[6] == peer_key);
  PLEXUS_FUZZ_CHECK((reply[2] == "200") == admissible);
  if (admissible)
    PLEXUS_FUZZ_CHECK(reply[4] == (frames[6] == alice_key ? "alice" : std::string{peer_user_id}));
  else
    PLEXUS_FUZZ_CHECK(reply[4].empty());
  return 0;
}
