// SPDX-License-Identifier: Apache-2.0
// The smallest useful plexus service: a greeter that answers requests.
// Run it alone (embedded broker) or against one: --broker tcp://127.0.0.1:7400
#include <iostream>
#include <string>

#include "plexus/node.hpp"

int main(int argc, char** argv) {
  plexus::node node{argc, argv};
  auto& greeter = node.service("greeter");
  greeter.function("greet").on("greet").handle(
    [](std::string_view name, plexus::context& ctx) -> plexus::result<void> {
      if (name.empty()) return plexus::reject{"a greeting needs a name"};
      ctx.reply("hello, " + std::string{name});
      return {};
    });
  node.start();
  auto r = node.client().request("greet", "world", std::chrono::seconds{5});
  std::cout << (r.code == 0 ? r.payload : std::string{"no reply: "} + r.text) << std::endl;
  return node.run(); // serves until Ctrl-C or --duration
}
