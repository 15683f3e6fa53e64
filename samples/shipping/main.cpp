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
//   plexus-broker --config samples/shipping/broker.toml --store DIR
//                                               a broker that keeps the orders
//                                               on disk: parts may start in any
//                                               order, and it may restart
//   shipping --broker tcp://127.0.0.1:7400 --inject label-crash
//                                               a fault to find with `plexus trace`
//   shipping --http-port 8080 --generator http  orders over HTTP (entry.hpp: curl
//                                               lines), --drop DIR for CSV files,
//                                               --summary '@every 10s' a timer
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "entry.hpp"
#include "plexus/actors/config.hpp"
#include "plexus/node.hpp"

namespace {

using shipping::order;

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

// Faults to inject (--inject), each hitting every --inject-every'th order,
// so that `plexus trace` has something to explain.
struct fault {
  const char* name;
  const char* help;
};
constexpr fault faults[] = {
  {"label-timeout", "validate-address asks create-label for the label by request, with 100 ms to "
                    "answer; the printer stalls past it (timeout in create-label, downstream in "
                    "validate-address)"},
  {"label-crash", "create-label throws (crash, then dead_lettered as poison on the 3rd delivery)"},
  {"address-error", "validate-address returns an error: address not found (retried, then "
                    "dead-lettered)"},
  {"confirm-downstream", "send-confirmation asks lookup-customer (customers.lookup) for the "
                         "customer's e-mail address and it fails (downstream in send-confirmation)"},
  {"no-responders", "send-confirmation asks loyalty.points, which no function serves"},
};

std::string fault_help() {
  std::string out = "faults to inject, repeatable or a comma list:";
  for (auto& f : faults) out += std::string{" "} + f.name + ": " + f.help + ";";
  out.back() = '.';
  return out;
}

// --inject may come more than once: the node's flags take one value each,
// so every occurrence is joined into one comma list here.
std::vector<std::string> join_injects(int argc, char** argv) {
  std::vector<std::string> args;
  std::string joined;
  auto add = [&](std::string_view v) { joined += (joined.empty() ? "" : ",") + std::string{v}; };
  for (int i = 0; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--inject" && i + 1 < argc) add(argv[++i]);
    else if (a.starts_with("--inject=")) add(a.substr(9));
    else args.emplace_back(a);
  }
  if (!joined.empty()) {
    args.emplace_back("--inject");
    args.push_back(joined);
  }
  return args;
}

/// What the broker answered the generator's orders. The confirm handlers
/// run on the client's I/O thread, one at a time, and may still run while
/// the node stops: they share this, not main's locals.
struct order_answers {
  std::atomic<long> confirmed{0}, dead_lettered{0}, not_delivered{0}, failed{0}, answered{0};
  std::atomic<bool> told_nobody{false}, told_failed{false};
};

/// Counts one order's CONFIRM. 0: kept on disk by a durable queue, or
/// taken and finished by validate-address (a confirm is end to end); 102:
/// validate-address gave up on it (poison); 101: nobody subscribes to
/// orders.shipped and no durable queue keeps it, so the broker dropped it:
/// said once, with what to do, and never sent again (orders are not
/// retried in a loop: a broker with a store keeps them instead). Once
/// `expected` orders are answered, one line says how they went.
void count_answer(order_answers& a, int id, std::uint32_t code, long expected) {
  if (code == 0) {
    ++a.confirmed;
  } else if (code == plexus::code_of(plexus::status::dead_lettered)) {
    ++a.dead_lettered;
  } else if (code == plexus::code_of(plexus::status::no_interest)) {
    ++a.not_delivered;
    if (!a.told_nobody.exchange(true))
      std::fprintf(stderr,
                   "generator: order %d was not delivered: nobody takes orders.shipped and the "
                   "broker keeps no durable queue for it (101); the orders nobody takes are "
                   "dropped, counted as not delivered. Start the functions first, or run "
                   "plexus-broker with --config samples/shipping/broker.toml --store DIR: it then "
                   "keeps every order on disk until a function takes it\n",
                   id);
  } else {
    ++a.failed;
    if (!a.told_failed.exchange(true))
      std::fprintf(stderr, "generator: order %d failed: %s (%u)\n", id, plexus::status_text(code),
                   code);
  }
  if (a.answered.fetch_add(1) + 1 == expected) {
    std::printf("generator: %ld of %ld orders confirmed (%ld not delivered, %ld dead-lettered, "
                "%ld failed)\n",
                a.confirmed.load(), expected, a.not_delivered.load(), a.dead_lettered.load(),
                a.failed.load());
    std::fflush(stdout);
  }
}

} // namespace

int main(int argc, char** argv) {
  std::string role = "all", rate_s = "500", orders_s = "0", fail_s = "0", poison_s = "0",
              label_ms_s = "4", outbox_path = "shipping-outbox.txt", inject_s, inject_every_s = "10",
              http_port_s = "-1", summary = "@daily", drop_dir, generator_s = "bus", actors_file;
  auto args = join_injects(argc, argv);
  std::vector<const char*> arg_ptrs;
  for (auto& a : args) arg_ptrs.push_back(a.c_str());
  plexus::node node{static_cast<int>(arg_ptrs.size()), arg_ptrs.data(),
                    {{"role", "what this process runs: all, generator, functions, validate-address, "
                              "create-label or send-confirmation. Parts in processes of their own "
                              "need a --broker; a plexus-broker run with --config "
                              "samples/shipping/broker.toml --store DIR keeps the orders on disk, "
                              "so the parts may start in any order and a broker restart loses no "
                              "order", &role},
                     {"rate", "orders generated per second", &rate_s, "FLOAT"},
                     {"orders", "orders to generate, then stop (0 = no limit)", &orders_s, "UINT"},
                     {"fail-rate", "chance that create-label crashes on a message (0..1)", &fail_s, "FLOAT"},
                     {"label-ms", "ms the label printer takes per order (create-label scales for it)", &label_ms_s, "UINT"},
                     {"poison-every", "every Nth order crashes validation forever (0 = none)", &poison_s, "UINT"},
                     {"outbox", "file the confirmation e-mails are written to", &outbox_path, "FILE"},
                     {"inject", fault_help(), &inject_s},
                     {"inject-every", "an injected fault hits every Nth order (1 = every order), "
                                      "each fault a different one",
                      &inject_every_s, "UINT"},
                     {"http-port", "with --role all: an HTTP gateway on 127.0.0.1:PORT (POST "
                                   "/orders/shipped, /rpc/orders.status, /rpc/<topic>, "
                                   "/events/<topic>); 0 = a free port, -1 = none",
                      &http_port_s, "INT"},
                     {"generator", "how the generator sends its orders: 'bus' (a confirmed publish) "
                                   "or 'http' (POST /orders/shipped to --http-port)",
                      &generator_s},
                     {"summary", "with --role all: when the summary timer fires (cron, @daily, "
                                 "'@every 10s'); empty = none",
                      &summary},
                     {"drop", "with --role all: a directory whose *.csv files (id,customer,address "
                              "lines) become orders; done/ and failed/ inside it",
                      &drop_dir, "DIR"},
                     {"actors", "with --role all: more triggers and sinks from a TOML file "
                                "(plexus/actors/config.hpp; e.g. samples/shipping/actors.toml)",
                      &actors_file, "FILE"}}};
  // A role is everything, the order generator, the three functions or one.
  const bool generates = role == "all" || role == "generator";
  auto hosts = [&role](const std::string& function) {
    return role == "all" || role == "functions" || role == function;
  };
  double rate = 0, fail_rate = 0, label_ms = 0;
  long max_orders = 0, poison_every = 0, inject_every = 0;
  std::vector<std::string> injected;
  try {
    for (std::size_t at = 0; at < inject_s.size();) {
      auto comma = std::min(inject_s.find(',', at), inject_s.size());
      auto name = inject_s.substr(at, comma - at);
      at = comma + 1;
      if (name.empty()) continue;
      if (std::none_of(std::begin(faults), std::end(faults), [&](const fault& f) { return name == f.name; }))
        throw std::invalid_argument("--inject: label-timeout, label-crash, address-error, "
                                    "confirm-downstream or no-responders, not '" + name + "'");
      injected.push_back(name);
    }
    inject_every = static_cast<long>(to_double(inject_every_s, "inject-every"));
    if (inject_every < 1) throw std::invalid_argument("--inject-every >= 1");
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
    if (generator_s != "bus" && generator_s != "http")
      throw std::invalid_argument("--generator: bus or http, not '" + generator_s + "'");
    if (generator_s == "http" && (to_double(http_port_s, "http-port") < 0 || role != "all"))
      throw std::invalid_argument("--generator http needs --http-port and --role all");
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
  // Whether fault `name` hits order `id`: every --inject-every'th order,
  // each fault a different one (the k-th fault of the table is shifted by
  // k), so that one fault does not hide another.
  auto hits = [&injected, inject_every](std::string_view name, int id) {
    if (std::find(injected.begin(), injected.end(), name) == injected.end()) return false;
    auto k = std::find_if(std::begin(faults), std::end(faults),
                          [&](const fault& f) { return name == f.name; }) - std::begin(faults);
    return (id + k) % inject_every == 0;
  };
  constexpr auto label_budget = std::chrono::milliseconds{100}; // --inject label-timeout

  // validate-address and create-label are reliable: what they publish is
  // confirmed before their order is ACKed, so an order lost between two
  // functions (a process or a broker dying) is run again, not dropped. On
  // a broker with samples/shipping/broker.toml and --store, each hop also
  // waits on disk for its function, across the broker's restarts.
  auto track = std::make_shared<shipping::tracker>(); // where each order is (orders.status)
  auto& shipping = node.service("shipping");
  if (hosts("validate-address"))
    shipping.function("validate-address").on("orders.shipped").reliable()
      .handle([hits, label_budget, track](const order& o, plexus::context& ctx) -> plexus::result<void> {
        if (o.poison)
          throw std::runtime_error("address parser crashed on order " + std::to_string(o.id));
        if (o.address.empty()) return plexus::reject{"order without an address"};
        if (hits("address-error", o.id))
          return plexus::error{"address not found: " + o.address};
        if (hits("label-timeout", o.id)) // the label is wanted within 100 ms: a request
          return ctx.request("address.validated", o, label_budget,
                             [id = o.id](const plexus::reply& r, plexus::context&) -> plexus::result<void> {
                               if (r.code != 0)
                                 return plexus::error{"no label for order " + std::to_string(id)};
                               return {};
                             });
        ctx.publish("address.validated", o);
        track->saw(o.id, "address validated");
        return {};
      });
  // The label printer is slow (--label-ms, a blocking call): create-label
  // scales between 1 and 32 instances, a thread each, while the others stay
  // at their fixed 4.
  if (hosts("create-label"))
    shipping.function("create-label").on("address.validated").scale(1, 32).blocking().reliable()
      .handle([fail_rate, label_ms, hits, label_budget, track](const order& o, plexus::context& ctx)
                -> plexus::result<void> {
        thread_local std::mt19937 rng{std::random_device{}()};
        auto printing = std::chrono::duration<double, std::milli>{label_ms};
        if (hits("label-timeout", o.id)) printing += label_budget + std::chrono::milliseconds{50}; // stalls
        std::this_thread::sleep_for(printing);
        if (hits("label-crash", o.id))
          throw std::runtime_error("label printer jammed on order " + std::to_string(o.id));
        if (std::uniform_real_distribution<>{0, 1}(rng) < fail_rate)
          throw std::runtime_error("label printer jammed");
        auto now = std::chrono::system_clock::now().time_since_epoch();
        if (ctx.deadline_ns() != 0 &&
            static_cast<std::uint64_t>(std::chrono::nanoseconds{now}.count()) > ctx.deadline_ns())
          return plexus::error{"label for order " + std::to_string(o.id) + " printed too late"};
        ctx.publish("label.created", label{o.id, o.customer, "PX" + std::to_string(100000 + o.id)});
        track->saw(o.id, "label PX" + std::to_string(100000 + o.id) + " created");
        ctx.reply("printed"); // asked by request (--inject label-timeout); else nobody waits
        return {};
      });
  // std::endl flushes: the e-mail is out before the ACK, so a kill loses none.
  auto send = [&outbox, &outbox_mutex](const label& l, const std::string& to) {
    std::lock_guard lock{outbox_mutex};
    outbox << "To: " << to << " | Your order " << l.id << " ships with " << l.tracking << std::endl;
  };
  // Injected faults make send-confirmation ask first: lookup-customer for
  // the e-mail address (it fails), or loyalty.points (nobody serves it).
  auto asked = [](const plexus::reply& r) -> plexus::result<void> {
    if (r.code == 0) return {};
    auto why = r.text.empty() ? std::string{plexus::status_text(r.code)} : r.text;
    return plexus::error{"no e-mail sent: " + why};
  };
  if (hosts("send-confirmation"))
    shipping.function("send-confirmation").on("label.created")
      .handle([send, asked, hits, track](const label& l, plexus::context& ctx) -> plexus::result<void> {
        const char* ask = hits("confirm-downstream", l.id) ? "customers.lookup"
                          : hits("no-responders", l.id)    ? "loyalty.points"
                                                           : nullptr;
        if (ask)
          return ctx.request(ask, l, std::chrono::milliseconds{500},
                             [send, asked, l](const plexus::reply& r, plexus::context&) {
                               auto ok = asked(r);
                               if (ok.ok()) send(l, r.payload); // the address it answered
                               return ok;
                             });
        send(l, l.customer);
        track->saw(l.id, "confirmation sent");
        return {};
      });
  if (hosts("send-confirmation") &&
      std::find(injected.begin(), injected.end(), "confirm-downstream") != injected.end())
    shipping.function("lookup-customer").on("customers.lookup").max_deliver(1) // its caller retries
      .handle([](const label&, plexus::context&) -> plexus::result<void> {
        return plexus::error{"customer database unreachable"}; // asked only when the fault hits
      });
  std::unique_ptr<plexus::actors::gateway> http;
  plexus::actors::configured extra; // --actors
  if (role == "all") { // the ways in from outside (entry.cpp)
    try {
      http = shipping::add_entry(node, {static_cast<int>(to_double(http_port_s, "http-port")), summary, drop_dir},
                                 track);
      if (!actors_file.empty()) extra = plexus::actors::add_from_config(node.service("edge"), actors_file);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "shipping: %s\n", e.what());
      return 2;
    }
  }
  node.start();
  for (auto& g : extra.gateways) {
    g->start(node);
    std::printf("http: a gateway from %s on port %d\n", actors_file.c_str(), g->port());
  }
  if (http) {
    http->start(node);
    std::printf("http: orders in with  curl -X POST localhost:%d/orders/shipped -H 'Content-Type: "
                "application/json' -d '{\"id\": 1000042, \"customer\": \"ada\", \"address\": \"1 Main St\"}'\n"
                "http: where one is    curl -X POST localhost:%d/rpc/orders.status -H 'Content-Type: "
                "application/json' -d '{\"id\": 42}'\n",
                http->port(), http->port());
    std::fflush(stdout);
  }

  std::atomic<long> dead_letters{0};
  if (generates)
    node.client().subscribe("$DLQ.>", [&](const plexus::message_view&) { ++dead_letters; });

  // The order generator, paced to --rate, up to --orders: each order
  // published once, confirmed (the client keeps it until the broker answers
  // and sends it again after a reconnect).
  std::atomic<bool> stop{false};
  std::atomic<long> generated{0};
  auto answers = std::make_shared<order_answers>();
  std::vector<std::thread> generator;
  // Over HTTP each post waits for its 202 (validate-address took the order,
  // and what it published was confirmed): lanes of their own keep --rate.
  const long lanes = http && generator_s == "http" ? 32 : 1;
  const auto start = std::chrono::steady_clock::now();
  for (long lane = 1; generates && lane <= lanes; ++lane) generator.emplace_back([&, lane] {
    for (long i = lane; !stop && (max_orders == 0 || i <= max_orders); i += lanes) {
      order o{static_cast<int>(i), "customer-" + std::to_string(i % 97), std::to_string(i) + " Main St",
              poison_every > 0 && i % poison_every == 0};
      if (http && generator_s == "http") { // through the gateway: its status, as a code
        auto status = shipping::post_order(http->port(), o);
        count_answer(*answers, o.id,
                     status == 202   ? 0u
                     : status == 422 ? plexus::code_of(plexus::status::dead_lettered)
                     : status == 503 ? plexus::code_of(plexus::status::no_interest)
                                     : plexus::code_of(plexus::status::failed),
                     max_orders);
      } else {
        node.client().publish_confirmed("orders.shipped", plexus::encode_payload(o),
                                        [answers, id = o.id, max_orders](std::uint32_t code) {
                                          count_answer(*answers, id, code, max_orders);
                                        });
      }
      ++generated;
      auto due = start + std::chrono::duration<double>(static_cast<double>(i) / rate);
      while (!stop && std::chrono::steady_clock::now() < due)
        std::this_thread::sleep_for(std::chrono::milliseconds{1}); // pacing the generator
    }
  });

  // The live line, once a second, until the node stops: what this process runs.
  std::thread reporter{[&] {
    auto next = std::chrono::steady_clock::now();
    while (!stop) {
      next += std::chrono::seconds{1};
      while (!stop && std::chrono::steady_clock::now() < next)
        std::this_thread::sleep_for(std::chrono::milliseconds{20});
      if (stop) break;
      std::string line = generates ? "orders " + std::to_string(generated.load()) + " (confirmed " +
                                       std::to_string(answers->confirmed.load()) + ")"
                                   : "";
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
  for (auto& g : generator) g.join();
  reporter.join();
  if (http) http->stop(); // its requests in flight still need the node's client
  for (auto& g : extra.gateways) g->stop();
  node.stop(); // finishes what is in flight, then says BYE

  std::printf("\nsummary (--role %s):\n", role.c_str());
  if (generates) {
    auto& a = *answers;
    std::printf("  %ld orders generated, %ld dead letters seen\n", generated.load(), dead_letters.load());
    std::printf("  orders.shipped: %ld confirmed, %ld dead-lettered, %ld not delivered (nobody took "
                "them), %ld failed, %ld unanswered at shutdown\n",
                a.confirmed.load(), a.dead_lettered.load(), a.not_delivered.load(), a.failed.load(),
                generated.load() - a.answered.load());
  }
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
    // Orders from outside (curl, a CSV) are confirmed beside the generated ones.
    auto open = std::max(0LL, static_cast<long long>(generated.load()) - static_cast<long long>(confirmed + quarantined));
    std::printf("  %ld orders: %llu confirmed, %llu quarantined as poison, "
                "%lld still in the chain at shutdown\n",
                generated.load(), static_cast<unsigned long long>(confirmed),
                static_cast<unsigned long long>(quarantined), open);
  }
  if (!injected.empty())
    std::printf("  faults injected (%s): the orders they hit end on $DLQ, not in the outbox "
                "(`plexus trace` says why)\n", inject_s.c_str());
  if (hosts("send-confirmation")) std::printf("  confirmations in %s\n", outbox_path.c_str());
  return 0;
}
