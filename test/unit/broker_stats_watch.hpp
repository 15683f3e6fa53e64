// SPDX-License-Identifier: Apache-2.0
#pragma once

// A broker's stats as its $SYS.broker.<id>.stats reports them, for tests
// that check what the broker counted (drops, overruns, pauses, peaks).

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "plexus/client.hpp"
#include "waiter.hpp"

namespace plexus::test {

/// The latest report of broker `id`, heard through `c` (the client may
/// outlive this: its handler shares what it writes).
struct broker_stats_watch {
  struct heard {
    waiter w;
    std::string latest;
  };
  std::shared_ptr<heard> h = std::make_shared<heard>();
  broker_stats_watch(client& c, const std::string& id) {
    c.subscribe("$SYS.broker." + id + ".stats", [h = h](const message_view& v) {
      h->w.update([&] { h->latest = std::string{v.payload}; });
    });
  }
  /// A report made after this call.
  std::string fresh() {
    h->w.update([&] { h->latest.clear(); });
    BOOST_TEST_REQUIRE(h->w.until([&] { return !h->latest.empty(); }, std::chrono::seconds{5}),
                       "no broker stats");
    std::lock_guard lock{h->w.m};
    return h->latest;
  }
};

/// The whole number after "key": in a stats report.
inline std::uint64_t number_after(const std::string& json, std::string_view key) {
  auto k = "\"" + std::string{key} + "\":";
  auto at = json.find(k);
  BOOST_TEST_REQUIRE(at != std::string::npos, "no " << key << " in the broker's stats");
  return std::stoull(json.substr(at + k.size()));
}

} // namespace plexus::test
