// SPDX-License-Identifier: Apache-2.0
// `plexus dlq` and `plexus queue` as a user runs them, against a real
// plexus-broker with a store and two durables: `orders` (orders.>) and
// `orders-dlq` ($DLQ.orders.>), which keeps what members of `orders`
// dead-letter. A peek leaves the messages where they are; a replay
// publishes them again to their original topic, with their headers and
// trace, and takes them out of the DLQ only once that is confirmed.
#include <cstdlib>
#include <future>
#include <sstream>

#include "harness.hpp"

using namespace plexus::itest;
namespace fs = std::filesystem;
namespace wire = plexus::wire;

namespace {

constexpr std::string_view traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

// A broker keeping `orders` and `orders-dlq` in `dir`, with stats every
// 100 ms (what `plexus queue` reads).
std::unique_ptr<broker_process> orders_broker(const temp_dir& dir) {
  auto config = (dir.path() / "broker.toml").string();
  {
    std::ofstream f{config};
    f << "[[durable]]\nname = \"orders\"\nsubjects = [\"orders.>\"]\n\n"
      << "[[durable]]\nname = \"orders-dlq\"\nsubjects = [\"$DLQ.orders.>\"]\n";
    BOOST_TEST_REQUIRE(f.good());
  }
  return std::make_unique<broker_process>(std::vector<std::string>{
    "--store", (dir.path() / "store").string(), "--config", config, "--stats-interval-ms", "100"});
}

// `plexus ARGS... --broker EP`, to its end.
outcome plexus_cli(const broker_process& b, std::vector<std::string> args) {
  args.insert(args.begin(), cli_bin);
  args.insert(args.end(), {"--broker", b.endpoint()});
  return run(std::move(args));
}

// Publishes and waits for the broker's CONFIRM: its code.
std::uint32_t publish_confirmed(plexus::client& c, const std::string& topic, const std::string& payload,
                                const std::vector<std::pair<std::string_view, std::string_view>>& headers,
                                const std::string& msg_id) {
  std::string packed;
  plexus::publish_options o;
  o.headers = wire::pack_string_map(headers, packed);
  o.msg_id = msg_id;
  o.traceparent = traceparent;
  auto code = std::make_shared<std::promise<std::uint32_t>>();
  auto f = code->get_future();
  c.publish_confirmed(topic, payload, [code](std::uint32_t k) { code->set_value(k); }, o);
  BOOST_TEST_REQUIRE((f.wait_for(default_wait) == std::future_status::ready), "no CONFIRM for " << msg_id);
  return f.get();
}

// The whitespace-separated fields of the line of `table` whose second
// field is `name` (a `plexus queue ls` row); empty when there is none.
std::vector<std::string> row_named(const std::string& table, const std::string& name) {
  std::istringstream lines{table};
  for (std::string line; std::getline(lines, line);) {
    std::istringstream in{line};
    std::vector<std::string> fields;
    for (std::string f; in >> f;) fields.push_back(f);
    if (fields.size() > 1 && fields[1] == name) return fields;
  }
  return {};
}

bool has(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

struct replayed {
  std::string topic, payload, traceparent;
  std::map<std::string, std::string, std::less<>> headers;
};

} // namespace

BOOST_AUTO_TEST_SUITE(dlq_cli)

BOOST_AUTO_TEST_CASE(dlq_ls_lists_dead_letters_and_replay_with_a_filter_sends_one_back_to_its_topic) {
  temp_dir dir{"plexus-dlq-cli"};
  auto broker = orders_broker(dir);

  // A member of `orders` dead-letters each order once, by its payload, and
  // keeps what comes back replayed.
  guarded<int> nacked;
  guarded<std::vector<replayed>> replays;
  auto member = broker->connect("orders-member");
  plexus::subscribe_options so;
  so.queue = "orders";
  so.acked = true;
  so.credit = 16;
  auto* m = member.get();
  member->subscribe("orders.*", [&, m](const plexus::message_view& v) {
    if (!v.headers.find("plexus-replayed-from").empty()) {
      replayed r{std::string{v.topic}, std::string{v.payload}, std::string{v.traceparent}, {}};
      for (auto [k, val] : v.headers.items()) r.headers.emplace(k, val);
      replays.update([&](auto& l) { l.push_back(std::move(r)); });
      m->ack(v.sid, v.seq);
    } else {
      m->nack(v.sid, v.seq, wire::nack_action::dead_letter, 0, v.payload == "order-1" ? "bad sku" : "no stock");
      nacked.update([](int& n) { ++n; });
    }
    m->grant_credit(v.sid, 1);
  }, so);
  sync_with_broker(*member);

  auto publisher = broker->connect("shop");
  BOOST_TEST(publish_confirmed(*publisher, "orders.created", "order-1", {{"tenant", "acme"}}, "o-1") == 0u);
  BOOST_TEST(publish_confirmed(*publisher, "orders.paid", "order-2", {{"tenant", "acme"}}, "o-2") == 0u);
  BOOST_TEST_REQUIRE(nacked.wait_until([](int n) { return n == 2; }), "the member did not get both orders");
  sync_with_broker(*member); // both NACKs handled: both dead letters are in orders-dlq

  auto ls = plexus_cli(*broker, {"dlq", "ls", "orders-dlq"});
  BOOST_TEST(ls.code == 0, "stderr: " << ls.err);
  BOOST_TEST(std::count(ls.out.begin(), ls.out.end(), '\n') == 3, "stdout: " << ls.out); // header + 2
  for (auto part : {"o-1", "o-2", "orders.created", "orders.paid", "bad sku", "no stock"})
    BOOST_TEST(has(ls.out, part), part << " missing from: " << ls.out);

  auto replay = plexus_cli(*broker, {"dlq", "replay", "orders-dlq", "--filter", "bad sku"});
  BOOST_TEST(replay.code == 0, "stderr: " << replay.err);
  BOOST_TEST(has(replay.out, "replayed 1, skipped 1, failed 0"), "stdout: " << replay.out);

  BOOST_TEST_REQUIRE(replays.wait_until([](auto& l) { return !l.empty(); }),
                     "the member of orders did not get the replay");
  auto again = replays.snapshot().front();
  BOOST_TEST(again.topic == "orders.created");
  BOOST_TEST(again.payload == "order-1");
  BOOST_TEST(again.traceparent == traceparent);
  BOOST_TEST(again.headers["plexus-replayed-from"] == "$DLQ.orders.created");
  BOOST_TEST(again.headers["tenant"] == "acme");
  for (auto& [k, v] : again.headers) BOOST_TEST(!k.starts_with("plexus-dlq-"), k << " was replayed");

  // The replayed one was acked; the one the filter skipped is still there.
  auto after = plexus_cli(*broker, {"dlq", "ls", "orders-dlq"});
  BOOST_TEST(after.code == 0, "stderr: " << after.err);
  BOOST_TEST(has(after.out, "no stock"), "stdout: " << after.out);
  BOOST_TEST(!has(after.out, "bad sku"), "stdout: " << after.out);

  auto queues = plexus_cli(*broker, {"queue", "ls", "--wait", "1s"});
  BOOST_TEST(queues.code == 0, "stderr: " << queues.err);
  auto orders = row_named(queues.out, "orders"), dlq = row_named(queues.out, "orders-dlq");
  BOOST_TEST_REQUIRE(orders.size() == 10u, "stdout: " << queues.out); // the bytes take two fields
  BOOST_TEST_REQUIRE(dlq.size() == 10u, "stdout: " << queues.out);
  BOOST_TEST(dlq[2] == "1", "orders-dlq should keep 1 message: " << queues.out);
  BOOST_TEST(orders[6] == "1", "orders should have 1 member: " << queues.out);
}

BOOST_AUTO_TEST_CASE(a_replay_not_confirmed_stays_in_the_dlq_and_exits_1) {
  temp_dir dir{"plexus-dlq-cli"};
  auto broker = orders_broker(dir);
  auto publisher = broker->connect("shop");
  // A dead letter whose original topic nobody subscribes: its replay is
  // confirmed 101 (no interest).
  std::string payload{"\x00\x01" "binary", 8};
  BOOST_TEST(publish_confirmed(*publisher, "$DLQ.orders.lost", payload,
                               {{"tenant", "acme"},
                                {"plexus-dlq-reason", "poison"},
                                {"plexus-dlq-deliveries", "5"},
                                {"plexus-dlq-topic", "nowhere.lost"},
                                {"plexus-dlq-time", "1700000000123456789"}},
                               "p-1")
             == 0u);

  auto show = plexus_cli(*broker, {"dlq", "show", "orders-dlq", "p-1"});
  BOOST_TEST(show.code == 0, "stderr: " << show.err);
  for (auto part : {"  tenant: acme\n", "  plexus-dlq-reason: poison\n", "topic        nowhere.lost\n",
                    "2023-11-14T22:13:20.123Z", "payload (8 bytes)\n", "00000000  00 01 62 69 6e 61 72 79"})
    BOOST_TEST(has(show.out, part), part << " missing from: " << show.out);
  BOOST_TEST(has(show.out, std::string{"traceparent  "} + std::string{traceparent}), "stdout: " << show.out);

  auto missing = plexus_cli(*broker, {"dlq", "show", "orders-dlq", "nope"});
  BOOST_TEST(missing.code == 1);
  BOOST_TEST(has(missing.err, "no message with id 'nope'"), "stderr: " << missing.err);

  auto replay = plexus_cli(*broker, {"dlq", "replay", "orders-dlq"});
  BOOST_TEST(replay.code == 1, "stdout: " << replay.out << " stderr: " << replay.err);
  BOOST_TEST(has(replay.err, "not replayed: p-1 to nowhere.lost: no interest"), "stderr: " << replay.err);
  BOOST_TEST(has(replay.out, "replayed 0, skipped 0, failed 1"), "stdout: " << replay.out);

  auto still = plexus_cli(*broker, {"dlq", "ls", "orders-dlq"});
  BOOST_TEST(still.code == 0, "stderr: " << still.err);
  BOOST_TEST(has(still.out, "p-1"), "the unconfirmed replay left the DLQ: " << still.out);
}

BOOST_AUTO_TEST_CASE(unknown_queues_exit_1_and_bad_durations_exit_2) {
  temp_dir dir{"plexus-dlq-cli"};
  auto broker = orders_broker(dir);

  auto info = plexus_cli(*broker, {"queue", "info", "orders-dlq", "--wait", "500ms"});
  BOOST_TEST(info.code == 0, "stderr: " << info.err);
  BOOST_TEST(has(info.out, "name      orders-dlq\n"), "stdout: " << info.out);
  BOOST_TEST(has(info.out, "restored  0\n"), "stdout: " << info.out);

  auto unknown = plexus_cli(*broker, {"queue", "info", "nope", "--wait", "500ms"});
  BOOST_TEST(unknown.code == 1);
  BOOST_TEST(has(unknown.err, "no durable queue 'nope'"), "stderr: " << unknown.err);
  BOOST_TEST(has(unknown.err, "orders-dlq"), "it should list the durables there are: " << unknown.err);

  auto peek = plexus_cli(*broker, {"dlq", "ls", "nope"});
  BOOST_TEST(peek.code == 1);
  BOOST_TEST(has(peek.err, "no durable queue 'nope'"), "stderr: " << peek.err);

  auto empty = plexus_cli(*broker, {"dlq", "ls", "orders-dlq"});
  BOOST_TEST(empty.code == 0, "stderr: " << empty.err);
  BOOST_TEST(has(empty.out, "no messages in orders-dlq"), "stdout: " << empty.out);

  auto bad = plexus_cli(*broker, {"queue", "ls", "--wait", "2x"});
  BOOST_TEST(bad.code == 2);
  BOOST_TEST(has(bad.err, "bad duration '2x'"), "stderr: " << bad.err);
}

BOOST_AUTO_TEST_SUITE_END()
