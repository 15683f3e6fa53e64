// SPDX-License-Identifier: Apache-2.0
// The shipping chain: orders.shipped -> validate-address -> create-label ->
// send-confirmation (the e-mail goes to an outbox file), fed by an order
// generator. One line a second while it runs, a summary at the end.
//
//   shipping --duration 20                      alone, on an embedded broker
//   shipping --broker tcp://127.0.0.1:7400      against plexus-broker
//   shipping --fail-rate 0.05 --poison-every 100   faults: isolation shows
//   shipping --broker tcp://127.0.0.1:7400 --role create-label
//                                               one part per process
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>

#include "plexus/node.hpp"

namespace {

struct order {
  int id = 0;
  std::string customer;
  std::string address;
  bool poison = false; // fault injection: this one always crashes validation
  MSGPACK_DEFINE_MAP(id, customer, address, poison)
};

struct label {
  int id = 0;
  std::string customer;
  std::string tracking;
  MSGPACK_DEFINE_MAP(id, customer, tracking)
};

double to_double(const std::string& s, const char* what) {
  try {
    return std::stod(s);
  } catch (...) {
    throw std::invalid_argument(std::string{"--"} + what + ": not a number: '" + s + "'");
  }
}

} // namespace

int main(int argc, char** argv) {
  std::string role = "all", rate_s = "500", orders_s = "0", fail_s = "0", poison_s = "0",
              label_ms_s = "4", outbox_path = "shipping-outbox.txt";
  plexus::node node{argc, argv,
                    {{"role", "what this process runs: all, generator, functions, validate-address, "
                              "create-label or send-confirmation", &role},
                     {"rate", "orders generated per second", &rate_s},
                     {"orders", "orders to generate, then stop (0 = no limit)", &orders_s},
                     {"fail-rate", "chance that create-label crashes on a message (0..1)", &fail_s},
                     {"label-ms", "ms the label printer takes per order (create-label scales for it)", &label_ms_s},
                     {"poison-every", "every Nth order crashes validation forever (0 = none)", &poison_s},
                     {"outbox", "file the confirmation e-mails are written to", &outbox_path}}};
  // A role is everything, the order generator, the three functions or one.
  const bool generates = role == "all" || role == "generator";
  auto hosts = [&role](const std::string& function) {
    return role == "all" || role == "functions" || role == function;
  };
  double rate = 0, fail_rate = 0, label_ms = 0;
  long max_orders = 0, poison_every = 0;
  try {
    if (!(generates || hosts("validate-address") || hosts("create-label") || hosts("send-confirmation")))
      throw std::invalid_argument("--role: all, generator, functions, validate-address, create-label "
                                  "or send-confirmation, not '" + role + "'");
    if (role != "all" && node.embedded_broker())
      throw std::invalid_argument("--role " + role + " shares the work with other processes: it needs --broker");
    rate = to_double(rate_s, "rate");
    max_orders = static_cast<long>(to_double(orders_s, "orders"));
    fail_rate = to_double(fail_s, "fail-rate");
    poison_every = static_cast<long>(to_double(poison_s, "poison-every"));
    label_ms = to_double(label_ms_s, "label-ms");
    if (rate <= 0 || max_orders < 0 || fail_rate < 0 || fail_rate > 1 || poison_every < 0 ||
        label_ms < 0 || label_ms > 1000)
      throw std::invalid_argument("--rate > 0, --orders >= 0, --fail-rate in 0..1, "
                                  "--poison-every >= 0, --label-ms in 0..1000");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shipping: %s\n", e.what());
    return 2;
  }
  std::ofstream outbox;
  if (hosts("send-confirmation")) {
    outbox.open(outbox_path, std::ios::app);
    if (!outbox) {
      std::fprintf(stderr, "shipping: cannot write the outbox %s\n", outbox_path.c_str());
      return 1;
    }
  }
  std::mutex outbox_mutex;

  // validate-address and create-label are reliable: what they publish is
  // confirmed before their order is ACKed, so an order lost between two
  // functions (a process or a broker dying) is run again, not dropped.
  auto& shipping = node.service("shipping");
  if (hosts("validate-address"))
    shipping.function("validate-address").on("orders.shipped").reliable()
      .handle([](const order& o, plexus::context& ctx) -> plexus::result<void> {
        if (o.poison)
          throw std::runtime_error("address parser crashed on order " + std::to_string(o.id));
        if (o.address.empty()) return plexus::reject{"order without an address"};
        ctx.publish("address.validated", o);
        return {};
      });
  // The label printer is slow (--label-ms, a blocking call): create-label
  // scales between 1 and 32 instances, a thread each, while the others stay
  // at their fixed 4.
  if (hosts("create-label"))
    shipping.function("create-label").on("address.validated").scale(1, 32).blocking().reliable()
      .handle([fail_rate, label_ms](const order& o, plexus::context& ctx) -> plexus::result<void> {
        thread_local std::mt19937 rng{std::random_device{}()};
        std::this_thread::sleep_for(std::chrono::duration<double, std::milli>{label_ms});
        if (std::uniform_real_distribution<>{0, 1}(rng) < fail_rate)
          throw std::runtime_error("label printer jammed");
        ctx.publish("label.created", label{o.id, o.customer, "PX" + std::to_string(100000 + o.id)});
        return {};
      });
  if (hosts("send-confirmation"))
    shipping.function("send-confirmation").on("label.created")
      .handle([&](const label& l, plexus::context&) -> plexus::result<void> {
        std::lock_guard lock{outbox_mutex};
        // std::endl flushes: the e-mail is out before the ACK, so a kill loses none.
        outbox << "To: " << l.customer << " | Your order " << l.id << " ships with " << l.tracking
               << std::endl;
        return {};
      });
  node.start();

  std::atomic<long> dead_letters{0};
  if (generates)
    node.client().subscribe("$DLQ.>", [&](const plexus::message_view&) { ++dead_letters; });

  // The order generator, paced to --rate, up to --orders.
  std::atomic<bool> stop{false};
  std::atomic<long> generated{0};
  std::thread generator;
  if (generates) generator = std::thread{[&] {
    auto start = std::chrono::steady_clock::now();
    for (long i = 1; !stop && (max_orders == 0 || i <= max_orders); ++i) {
      order o{static_cast<int>(i), "customer-" + std::to_string(i % 97), std::to_string(i) + " Main St",
              poison_every > 0 && i % poison_every == 0};
      node.client().publish("orders.shipped", plexus::encode_payload(o));
      ++generated;
      auto due = start + std::chrono::duration<double>(static_cast<double>(i) / rate);
      while (!stop && std::chrono::steady_clock::now() < due)
        std::this_thread::sleep_for(std::chrono::milliseconds{1}); // pacing the generator
    }
  }};

  // The live line, once a second, until the node stops: what this process runs.
  std::thread reporter{[&] {
    auto next = std::chrono::steady_clock::now();
    while (!stop) {
      next += std::chrono::seconds{1};
      while (!stop && std::chrono::steady_clock::now() < next)
        std::this_thread::sleep_for(std::chrono::milliseconds{20});
      if (stop) break;
      std::string line = generates ? "orders " + std::to_string(generated.load()) : "";
      for (auto& s : node.stats())
        line += (line.empty() ? "" : " | ") + s.function + " " + std::to_string(s.ok) +
                " [x" + std::to_string(s.instances) + "]" +
                (s.crashes ? " (crashes " + std::to_string(s.crashes) + ")" : "") +
                (s.stopped ? " STOPPED" : "");
      if (generates) line += " | dead letters " + std::to_string(dead_letters.load());
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
    }
  }};

  node.wait(); // until Ctrl-C, SIGTERM or --duration
  stop = true;
  if (generator.joinable()) generator.join();
  reporter.join();
  node.stop(); // finishes what is in flight, then says BYE

  std::printf("\nsummary (--role %s):\n", role.c_str());
  if (generates)
    std::printf("  %ld orders generated, %ld dead letters seen\n", generated.load(), dead_letters.load());
  for (auto& s : node.stats())
    std::printf("  %-18s ok %-7llu errors %-4llu crashes %-4llu restarts %-4llu quarantined %-3llu %s\n",
                s.function.c_str(), static_cast<unsigned long long>(s.ok),
                static_cast<unsigned long long>(s.errors), static_cast<unsigned long long>(s.crashes),
                static_cast<unsigned long long>(s.restarts),
                static_cast<unsigned long long>(s.quarantined), s.stopped ? "STOPPED" : "");
  if (role == "all") { // the whole chain ran here: every order is accounted for
    std::uint64_t confirmed = 0, quarantined = 0;
    for (auto& s : node.stats()) {
      if (s.function == "send-confirmation") confirmed = s.ok;
      quarantined += s.quarantined;
    }
    auto open = static_cast<long long>(generated.load()) - static_cast<long long>(confirmed + quarantined);
    std::printf("  %ld orders: %llu confirmed, %llu quarantined as poison, "
                "%lld still in the chain at shutdown\n",
                generated.load(), static_cast<unsigned long long>(confirmed),
                static_cast<unsigned long long>(quarantined), open);
  }
  if (hosts("send-confirmation")) std::printf("  confirmations in %s\n", outbox_path.c_str());
  return 0;
}
