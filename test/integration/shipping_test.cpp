// SPDX-License-Identifier: Apache-2.0
// samples/shipping split over processes against a real plexus-broker: the
// order generator and each function of the chain in a process of its own.
// Every order that is not poison ends as a confirmation in the outbox and
// every poison one on $DLQ.orders.shipped, also when the create-label
// process is killed mid-stream and replaced (at least once: some orders are
// confirmed twice, none is lost), and on a broker with a store
// (samples/shipping/broker.toml) when the broker is killed -9 with orders
// in flight and started again.
#include <algorithm>
#include <csignal>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "harness.hpp"
#include "plexus/trace.hpp"
#include "plexus/payload.hpp"

using namespace plexus::itest;

namespace {

const std::string shipping_bin = PLEXUS_SHIPPING_BIN;
const std::string shipping_toml = PLEXUS_SHIPPING_TOML; // samples/shipping/broker.toml

// The fields of the sample's order the test looks at (a msgpack map
// converts into a struct with fewer keys).
struct order {
  int id = 0;
  bool poison = false;
  MSGPACK_DEFINE_MAP(id, poison)
};

/// `shipping --broker <broker> --role <role> ...`, its stdout in a file.
class shipping_process {
public:
  shipping_process(const broker_process& b, const std::string& role, std::vector<std::string> extra = {})
    : out_("plexus-itest-shipping-" + role) {
    spawn_options o;
    o.args = {shipping_bin, "--broker", b.endpoint(), "--role", role};
    o.args.insert(o.args.end(), extra.begin(), extra.end());
    o.out = redirect::file;
    o.out_path = out_.path();
    proc_ = std::make_unique<child_process>(o);
  }

  [[nodiscard]] child_process& process() noexcept { return *proc_; }

  /// SIGTERM; the exit code, or -1 when it is still running after 10 s.
  int terminate() {
    proc_->signal(SIGTERM);
    return proc_->wait(default_wait).value_or(-1);
  }

  /// What it printed so far: the live lines, and the summary once it exited.
  [[nodiscard]] std::string output() const {
    std::string all;
    for (auto& l : complete_lines(out_.path())) all += l + "\n";
    return all;
  }

private:
  temp_file out_; // outlives the process, which proc_ kills first
  std::unique_ptr<child_process> proc_;
};

/// How often each order id was confirmed in the outbox.
std::map<int, std::size_t> confirmations(const std::string& outbox) {
  static const std::string marker = "Your order ";
  std::map<int, std::size_t> n;
  for (auto& l : complete_lines(outbox))
    if (auto at = l.find(marker); at != std::string::npos) ++n[std::stoi(l.substr(at + marker.size()))];
  return n;
}

/// A counter from the summary's line for `function`
/// (`<function> ok 270 errors 0 ... quarantined 30`), -1 when there is none.
long long summary_count(const std::string& output, const std::string& function,
                        const std::string& name) {
  auto at = output.find("\nsummary");
  if (at == std::string::npos) return -1;
  std::istringstream in{output.substr(at)};
  for (std::string line; std::getline(in, line);) {
    std::istringstream words{line};
    std::string w;
    if (!(words >> w) || w != function) continue;
    for (std::string key, value; words >> key >> value;)
      if (key == name) return std::stoll(value);
  }
  return -1;
}

/// The generator's line once every one of its --orders was answered
/// (`generator: 270 of 300 orders confirmed (...)`), or "" before.
std::string answered_line(const std::string& output) {
  std::istringstream in{output};
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("generator: ") && line.find(" orders confirmed (") != std::string::npos)
      return line;
  return {};
}

/// A durable queue's counter from a broker's stats JSON
/// (`{"name":"shipping.create-label","messages":3,...}`), if it is there.
std::optional<std::uint64_t> durable_counter(const std::string& json, const std::string& durable,
                                             std::string_view name) {
  auto at = json.find("{\"name\":\"" + durable + "\"");
  if (at == std::string::npos) return std::nullopt;
  auto end = json.find('}', at);
  return json_number(std::string_view{json}.substr(at, end - at), name);
}

constexpr auto chain_deadline = 30s;

/// A broker with a $DLQ watcher, its stats and an outbox, and the three
/// functions of the chain, one process each, joined to their groups (the
/// broker keeps no store: the chain must be subscribed before orders flow).
struct chain {
  broker_process broker{{"--id", "ship", "--stats-interval-ms", "100"}};
  collector dead;
  decltype(broker.connect("")) watcher = broker.connect("dlq-watcher");
  stats_watch stats{broker, "ship"};
  temp_file outbox{"plexus-itest-outbox"};
  shipping_process validate{broker, "validate-address"};
  shipping_process label{broker, "create-label"};
  shipping_process confirm{broker, "send-confirmation", {"--outbox", outbox.path()}};

  chain() {
    watcher->subscribe("$DLQ.>", dead.handler());
    sync_with_broker(*watcher);
    BOOST_REQUIRE_MESSAGE(stats.wait_for("groups", [](std::uint64_t g) { return g >= 3; }),
                          "the three function processes did not join their groups within 10 s");
  }
};

} // namespace

BOOST_AUTO_TEST_SUITE(shipping)

// 300 orders, every 10th poison, through four processes: 270 confirmed,
// 30 quarantined by validate-address, and each process's summary tells
// what that process did and nothing else.
BOOST_FIXTURE_TEST_CASE(every_order_is_confirmed_or_dead_lettered_across_processes, chain) {
  constexpr int n = 300, poison_every = 10;
  shipping_process generator{broker, "generator",
                             {"--orders", std::to_string(n), "--rate", "1000", "--poison-every",
                              std::to_string(poison_every)}};

  std::set<int> expected, poison;
  for (int i = 1; i <= n; ++i) (i % poison_every == 0 ? poison : expected).insert(i);
  auto started = std::chrono::steady_clock::now();
  bool done = poll_until([&] {
    return confirmations(outbox.path()).size() >= expected.size() && dead.size() >= poison.size();
  }, chain_deadline, 20ms);
  BOOST_TEST_MESSAGE("chain done in " << std::chrono::duration_cast<milliseconds>(
                       std::chrono::steady_clock::now() - started).count() << " ms");
  // Not fatal: the comparisons below name the missing orders.
  BOOST_CHECK_MESSAGE(done, "within 30 s: " << confirmations(outbox.path()).size() << " of "
                      << expected.size() << " orders confirmed, " << dead.size() << " of "
                      << poison.size() << " poison orders dead-lettered");

  std::set<int> confirmed;
  for (auto& [id, times] : confirmations(outbox.path())) confirmed.insert(id);
  BOOST_TEST(confirmed == expected, boost::test_tools::per_element());
  std::set<int> dead_ids;
  for (auto& m : dead.messages()) {
    BOOST_TEST(m.topic == "$DLQ.orders.shipped");
    order o;
    BOOST_TEST(!plexus::decode_payload(m.payload, o).has_value());
    dead_ids.insert(o.id);
  }
  BOOST_TEST(dead.size() == poison.size()); // each quarantined once
  BOOST_TEST(dead_ids == poison, boost::test_tools::per_element());
  // Without a store a confirm is end to end: the generator hears 0 once
  // the chain is done with an order, 102 for a quarantined one.
  BOOST_TEST(poll_until([&] { return !answered_line(generator.output()).empty(); }, default_wait, 20ms));
  BOOST_TEST(answered_line(generator.output())
             == "generator: 270 of 300 orders confirmed (0 not delivered, 30 dead-lettered, 0 failed)");

  for (auto* p : {&generator, &validate, &label, &confirm}) BOOST_TEST(p->terminate() == 0);
  auto v = validate.output(), l = label.output(), c = confirm.output(), g = generator.output();
  BOOST_TEST_MESSAGE("validate-address:\n" << v << "create-label:\n" << l
                     << "send-confirmation:\n" << c << "generator:\n" << g);
  const long long ok = std::ssize(expected);
  BOOST_TEST(summary_count(v, "validate-address", "ok") == ok);
  BOOST_TEST(summary_count(v, "validate-address", "quarantined") == std::ssize(poison));
  BOOST_TEST(summary_count(l, "create-label", "ok") == ok);
  BOOST_TEST(summary_count(c, "send-confirmation", "ok") == ok);
  BOOST_TEST(g.find("\n  300 orders generated") != std::string::npos);
  // A process reports only what it hosts.
  BOOST_TEST(v.find("create-label") == std::string::npos);
  BOOST_TEST(l.find("validate-address") == std::string::npos);
  BOOST_TEST(c.find("create-label") == std::string::npos);
  BOOST_TEST(g.find("send-confirmation") == std::string::npos);
}

// A poison order in a reliable chain split over processes costs one
// quarantine: create-label crashes on every 20th order (--inject
// label-crash), validate-address (reliable) hears 102 for what it
// published and is done with the order instead of running it again under
// a new msg id (which got each poison order quarantined up to 5 times).
BOOST_AUTO_TEST_CASE(a_poison_order_in_a_split_reliable_chain_is_quarantined_once) {
  constexpr int n = 100;
  const std::vector<std::string> inject{"--inject", "label-crash", "--inject-every", "20"};
  broker_process broker{{"--id", "ship", "--stats-interval-ms", "100"}};
  collector dead;
  auto watcher = broker.connect("dlq-watcher");
  watcher->subscribe("$DLQ.>", dead.handler());
  sync_with_broker(*watcher);
  stats_watch stats{broker, "ship"};
  temp_file outbox{"plexus-itest-outbox"};
  shipping_process validate{broker, "validate-address", inject};
  shipping_process label{broker, "create-label", inject};
  auto confirm_args = inject;
  confirm_args.insert(confirm_args.end(), {"--outbox", outbox.path()});
  shipping_process confirm{broker, "send-confirmation", confirm_args};
  BOOST_REQUIRE_MESSAGE(stats.wait_for("groups", [](std::uint64_t g) { return g >= 3; }),
                        "the three function processes did not join their groups within 10 s");
  auto gen_args = inject;
  gen_args.insert(gen_args.end(), {"--orders", std::to_string(n), "--rate", "1000"});
  shipping_process generator{broker, "generator", gen_args};
  bool done = poll_until([&] {
    return confirmations(outbox.path()).size() + dead.size() >= std::size_t{n};
  }, chain_deadline, 20ms);
  BOOST_CHECK_MESSAGE(done, "within 30 s: " << confirmations(outbox.path()).size()
                      << " confirmed, " << dead.size() << " dead-lettered of " << n);
  std::set<int> dead_ids;
  for (auto& m : dead.messages()) {
    BOOST_TEST(m.topic == "$DLQ.address.validated");
    order o;
    BOOST_TEST(!plexus::decode_payload(m.payload, o).has_value());
    dead_ids.insert(o.id);
  }
  BOOST_TEST(dead_ids.size() == 5u); // every 20th of 100
  BOOST_TEST(dead.size() == dead_ids.size()); // each quarantined once
  auto seen = confirmations(outbox.path());
  BOOST_TEST(seen.size() + dead_ids.size() == std::size_t{n}); // every order accounted for
  for (auto id : dead_ids) BOOST_TEST(!seen.contains(id));
  for (auto* p : {&generator, &validate, &label, &confirm}) BOOST_TEST(p->terminate() == 0);
  auto v = validate.output(), l = label.output();
  BOOST_TEST_MESSAGE("validate-address:\n" << v << "create-label:\n" << l);
  BOOST_TEST(summary_count(v, "validate-address", "errors") == 0); // never run again
  BOOST_TEST(summary_count(v, "validate-address", "ok") == n);
  BOOST_TEST(summary_count(l, "create-label", "quarantined") == 5);
}

// create-label is replaced mid-stream: a second create-label process joins
// the group, then the first is stopped (SIGSTOP, so it surely holds
// deliveries it has not acked) and killed (SIGKILL). What it held is
// redelivered to its replacement; all 3000 orders are confirmed.
BOOST_FIXTURE_TEST_CASE(a_create_label_process_killed_mid_stream_loses_no_order, chain) {
  auto& first = label; // the create-label that will be killed
  constexpr int n = 3000;
  // The subscriptions so far: the watcher's, the stats watch's, the functions';
  // the generator adds one ($DLQ.> for its live line), the replacement one.
  const auto subscriptions = stats.counter("subscriptions");
  shipping_process generator{broker, "generator", {"--orders", std::to_string(n), "--rate", "1000"}};
  auto confirmed = [&] { return confirmations(outbox.path()).size(); };
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return confirmed() >= 100; }, default_wait, 20ms),
                        "no 100 orders confirmed within 10 s");

  // The replacement joins first: a queue group that loses its last member
  // drops what waits in it, and what validate-address publishes meanwhile
  // has nobody to go to.
  auto subscribed = [&](std::uint64_t more) {
    return stats.wait_for("subscriptions", [&](std::uint64_t s) { return s >= subscriptions + more; });
  };
  BOOST_REQUIRE(subscribed(1)); // the generator's, in since its first order (one connection is FIFO)
  shipping_process replacement{broker, "create-label"};
  BOOST_REQUIRE_MESSAGE(subscribed(2), "the replacement create-label did not subscribe within 10 s");
  first.process().signal(SIGSTOP);
  // More than the replacement's credit (4 instances + 128 prefetch) goes
  // through while the first is stopped: round robin gave it its share.
  auto at_stop = confirmed();
  BOOST_REQUIRE_MESSAGE(at_stop + 500 < std::size_t{n},
                        "the stream had nearly ended when create-label was stopped: make it longer");
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return confirmed() >= at_stop + 300; }, default_wait, 20ms),
                        "the chain stalled with the first create-label stopped");
  first.process().signal(SIGKILL);
  BOOST_REQUIRE_EQUAL(first.process().wait(default_wait).value_or(-1), 128 + SIGKILL);
  auto killed_at = std::chrono::steady_clock::now();

  bool done = poll_until([&] { return confirmed() >= std::size_t{n}; }, chain_deadline, 20ms);
  BOOST_TEST_MESSAGE("all confirmed " << std::chrono::duration_cast<milliseconds>(
                       std::chrono::steady_clock::now() - killed_at).count() << " ms after the kill");
  auto seen = confirmations(outbox.path());
  std::vector<int> lost;
  std::size_t twice = 0;
  for (int i = 1; i <= n; ++i) {
    auto it = seen.find(i);
    if (it == seen.end()) lost.push_back(i);
    else twice += it->second > 1;
  }
  BOOST_TEST_MESSAGE(seen.size() << " orders confirmed, " << twice << " of them more than once");
  BOOST_TEST(done);
  BOOST_TEST(lost.empty(), lost.size() << " orders lost, the first " << (lost.empty() ? 0 : lost.front()));
  BOOST_TEST(seen.size() == std::size_t{n}); // and no id that was never ordered
  // The killed process did hold deliveries: the broker handed them on.
  BOOST_TEST(stats.wait_for("redeliveries", [](std::uint64_t r) { return r > 0; }));
  BOOST_TEST(stats.counter("dead_letters") == 0u);
  BOOST_TEST(dead.size() == 0u);

  for (auto* p : {&generator, &validate, &replacement, &confirm}) BOOST_TEST(p->terminate() == 0);
  auto r = replacement.output();
  BOOST_TEST_MESSAGE("replacement create-label:\n" << r);
  BOOST_TEST(summary_count(r, "create-label", "ok") > 0);
}

// `plexus trace ID` prints a shipping order's trace as a tree: the three
// functions of the chain, each the child of the one before, from the spans
// the node keeps (asked after the fact, not caught live).
BOOST_AUTO_TEST_CASE(plexus_trace_shows_an_order_s_way_through_the_chain) {
  broker_process b{{"--id", "trace", "--stats-interval-ms", "100"}};
  temp_file outbox{"plexus-itest-trace-outbox"};
  auto watcher = b.connect();
  guarded<std::string> trace_id;
  watcher->subscribe("$SYS.trace.>", [&](const plexus::message_view& v) {
    for (auto& s : plexus::decode_spans(v.payload))
      if (s.function == "send-confirmation")
        trace_id.update([&](std::string& id) { if (id.empty()) id = s.trace_id; });
  });
  sync_with_broker(*watcher);
  // The functions first: this broker keeps no store, so it would drop
  // orders published before they joined their groups.
  stats_watch stats{b, "trace"};
  shipping_process functions{b, "functions", {"--trace-sample", "1", "--outbox", outbox.path()}};
  BOOST_REQUIRE_MESSAGE(stats.wait_for("groups", [](std::uint64_t g) { return g >= 3; }),
                        "the three functions did not join their groups within 10 s");
  shipping_process generator{b, "generator", {"--orders", "3"}};
  BOOST_TEST_REQUIRE(trace_id.wait_until([](const std::string& id) { return !id.empty(); }));
  spawn_options o;
  o.args = {cli_bin, "--broker", b.endpoint(), "trace", trace_id.snapshot(), "--wait", "500ms"};
  o.out = redirect::pipe;
  child_process cli{o};
  BOOST_TEST(cli.wait(default_wait).value_or(-1) == 0);
  std::vector<std::string> lines;
  while (auto line = cli.read_line(0ms)) lines.push_back(*line);
  BOOST_TEST_REQUIRE(lines.size() == 3u);
  BOOST_TEST(lines[0].find("ok shipping.validate-address on orders.shipped") == 0u, lines[0]);
  BOOST_TEST(lines[1].find("  ok shipping.create-label on address.validated") == 0u, lines[1]);
  BOOST_TEST(lines[2].find("    ok shipping.send-confirmation on label.created") == 0u, lines[2]);

  // plexus graph: the chain's two hops, from the spans the node keeps.
  auto graph = [&](std::vector<std::string> extra) {
    spawn_options g;
    g.args = {cli_bin, "--broker", b.endpoint(), "graph", "--window", "200ms"};
    g.args.insert(g.args.end(), extra.begin(), extra.end());
    g.out = redirect::pipe;
    child_process p{g};
    BOOST_TEST(p.wait(default_wait).value_or(-1) == 0);
    std::string out;
    while (auto line = p.read_line(0ms)) out += *line + "\n";
    return out;
  };
  auto dot = graph({});
  BOOST_TEST(dot.find("\"shipping.validate-address\" -> \"shipping.create-label\"") != std::string::npos, dot);
  BOOST_TEST(dot.find("\"shipping.create-label\" -> \"shipping.send-confirmation\"") != std::string::npos, dot);
  BOOST_TEST(dot.find("send-confirmation\" -> ") == std::string::npos); // the end of the chain
  auto mermaid = graph({"--format", "mermaid"});
  BOOST_TEST(mermaid.find("flowchart LR") == 0u);
  BOOST_TEST(mermaid.find("[\"shipping.create-label\"]") != std::string::npos, mermaid);
  temp_file png{"plexus-graph.png"};
  (void)graph({"--png", png.path()});
  std::ifstream in{png.path(), std::ios::binary};
  char magic[4] = {};
  in.read(magic, 4);
  BOOST_TEST(std::string(magic + 1, 3) == "PNG"); // Graphviz rendered it

  // plexus top --once: one row per function of the chain, from the node's stats.
  spawn_options t;
  t.args = {cli_bin, "--broker", b.endpoint(), "top", "--once"};
  t.out = redirect::pipe;
  child_process top{t};
  BOOST_TEST(top.wait(default_wait).value_or(-1) == 0);
  std::vector<std::string> rows;
  while (auto line = top.read_line(0ms)) rows.push_back(*line);
  BOOST_TEST_REQUIRE(rows.size() == 4u); // the header and three functions
  BOOST_TEST(rows[0].find("FUNCTION") == 0u);
  BOOST_TEST(rows[1].find("shipping.create-label") == 0u, rows[1]);
  BOOST_TEST(rows[2].find("shipping.send-confirmation") == 0u, rows[2]);
  BOOST_TEST(rows[3].find("shipping.validate-address") == 0u, rows[3]);
  BOOST_TEST(generator.terminate() == 0);
  BOOST_TEST(functions.terminate() == 0);
}

namespace {

/// `plexus trace --count <count> [extra]` against a running sample: the
/// failed spans it printed, one line each, once it exited 0.
std::vector<std::string> traced(const broker_process& b, std::size_t count,
                                std::vector<std::string> extra = {}) {
  spawn_options o;
  o.args = {cli_bin, "--broker", b.endpoint(), "trace", "--count", std::to_string(count)};
  o.args.insert(o.args.end(), extra.begin(), extra.end());
  o.out = redirect::pipe;
  child_process cli{o};
  std::vector<std::string> lines;
  while (lines.size() < count)
    if (auto line = cli.read_line(default_wait)) lines.push_back(*line);
    else break;
  BOOST_TEST(cli.wait(default_wait).value_or(-1) == 0);
  return lines;
}

bool any_line(const std::vector<std::string>& lines, const std::string& starts, const std::string& has) {
  return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) {
    return l.starts_with(starts) && l.find(has) != std::string::npos;
  });
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (auto& l : lines) out += l + "\n";
  return out;
}

} // namespace

// The sample's injected faults, found from the outside: with --inject
// label-crash, `plexus trace` names the crash and where it happened (and
// --zipkin writes the same spans for a collector); with --inject
// no-responders, the request send-confirmation made and its own failure.
BOOST_AUTO_TEST_CASE(plexus_trace_names_the_fault_each_injected_mode_causes) {
  broker_process b;
  temp_file outbox{"plexus-itest-inject-outbox"};
  // Failing orders keep reliable handlers waiting on confirms that do not
  // come: a stop hands those back after a grace (1 s), well within the
  // default 10 s drain timeout that terminate() waits.
  {
    shipping_process sample{b, "all", {"--inject", "label-crash", "--inject-every", "5", "--rate", "100",
                                       "--outbox", outbox.path()}};
    temp_file zipkin{"plexus-itest-zipkin.json"};
    auto lines = traced(b, 3, {"--zipkin", zipkin.path()});
    BOOST_TEST_REQUIRE(lines.size() == 3u, joined(lines));
    BOOST_TEST(any_line(lines, "crash shipping.create-label on address.validated",
                        ": label printer jammed on order "), joined(lines));
    for (auto& l : lines) // only create-label fails: the others are untouched
      BOOST_TEST(l.find(" shipping.create-label on address.validated ") != std::string::npos, l);
    std::ifstream in{zipkin.path()};
    std::string json{std::istreambuf_iterator<char>{in}, {}};
    BOOST_TEST(json.starts_with("[\n{\"traceId\":\""), json);
    BOOST_TEST(json.find("\"name\":\"create-label\"") != std::string::npos, json);
    BOOST_TEST(json.find("\"localEndpoint\":{\"serviceName\":\"shipping\"}") != std::string::npos, json);
    BOOST_TEST(json.find("\"error\":\"label printer jammed on order ") != std::string::npos, json);
    BOOST_TEST(sample.terminate() == 0);
  }
  {
    shipping_process sample{b, "all", {"--inject", "no-responders", "--inject-every", "5", "--rate", "100",
                                       "--outbox", outbox.path()}};
    auto lines = traced(b, 8);
    BOOST_TEST_REQUIRE(lines.size() == 8u, joined(lines));
    BOOST_TEST(any_line(lines, "no_responders request shipping.send-confirmation -> loyalty.points",
                        ": nobody serves loyalty.points"), joined(lines));
    BOOST_TEST(any_line(lines, "no_responders shipping.send-confirmation on label.created",
                        ": nobody serves loyalty.points"), joined(lines));
    BOOST_TEST(sample.terminate() == 0);
  }
}

namespace {

/// The chain on a plexus-broker with a store and samples/shipping/broker.toml
/// (a durable queue per hop), whose broker is killed -9 and started
/// again on the same endpoint and store. validate-address and
/// send-confirmation run from the start; create-label does not.
struct stored_chain {
  static constexpr int n = 1000;
  temp_dir store{"plexus-itest-shipping-store"};
  const std::vector<std::string> broker_args{"--id", "ship", "--stats-interval-ms", "100", "--store",
                                             store.path().string(), "--config", shipping_toml};
  temp_file outbox{"plexus-itest-outbox"};
  std::unique_ptr<broker_process> broker = std::make_unique<broker_process>(broker_args);
  const std::string endpoint = broker->endpoint();
  std::unique_ptr<stats_watch> stats = std::make_unique<stats_watch>(*broker, "ship");
  shipping_process validate{*broker, "validate-address"};
  shipping_process confirm{*broker, "send-confirmation", {"--outbox", outbox.path()}};

  /// A durable queue's counter in the broker's latest stats, 0 before any.
  [[nodiscard]] std::uint64_t durable(const std::string& queue, std::string_view counter) const {
    return durable_counter(stats->json(), queue, counter).value_or(0);
  }

  /// `--role generator --orders n`, until it says every order was
  /// answered: all n confirmed (on disk), none otherwise; then SIGTERM.
  void generate() {
    shipping_process generator{*broker, "generator", {"--orders", std::to_string(n), "--rate", "2000"}};
    BOOST_REQUIRE_MESSAGE(poll_until([&] { return !answered_line(generator.output()).empty(); },
                                     chain_deadline, 20ms),
                          "the generator's orders were not all answered within 30 s:\n"
                            << generator.output());
    BOOST_TEST(answered_line(generator.output())
               == "generator: 1000 of 1000 orders confirmed (0 not delivered, 0 dead-lettered, 0 failed)");
    BOOST_TEST(generator.terminate() == 0);
    auto g = generator.output();
    BOOST_TEST(g.find("\n  orders.shipped: 1000 confirmed, 0 dead-lettered, 0 not delivered (nobody "
                      "took them), 0 failed, 0 unanswered at shutdown\n") != std::string::npos, g);
  }

  /// kill -9, then a new broker on the same endpoint and store; returns
  /// what it restored per queue (validate-address's, create-label's).
  std::pair<std::uint64_t, std::uint64_t> kill_9_and_restart() {
    stats.reset();
    broker->process().signal(SIGKILL);
    BOOST_REQUIRE_EQUAL(broker->process().wait(default_wait).value_or(-1), 128 + SIGKILL);
    broker = std::make_unique<broker_process>(broker_args, endpoint);
    BOOST_REQUIRE_EQUAL(broker->endpoint(), endpoint);
    stats = std::make_unique<stats_watch>(*broker, "ship");
    BOOST_REQUIRE(stats->wait_for("restored", [](std::uint64_t) { return true; }));
    std::pair restored{durable("shipping.validate-address", "restored"),
                       durable("shipping.create-label", "restored")};
    BOOST_TEST_MESSAGE("restored: " << restored.first << " orders for validate-address, "
                       << restored.second << " for create-label");
    // Every order is in one queue or the other: validate-address ACKs an
    // order only once create-label's copy is on disk.
    BOOST_TEST(restored.first + restored.second >= std::uint64_t{n});
    return restored;
  }

  /// Starts create-label and waits until the outbox holds every order;
  /// asserts none is lost (a repeat is allowed: at least once).
  void label_and_count() {
    shipping_process label{*broker, "create-label"};
    bool done = poll_until([&] { return confirmations(outbox.path()).size() >= std::size_t{n}; },
                           chain_deadline, 20ms);
    auto seen = confirmations(outbox.path());
    std::vector<int> lost;
    std::size_t repeats = 0;
    for (int i = 1; i <= n; ++i) {
      auto it = seen.find(i);
      if (it == seen.end()) lost.push_back(i);
      else repeats += it->second - 1;
    }
    BOOST_TEST_MESSAGE(seen.size() << " of " << n << " orders in the outbox after the broker's restart, "
                       << repeats << " repeated confirmations");
    BOOST_TEST(done, "within 30 s: " << seen.size() << " of " << n << " orders confirmed");
    BOOST_TEST(lost.empty(), lost.size() << " orders lost, the first " << (lost.empty() ? 0 : lost.front()));
    BOOST_TEST(seen.size() == std::size_t{n}); // and no id that was never ordered
    BOOST_TEST(stats->counter("dead_letters") == 0u);
    for (auto* p : {&validate, &label, &confirm}) BOOST_TEST(p->terminate() == 0);
    BOOST_TEST_MESSAGE("validate-address:\n" << validate.output() << "create-label:\n"
                       << label.output() << "send-confirmation:\n" << confirm.output());
  }
};

} // namespace

// Issue #19: create-label is not running, the generator's 1000 orders are
// all confirmed (on disk), validate-address passes them on to create-label's
// durable queue, and the broker is killed -9 with them in flight. Started
// again on the same endpoint and store, it gets them back, the function
// processes reconnect by themselves, create-label joins, and every order
// ends in the outbox (at least once: repeats are counted).
BOOST_FIXTURE_TEST_CASE(orders_in_flight_survive_a_kill_9_of_a_broker_with_the_sample_s_store,
                        stored_chain) {
  generate();
  // Orders between two functions when the broker dies: validated, kept
  // for create-label, which never ran (so none is in the outbox yet).
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return durable("shipping.create-label", "messages") > 0; },
                                   default_wait, 20ms),
                        "validate-address passed no order on within 10 s: " << stats->json());
  BOOST_TEST(confirmations(outbox.path()).empty());
  auto restored = kill_9_and_restart();
  BOOST_TEST(restored.second > 0u); // create-label's queue came back with orders
  label_and_count();
}

// Nobody takes orders.shipped and the broker keeps no store: the generator
// publishes each order once, says so once on stderr with what to do, and
// counts the orders as not delivered instead of sending them again.
BOOST_AUTO_TEST_CASE(orders_nobody_takes_are_said_once_and_counted_not_delivered) {
  constexpr int n = 20;
  broker_process broker;
  temp_file out{"plexus-itest-generator-out"}, err{"plexus-itest-generator-err"};
  spawn_options o;
  o.args = {shipping_bin, "--broker", broker.endpoint(), "--role", "generator", "--orders",
            std::to_string(n), "--rate", "1000"};
  o.out = redirect::file;
  o.out_path = out.path();
  o.err = redirect::file;
  o.err_path = err.path();
  child_process generator{o};
  auto output = [&] {
    std::string all;
    for (auto& l : complete_lines(out.path())) all += l + "\n";
    return all;
  };
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return !answered_line(output()).empty(); }, default_wait, 20ms),
                        "the generator's orders were not all answered within 10 s:\n" << output());
  BOOST_TEST(answered_line(output())
             == "generator: 0 of 20 orders confirmed (20 not delivered, 0 dead-lettered, 0 failed)");
  generator.signal(SIGTERM);
  BOOST_TEST(generator.wait(default_wait).value_or(-1) == 0);
  BOOST_TEST(output().find("\n  orders.shipped: 0 confirmed, 0 dead-lettered, 20 not delivered (nobody "
                           "took them), 0 failed, 0 unanswered at shutdown\n") != std::string::npos,
             output());
  auto said = complete_lines(err.path());
  BOOST_TEST_REQUIRE(said.size() == 1u, "stderr:\n" << joined(said));
  BOOST_TEST(said[0].starts_with("generator: order "), said[0]);
  BOOST_TEST(said[0].find("was not delivered") != std::string::npos, said[0]);
  BOOST_TEST(said[0].find("Start the functions first") != std::string::npos, said[0]);
  BOOST_TEST(said[0].find("--config samples/shipping/broker.toml --store") != std::string::npos, said[0]);
}

// The sample's ways in (entry.cpp, plexus::actors): every order through
// the HTTP gateway (--generator http: 202 once validate-address took it),
// a CSV dropped in a directory (its orders reach the outbox, the file goes
// to done/, a file without a good line to failed/), the summary timer.
BOOST_AUTO_TEST_CASE(orders_come_in_over_http_and_in_a_dropped_csv_and_the_summary_fires) {
  constexpr int n = 40;
  temp_dir dir{"plexus-itest-entry"};
  auto drop = dir.path() / "drop";
  std::filesystem::create_directories(drop);
  {
    std::ofstream csv{drop / "orders.csv"};
    csv << "900001,grace,2 Elm St\n900002,alan,3 Oak St\nnot a line\n";
    std::ofstream junk{drop / "junk.csv"};
    junk << "nothing,\n";
  }
  auto outbox = (dir.path() / "outbox.txt").string();
  temp_file out{"plexus-itest-entry-out"}, err{"plexus-itest-entry-err"};
  spawn_options o;
  o.args = {shipping_bin, "--orders", std::to_string(n), "--rate", "200", "--http-port", "0",
            "--generator", "http", "--summary", "@every 1s", "--drop", drop.string(), "--outbox", outbox};
  o.out = redirect::file;
  o.out_path = out.path();
  o.err = redirect::file;
  o.err_path = err.path();
  child_process shipping{o};
  auto output = [&] {
    std::string all;
    for (auto& l : complete_lines(out.path())) all += l + "\n";
    return all;
  };
  auto outbox_has = [&](std::string_view id) {
    std::ifstream in{outbox};
    std::string text{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
    return text.find(std::string{"Your order "} + std::string{id} + " ") != std::string::npos;
  };
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return !answered_line(output()).empty(); }, default_wait, 20ms),
                        "the orders over HTTP were not all answered within 10 s:\n" << output());
  BOOST_TEST(answered_line(output()) == "generator: " + std::to_string(n) + " of " + std::to_string(n)
                                          + " orders confirmed (0 not delivered, 0 dead-lettered, 0 failed)");
  BOOST_TEST(output().find("http: orders in with  curl -X POST localhost:") != std::string::npos, output());
  BOOST_TEST(poll_until([&] { return outbox_has("900001") && outbox_has("900002"); }, default_wait, 20ms),
             "the CSV's orders did not reach the outbox");
  BOOST_TEST(poll_until([&] { return std::filesystem::exists(drop / "done" / "orders.csv"); }, default_wait, 20ms));
  BOOST_TEST(poll_until([&] { return std::filesystem::exists(drop / "failed" / "junk.csv"); }, default_wait, 20ms));
  BOOST_TEST(poll_until([&] { return output().find("summary #1 at ") != std::string::npos; }, default_wait, 20ms),
             output());
  shipping.signal(SIGTERM);
  BOOST_TEST(shipping.wait(default_wait).value_or(-1) == 0);
}

// An --inject mode the sample does not know is refused like a bad role.
BOOST_AUTO_TEST_CASE(an_unknown_inject_mode_is_one_line_on_stderr_and_exit_2) {
  spawn_options o;
  o.args = {shipping_bin, "--broker", "tcp://127.0.0.1:1", "--inject", "label-crash", "--inject",
            "label-fire"};
  o.out = redirect::null;
  o.err = redirect::pipe;
  child_process p{o};
  auto err = p.read_stderr(default_wait);
  BOOST_TEST(p.wait(default_wait).value_or(-1) == 2);
  BOOST_TEST(err.find("--inject") != std::string::npos, err);
  BOOST_TEST(err.find("'label-fire'") != std::string::npos, err);
  BOOST_TEST(std::count(err.begin(), err.end(), '\n') == 1);
}

// A role the sample does not know is one line on stderr and exit code 2,
// before anything connects.
BOOST_AUTO_TEST_CASE(an_unknown_role_is_one_line_on_stderr_and_exit_2) {
  spawn_options o;
  o.args = {shipping_bin, "--broker", "tcp://127.0.0.1:1", "--role", "create-labels"};
  o.out = redirect::null;
  o.err = redirect::pipe;
  child_process p{o};
  auto err = p.read_stderr(default_wait);
  BOOST_TEST(p.wait(default_wait).value_or(-1) == 2);
  BOOST_TEST(err.find("--role") != std::string::npos);
  BOOST_TEST(err.find("create-labels") != std::string::npos);
  BOOST_TEST(std::count(err.begin(), err.end(), '\n') == 1);
}

BOOST_AUTO_TEST_SUITE_END()
