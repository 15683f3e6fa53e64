// SPDX-License-Identifier: Apache-2.0
// An outside project's service: one typed function on the node's embedded
// broker, called once, and a schedule from plexus::actors. Exit 0 only if
// the reply and the schedule's next fire are the ones expected.
#include <chrono>
#include <cstdio>
#include <string>

#include "plexus/actors/schedule.hpp"
#include "plexus/node.hpp"
#include "plexus/version.hpp"

struct order {
  std::string id;
  int quantity = 0;
  MSGPACK_DEFINE_MAP(id, quantity);
};

int main(int argc, char** argv) {
  plexus::node node{argc, argv};
  node.service("orders").function("price").on("orders.price").handle(
    [](const order& o, plexus::context& ctx) -> plexus::result<void> {
      if (o.quantity <= 0) return plexus::reject{"quantity must be positive"};
      ctx.reply(o.id + ": " + std::to_string(o.quantity * 3) + " EUR");
      return {};
    });
  node.start();
  auto r = node.client().request("orders.price", plexus::encode_payload(order{"A-17", 4}),
                                 std::chrono::seconds{10});
  node.stop();
  const std::string want = "A-17: 12 EUR";
  std::printf("plexus %s: %s\n", PLEXUS_VERSION, r.code == 0 ? r.payload.c_str() : r.text.c_str());
  // Saturday 2026-12-05 12:00 UTC: the next weekday 09:00 is Monday the 7th.
  plexus::actors::schedule weekdays{"0 9 * * MON-FRI"};
  auto next = weekdays.next_after(plexus::actors::instant{std::chrono::milliseconds{1796472000000}});
  const bool schedule_ok = next && plexus::actors::iso8601_utc(*next) == "2026-12-07T09:00:00.000Z";
  std::printf("next weekday 09:00: %s\n", next ? plexus::actors::iso8601_utc(*next).c_str() : "none");
  return r.code == 0 && r.payload == want && schedule_ok ? 0 : 1;
}
