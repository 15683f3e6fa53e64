// SPDX-License-Identifier: Apache-2.0
// An outside project's service: one typed function on the node's embedded
// broker, called once. Exit 0 only if the reply is the one expected.
#include <chrono>
#include <cstdio>
#include <string>

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
  return r.code == 0 && r.payload == want ? 0 : 1;
}
