// SPDX-License-Identifier: Apache-2.0
// Durable queues (issue #19): real plexus-broker processes with --store,
// killed with -9 and started again on the same directory. A publish
// confirmed 0 is delivered after the restart whether or not a consumer was
// there; an acked one is not delivered again; limits answer 115; the store
// stays bounded; a torn tail is cut and said; bad configurations are one
// line and a non-zero exit.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <map>
#include <set>

#include "harness.hpp"

using namespace plexus::itest;
namespace fs = std::filesystem;

namespace {

// A case's scratch directory: its store under store/, its files beside.
class store_dir : public temp_dir {
public:
  store_dir() : temp_dir("plexus-durable") {}
  [[nodiscard]] std::string store() const { return (path() / "store").string(); }
};

void write_text(const fs::path& p, std::string_view text) {
  std::ofstream out{p, std::ios::binary | std::ios::trunc};
  out << text;
  BOOST_TEST_REQUIRE(out.good());
}

std::string read_text(const fs::path& p) {
  std::ifstream in{p, std::ios::binary};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

std::string durable_toml(std::string_view name, std::string_view subjects, std::string_view more = {}) {
  return "[[durable]]\nname = \"" + std::string{name} + "\"\nsubjects = " + std::string{subjects}
         + "\n" + std::string{more};
}

// A TCP port free a moment ago, for --metrics-port.
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  BOOST_TEST_REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_TEST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  BOOST_TEST_REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

// GET /metrics over a plain socket: the body, or "" when nothing answered.
std::string get_metrics(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return {};
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string resp;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[8192];
      for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) resp.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  auto body = resp.find("\r\n\r\n");
  return body == std::string::npos ? std::string{} : resp.substr(body + 4);
}

// The value of the first sample of `name` whose labels contain `label`.
std::optional<std::uint64_t> metric(const std::string& text, std::string_view name,
                                    std::string_view label = {}) {
  std::istringstream in{text};
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with(name) || line.size() <= name.size() || line[name.size()] != '{') continue;
    auto close = line.find("} ");
    if (close == std::string::npos) continue;
    if (!label.empty() && line.substr(0, close).find(label) == std::string::npos) continue;
    return std::strtoull(line.c_str() + close + 2, nullptr, 10);
  }
  return std::nullopt;
}

// The bytes of the files in `dir` (the broker may delete one meanwhile).
std::uint64_t dir_bytes(const fs::path& dir) {
  std::uint64_t n = 0;
  for (const auto& e : fs::directory_iterator{dir}) {
    std::error_code ec;
    auto size = fs::file_size(e.path(), ec);
    if (!ec) n += size;
  }
  return n;
}

std::vector<fs::path> segments_in(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator{dir})
    if (e.path().extension() == ".seg") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// A plexus-broker with a store: its output to files (its log lines go to
// stdout after `listening on`, errors to stderr), metrics on a port of its
// own, stats every 100 ms.
class store_broker {
public:
  store_broker(const store_dir& dir, const std::string& config, std::vector<std::string> extra = {},
               const std::string& listen = "tcp://127.0.0.1:*")
    : out_path_((dir.path() / ("broker-" + std::to_string(++starts_) + ".out")).string()),
      err_path_((dir.path() / ("broker-" + std::to_string(starts_) + ".err")).string()),
      metrics_port_(free_port()) {
    spawn_options o;
    o.args = {broker_bin, "--listen", listen, "--log-level", "info",
              "--store", dir.store(), "--config", config, "--metrics-port",
              std::to_string(metrics_port_), "--stats-interval-ms", "100"};
    o.args.insert(o.args.end(), extra.begin(), extra.end());
    o.out = redirect::file;
    o.out_path = out_path_;
    o.err = redirect::file;
    o.err_path = err_path_;
    proc_ = std::make_unique<child_process>(o);
    std::optional<std::string> first;
    BOOST_TEST_REQUIRE(poll_until([&] {
      auto lines = complete_lines(out_path_);
      if (!lines.empty()) first = lines.front();
      return first || !proc_->running();
    }, default_wait, 5ms), "plexus-broker printed nothing within 10 s");
    BOOST_TEST_REQUIRE(first.has_value(), "plexus-broker exited; its log: " << log());
    const std::string prefix = "listening on ";
    BOOST_TEST_REQUIRE(first->starts_with(prefix), "unexpected first line: " << *first);
    endpoint_ = first->substr(prefix.size());
    BOOST_TEST_REQUIRE(poll_until([&] { return !get_metrics(metrics_port_).empty(); }, default_wait, 10ms),
                       "no metrics on port " << metrics_port_);
  }

  /// `retry_unkept` false: a publish's `done` hears 115 instead of the
  /// client sending it again later.
  [[nodiscard]] std::unique_ptr<plexus::client> connect(std::string node_id = {},
                                                        bool retry_unkept = true) const {
    plexus::client_options o;
    o.endpoint = endpoint_;
    o.node_id = std::move(node_id);
    o.connect_timeout = 5s;
    o.retry_unkept = retry_unkept;
    return std::make_unique<plexus::client>(o);
  }

  [[nodiscard]] pid_t pid() const { return proc_->pid(); }
  [[nodiscard]] const std::string& endpoint() const { return endpoint_; }

  void kill9() {
    proc_->signal(SIGKILL);
    BOOST_TEST_REQUIRE(proc_->wait(default_wait).has_value());
  }
  [[nodiscard]] std::optional<int> stop() {
    proc_->signal(SIGTERM);
    return proc_->wait(default_wait);
  }

  [[nodiscard]] std::string metrics() const { return get_metrics(metrics_port_); }
  [[nodiscard]] std::optional<std::uint64_t> metric(std::string_view name,
                                                    std::string_view label = {}) const {
    return ::metric(metrics(), name, label);
  }
  /// Waits until the metric `name` (with `label`) satisfies `pred`.
  template <class Pred>
  [[nodiscard]] bool wait_metric(std::string_view name, Pred&& pred, std::string_view label = {},
                                 milliseconds timeout = default_wait) const {
    return poll_until([&] {
      auto v = metric(name, label);
      return v && pred(*v);
    }, timeout, 20ms);
  }
  [[nodiscard]] std::string log() const { return read_text(out_path_) + read_text(err_path_); }

private:
  static inline int starts_ = 0;
  std::string out_path_, err_path_;
  int metrics_port_;
  std::unique_ptr<child_process> proc_;
  std::string endpoint_;
};

std::string payload_of(std::size_t i, std::size_t size = 0) {
  auto p = "order " + std::to_string(i) + " ";
  while (p.size() < size) p += static_cast<char>('a' + (p.size() + i) % 26);
  return p;
}

// What a consumer received: msg id -> payload, and every delivery.
struct consumed {
  std::map<std::string, std::string> by_id;
  std::size_t deliveries = 0;
};

// An acked member of the durable queue `queue` that acks everything and
// keeps its credit up. Declare `into` before the client.
std::uint32_t consume(plexus::client& c, guarded<consumed>& into, const std::string& pattern,
                      const std::string& queue, std::uint32_t credit = 256) {
  plexus::subscribe_options o;
  o.queue = queue;
  o.acked = true;
  o.credit = credit;
  plexus::client* cp = &c;
  auto sid = c.subscribe(pattern, [&into, cp](const plexus::message_view& v) {
    into.update([&](consumed& s) {
      ++s.deliveries;
      s.by_id.emplace(std::string{v.msg_id}, std::string{v.payload});
    });
    cp->ack(v.sid, v.seq);
    cp->grant_credit(v.sid, 1);
  }, o);
  sync_with_broker(c);
  return sid;
}

// Publishes `n` confirmed messages (msg ids prefix + i) and returns their
// CONFIRM codes once every one came back.
std::map<std::string, std::uint32_t> publish_confirmed(plexus::client& c, const std::string& topic,
                                                       const std::string& prefix, std::size_t n,
                                                       std::size_t size = 0) {
  guarded<std::map<std::string, std::uint32_t>> codes;
  for (std::size_t i = 0; i < n; ++i) {
    auto id = prefix + std::to_string(i);
    plexus::publish_options po;
    po.msg_id = id;
    c.publish_confirmed(topic, payload_of(i, size),
                        [&codes, id](std::uint32_t code) { codes.update([&](auto& m) { m[id] = code; }); },
                        po);
  }
  BOOST_TEST_REQUIRE(codes.wait_until([n](const auto& m) { return m.size() == n; }, 20s),
                     "confirms: " << codes.read([](const auto& m) { return m.size(); }) << " of " << n);
  return codes.snapshot();
}

std::size_t count_code(const std::map<std::string, std::uint32_t>& codes, std::uint32_t code) {
  std::size_t n = 0;
  for (auto& [id, c] : codes) n += c == code;
  return n;
}

constexpr std::string_view live_messages = "plexus_broker_store_live_messages";

} // namespace

BOOST_AUTO_TEST_SUITE(durable)

BOOST_AUTO_TEST_CASE(messages_confirmed_with_no_consumer_survive_kill_9_and_acked_ones_stay_acked) {
  store_dir dir;
  auto config = (dir.path() / "broker.toml").string();
  write_text(config, durable_toml("shipping", "[\"orders.>\"]"));
  constexpr std::size_t n = 500;
  {
    store_broker broker{dir, config};
    auto pub = broker.connect("publisher");
    auto codes = publish_confirmed(*pub, "orders.created", "a-", n);
    BOOST_TEST(count_code(codes, 0) == n, "confirms 0: " << count_code(codes, 0) << " of " << n);
    BOOST_TEST(broker.wait_metric("plexus_broker_durable_stored_total", [](auto v) { return v == n; },
                                  "durable=\"shipping\""));
    BOOST_TEST(broker.wait_metric(live_messages, [](auto v) { return v == n; }));
    broker.kill9();
  }
  {
    store_broker broker{dir, config};
    BOOST_TEST(broker.metric(live_messages).value_or(0) == n);
    guarded<consumed> got;
    auto sub = broker.connect("shipper");
    consume(*sub, got, "orders.>", "shipping");
    BOOST_TEST_REQUIRE(got.wait_until([](const consumed& s) { return s.by_id.size() >= n; }),
                       "received " << got.read([](const consumed& s) { return s.by_id.size(); })
                                   << " of " << n);
    auto s = got.snapshot();
    BOOST_TEST(s.by_id.size() == n);
    for (std::size_t i = 0; i < n; ++i) {
      auto it = s.by_id.find("a-" + std::to_string(i));
      BOOST_TEST_REQUIRE((it != s.by_id.end()), "a-" << i << " was not delivered");
      BOOST_TEST_REQUIRE(it->second == payload_of(i));
    }
    // The acks on disk (the store's ledger counts an ack once it is
    // applied, and it is committed in the same loop pass).
    BOOST_TEST_REQUIRE(broker.wait_metric(live_messages, [](auto v) { return v == 0; }),
                       "the store still keeps " << broker.metric(live_messages).value_or(0));
    BOOST_TEST(broker.metric("plexus_broker_durable_messages", "durable=\"shipping\"").value_or(1) == 0u);
    broker.kill9();
  }
  store_broker broker{dir, config};
  BOOST_TEST(broker.metric(live_messages).value_or(1) == 0u);
  BOOST_TEST(broker.metric("plexus_broker_durable_messages", "durable=\"shipping\"").value_or(1) == 0u);
  guarded<consumed> again;
  auto sub = broker.connect("shipper");
  consume(*sub, again, "orders.>", "shipping");
  sync_with_broker(*sub);
  BOOST_TEST(again.snapshot().deliveries == 0u, "redelivered after their acks were durable");
}

BOOST_AUTO_TEST_CASE(every_publish_confirmed_0_before_a_kill_9_mid_stream_is_delivered_after_restart) {
  store_dir dir;
  auto config = (dir.path() / "broker.toml").string();
  write_text(config, durable_toml("shipping", "[\"orders.>\"]"));
  constexpr std::size_t n = 5000;
  guarded<std::map<std::string, std::uint32_t>> codes;
  std::size_t published = 0;
  {
    store_broker broker{dir, config};
    const auto pid = broker.pid();
    auto pub = broker.connect("publisher");
    // The 1000th confirm kills the broker, from the handler that hears it:
    // mid-stream, whatever the pace.
    std::thread publisher{[&] {
      for (std::size_t i = 0; i < n; ++i) {
        auto id = "b-" + std::to_string(i);
        plexus::publish_options po;
        po.msg_id = id;
        pub->publish_confirmed("orders.created", payload_of(i, 100),
                               [&codes, id, pid](std::uint32_t code) {
                                 codes.update([&](auto& m) {
                                   m.emplace(id, code);
                                   if (m.size() == 1000) ::kill(pid, SIGKILL);
                                 });
                               },
                               po);
      }
    }};
    BOOST_TEST(codes.wait_until([](const auto& m) { return m.size() >= 1000; }, 20s));
    broker.kill9(); // reaps it
    publisher.join();
    published = n;
    pub.reset(); // before the next broker: it would re-send what is unconfirmed
  }
  auto before = codes.snapshot();
  std::set<std::string> confirmed;
  for (auto& [id, code] : before)
    if (code == 0) confirmed.insert(id);
  store_broker broker{dir, config};
  auto recovered = broker.metric(live_messages).value_or(0);
  guarded<consumed> got;
  auto sub = broker.connect("shipper");
  consume(*sub, got, "orders.>", "shipping");
  // Drained: everything recovered delivered and acked.
  BOOST_TEST_REQUIRE(broker.wait_metric(live_messages, [](auto v) { return v == 0; }, {}, 20s),
                     "the store still keeps " << broker.metric(live_messages).value_or(0));
  sync_with_broker(*sub);
  auto s = got.snapshot();
  std::size_t missing = 0;
  for (auto& id : confirmed)
    if (!s.by_id.contains(id)) {
      if (++missing <= 10) BOOST_TEST_MESSAGE("confirmed 0 but not delivered after the restart: " << id);
    }
  for (auto& [id, payload] : s.by_id) {
    auto i = std::stoul(id.substr(2));
    BOOST_TEST_REQUIRE(payload == payload_of(i, 100), "payload of " << id);
  }
  BOOST_TEST_MESSAGE("kill -9 mid-stream: " << published << " published, " << before.size()
                     << " confirms before the kill (" << confirmed.size() << " of them 0), "
                     << recovered << " recovered, " << s.by_id.size() << " delivered after the restart ("
                     << s.deliveries << " deliveries), " << missing << " confirmed but lost");
  BOOST_TEST(confirmed.size() >= 1000u);
  BOOST_TEST(missing == 0u);
  BOOST_TEST(s.by_id.size() == recovered);
}

BOOST_AUTO_TEST_CASE(a_full_durable_answers_115_and_takes_publishes_again_once_members_ack) {
  store_dir dir;
  auto config = (dir.path() / "broker.toml").string();
  write_text(config, durable_toml("shipping", "[\"orders.>\"]", "max_msgs = 10\n"));
  store_broker broker{dir, config};
  auto pub = broker.connect("publisher", false);
  auto codes = publish_confirmed(*pub, "orders.created", "c-", 10);
  BOOST_TEST(count_code(codes, 0) == 10u);
  auto eleventh = publish_confirmed(*pub, "orders.created", "c-11-", 1);
  BOOST_TEST(eleventh.begin()->second == static_cast<std::uint32_t>(plexus::status::full));
  BOOST_TEST(broker.wait_metric("plexus_broker_durable_full_total", [](auto v) { return v == 1; },
                                "durable=\"shipping\""));

  // A member takes 3 and acks them (no more credit): room for 3.
  guarded<consumed> got;
  auto sub = broker.connect("shipper");
  plexus::subscribe_options o;
  o.queue = "shipping";
  o.acked = true;
  o.credit = 3;
  plexus::client* sp = sub.get();
  sub->subscribe("orders.>", [&got, sp](const plexus::message_view& v) {
    got.update([&](consumed& s) { s.by_id.emplace(std::string{v.msg_id}, std::string{v.payload}); });
    sp->ack(v.sid, v.seq);
  }, o);
  BOOST_TEST_REQUIRE(got.wait_until([](const consumed& s) { return s.by_id.size() == 3; }));
  sync_with_broker(*sub); // its acks are in
  auto after = publish_confirmed(*pub, "orders.created", "c-after-", 3);
  BOOST_TEST(count_code(after, 0) == 3u);
  auto over = publish_confirmed(*pub, "orders.created", "c-over-", 1);
  BOOST_TEST(over.begin()->second == static_cast<std::uint32_t>(plexus::status::full));
}

BOOST_AUTO_TEST_CASE(the_store_stays_bounded_while_messages_flow_through_it) {
  store_dir dir;
  auto config = (dir.path() / "broker.toml").string();
  // 64 KiB segments (the key's floor): 20 MB flow through hundreds of them.
  write_text(config, "store_segment_bytes = 65536\n" + durable_toml("shipping", "[\"orders.>\"]"));
  constexpr std::size_t n = 20000;
  store_broker broker{dir, config};
  guarded<consumed> got;
  auto sub = broker.connect("shipper");
  consume(*sub, got, "orders.>", "shipping", 512);
  auto pub = broker.connect("publisher");
  auto codes = publish_confirmed(*pub, "orders.created", "d-", n, 1024);
  BOOST_TEST(count_code(codes, 0) == n);
  BOOST_TEST_REQUIRE(got.wait_until([](const consumed& s) { return s.by_id.size() >= n; }, 20s));
  BOOST_TEST_REQUIRE(broker.wait_metric(live_messages, [](auto v) { return v == 0; }));
  // maintain() runs about once a second: every segment but the head goes.
  const auto store = fs::path{dir.store()};
  bool bounded = poll_until([&] {
    return dir_bytes(store) < (1u << 20) && segments_in(store).size() <= 2;
  }, default_wait, 50ms);
  BOOST_TEST(broker.wait_metric("plexus_broker_store_segments", [](auto v) { return v <= 2; }));
  auto bytes = dir_bytes(store);
  auto segs = broker.metric("plexus_broker_store_segments").value_or(999);
  BOOST_TEST_MESSAGE("bounded store: " << n << " x 1 KiB through 64 KiB segments; at the end "
                     << bytes << " bytes on disk, " << segs << " segment(s), "
                     << broker.metric("plexus_broker_store_commits_total").value_or(0) << " commits, "
                     << broker.metric("plexus_broker_store_fsyncs_total").value_or(0) << " fsyncs");
  BOOST_TEST(bounded, "the store holds " << bytes << " bytes in " << segments_in(store).size()
                                         << " segment file(s)");
  BOOST_TEST(bytes < (1u << 20));
  BOOST_TEST(segs <= 2u);
}

// Each policy confirms only what is on disk: `always` syncs every message,
// `interval:N` wakes the loop for its commit with nothing else to do.
BOOST_AUTO_TEST_CASE(every_sync_policy_confirms_what_survives_kill_9) {
  for (std::string policy : {"always", "interval:20", "batch"}) {
    BOOST_TEST_CONTEXT("--store-sync " << policy) {
      store_dir dir;
      auto config = (dir.path() / "broker.toml").string();
      write_text(config, durable_toml("shipping", "[\"orders.>\"]"));
      constexpr std::size_t n = 200;
      {
        store_broker broker{dir, config, {"--store-sync", policy}};
        auto pub = broker.connect("publisher");
        auto codes = publish_confirmed(*pub, "orders.created", "p-", n);
        BOOST_TEST(count_code(codes, 0) == n);
        BOOST_TEST(broker.wait_metric("plexus_broker_store_commits_total", [&](auto v) {
          return policy == "always" ? v >= n : v >= 1;
        }), "commits: " << broker.metric("plexus_broker_store_commits_total").value_or(0));
        broker.kill9();
      }
      store_broker broker{dir, config};
      BOOST_TEST(broker.metric(live_messages).value_or(0) == n);
    }
  }
}

BOOST_AUTO_TEST_CASE(garbage_after_the_last_record_is_cut_and_said_and_every_message_delivered) {
  store_dir dir;
  auto config = (dir.path() / "broker.toml").string();
  write_text(config, durable_toml("shipping", "[\"orders.>\"]"));
  constexpr std::size_t n = 100;
  {
    store_broker broker{dir, config};
    auto pub = broker.connect("publisher");
    auto codes = publish_confirmed(*pub, "orders.created", "e-", n);
    BOOST_TEST(count_code(codes, 0) == n);
    pub.reset();
    BOOST_TEST(broker.stop().value_or(-1) == 0, "a clean stop; log: " << broker.log());
  }
  auto segs = segments_in(dir.store());
  BOOST_TEST_REQUIRE(!segs.empty());
  {
    std::ofstream out{segs.back(), std::ios::binary | std::ios::app};
    out << std::string(100, '\xab');
  }
  store_broker broker{dir, config};
  auto log = broker.log();
  BOOST_TEST(log.find(segs.back().filename().string()) != std::string::npos, "log: " << log);
  BOOST_TEST(log.find("torn tail") != std::string::npos, "log: " << log);
  BOOST_TEST(log.find("cut 100 bytes") != std::string::npos, "log: " << log);
  BOOST_TEST(broker.metric("plexus_broker_store_torn_tails_cut_total").value_or(0) == 1u);
  BOOST_TEST(fs::file_size(segs.back()) > 0u);
  guarded<consumed> got;
  auto sub = broker.connect("shipper");
  consume(*sub, got, "orders.>", "shipping");
  BOOST_TEST_REQUIRE(got.wait_until([](const consumed& s) { return s.by_id.size() >= n; }));
  BOOST_TEST_REQUIRE(broker.wait_metric(live_messages, [](auto v) { return v == 0; }));
  sync_with_broker(*sub);
  auto s = got.snapshot();
  BOOST_TEST(s.deliveries == n);
  BOOST_TEST(s.by_id.size() == n);
  for (std::size_t i = 0; i < n; ++i) {
    auto it = s.by_id.find("e-" + std::to_string(i));
    BOOST_TEST_REQUIRE((it != s.by_id.end()), "e-" << i << " was not delivered");
    BOOST_TEST(it->second == payload_of(i));
  }
}

BOOST_AUTO_TEST_CASE(while_the_home_broker_is_down_publishes_elsewhere_wait_in_the_outbox_and_are_kept_when_it_returns) {
  // A cluster of two sharing one configuration: "shipping" lives on a.
  store_dir dir_a, dir_b;
  auto config = (dir_a.path() / "cluster.toml").string();
  write_text(config, durable_toml("shipping", "[\"orders.>\"]", "home = \"a\"\n"));
  auto secret = (dir_a.path() / "secret").string();
  write_text(secret, "the durable suite's cluster secret\n");
  auto a_endpoint = "tcp://127.0.0.1:" + std::to_string(free_port()); // a comes back on it
  std::vector<std::string> common{"--cluster-secret-file", secret};
  auto args = [&](std::vector<std::string> more) {
    more.insert(more.end(), common.begin(), common.end());
    return more;
  };
  auto a = std::make_unique<store_broker>(dir_a, config, args({"--id", "a"}), a_endpoint);
  store_broker b{dir_b, config, args({"--id", "b", "--peer", a_endpoint})};
  BOOST_TEST_REQUIRE(b.wait_metric("plexus_broker_peers", [](auto v) { return v == 1; }));
  a->kill9();
  BOOST_TEST_REQUIRE(b.wait_metric("plexus_broker_peers", [](auto v) { return v == 0; }));

  constexpr std::size_t n = 50;
  auto pub = b.connect("publisher");
  guarded<std::map<std::string, std::uint32_t>> codes;
  for (std::size_t i = 0; i < n; ++i) {
    auto id = "h-" + std::to_string(i);
    plexus::publish_options po;
    po.msg_id = id;
    pub->publish_confirmed("orders.created", payload_of(i),
                           [&codes, id](std::uint32_t code) {
                             codes.update([&](auto& m) { m[id] = code; });
                           }, po);
  }
  // b answered every one 116 (at least once); none is settled: each waits
  // in the publisher's outbox, sent again with backoff.
  BOOST_TEST_REQUIRE(b.wait_metric("plexus_broker_durable_unreachable_total",
                                   [](auto v) { return v >= n; }));
  BOOST_TEST(codes.snapshot().empty(), codes.snapshot().size() << " publish(es) settled while the home was down");
  BOOST_TEST(pub->stats().unkept_retries > 0u);

  a = std::make_unique<store_broker>(dir_a, config, args({"--id", "a"}), a_endpoint);
  BOOST_TEST_REQUIRE(codes.wait_until([](const auto& m) { return m.size() == n; }, 20s),
                     "confirms after the home returned: "
                       << codes.read([](const auto& m) { return m.size(); }) << " of " << n);
  BOOST_TEST(count_code(codes.snapshot(), 0) == n);
  guarded<consumed> got;
  auto sub = a->connect("shipper");
  consume(*sub, got, "orders.>", "shipping");
  BOOST_TEST_REQUIRE(got.wait_until([](const consumed& s) { return s.by_id.size() >= n; }),
                     "received " << got.read([](const consumed& s) { return s.by_id.size(); }) << " of " << n);
  auto s = got.snapshot();
  for (std::size_t i = 0; i < n; ++i)
    BOOST_TEST(s.by_id.contains("h-" + std::to_string(i)), "h-" << i << " was not kept");
}

BOOST_AUTO_TEST_CASE(a_queue_added_with_the_cli_keeps_messages_across_kill_9_and_rm_drops_it) {
  store_dir dir;
  auto config = (dir.path() / "broker.toml").string();
  write_text(config, ""); // no [[durable]]: declared at run time only
  auto cli = [](const store_broker& b, std::vector<std::string> args) {
    args.insert(args.begin(), cli_bin);
    args.insert(args.end(), {"--broker", b.endpoint()});
    return run(std::move(args));
  };
  constexpr std::size_t n = 200;
  {
    store_broker broker{dir, config};
    auto add = cli(broker, {"queue", "add", "billing", "--subject", "invoices.>", "--max-msgs", "1000"});
    BOOST_TEST_REQUIRE(add.code == 0, add.err);
    BOOST_TEST(add.out.find("durable queue 'billing' on broker") != std::string::npos, add.out);
    BOOST_TEST(add.out.find(": created") != std::string::npos, add.out);
    auto again = cli(broker, {"queue", "add", "billing", "--subject", "invoices.>"});
    BOOST_TEST(again.out.find(": exists") != std::string::npos, again.out);
    auto other = cli(broker, {"queue", "add", "billing", "--subject", "refunds.>"});
    BOOST_TEST(other.code == 1);
    BOOST_TEST(other.err.find("exists with other subjects") != std::string::npos, other.err);
    auto pub = broker.connect("publisher");
    auto codes = publish_confirmed(*pub, "invoices.eu", "i-", n);
    BOOST_TEST(count_code(codes, 0) == n);
    broker.kill9();
  }
  store_broker broker{dir, config};
  // The declaration and its messages came back.
  BOOST_TEST(broker.wait_metric("plexus_broker_durable_messages", [](auto v) { return v == n; },
                                "durable=\"billing\""));
  auto info = cli(broker, {"queue", "info", "billing"});
  BOOST_TEST(info.code == 0, info.err);
  BOOST_TEST(info.out.find("declared  runtime") != std::string::npos, info.out);
  BOOST_TEST(info.out.find("subjects  invoices.>") != std::string::npos, info.out);
  BOOST_TEST(info.out.find("max_msgs  1000") != std::string::npos, info.out);
  {
    guarded<consumed> got;
    auto sub = broker.connect("biller");
    auto sid = consume(*sub, got, "invoices.>", "billing", 8);
    BOOST_TEST_REQUIRE(got.wait_until([](const consumed& c) { return c.by_id.size() >= 10; }));
    auto busy = cli(broker, {"queue", "rm", "billing"});
    BOOST_TEST(busy.code == 1);
    BOOST_TEST(busy.err.find("member(s) subscribed: stop them first") != std::string::npos, busy.err);
    sub->unsubscribe(sid);
    sync_with_broker(*sub);
  }
  auto rm = cli(broker, {"queue", "rm", "billing"});
  BOOST_TEST(rm.code == 0, rm.err);
  BOOST_TEST(rm.out.find(": removed, ") != std::string::npos, rm.out);
  BOOST_TEST_REQUIRE(broker.wait_metric(live_messages, [](auto v) { return v == 0; }),
                     "the store still keeps " << broker.metric(live_messages).value_or(0));
  broker.kill9();
  store_broker after{dir, config}; // nothing comes back
  BOOST_TEST(after.metric(live_messages).value_or(1) == 0u);
  auto ls = cli(after, {"queue", "ls", "--wait", "500ms"});
  BOOST_TEST(ls.out.find("no durable queues") != std::string::npos, ls.out);
}

BOOST_AUTO_TEST_CASE(bad_durable_configurations_are_one_line_and_exit_2) {
  store_dir dir;
  auto config = (dir.path() / "broker.toml").string();
  auto broker = [&](std::vector<std::string> extra) {
    std::vector<std::string> args{broker_bin, "--listen", "tcp://127.0.0.1:*", "--config", config};
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  };
  auto one_line_exit_2 = [](const outcome& r, std::string_view says) {
    BOOST_TEST(r.code == 2, "stderr: " << r.err);
    BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, "stderr: " << r.err);
    BOOST_TEST(r.err.find(says) != std::string::npos, "stderr: " << r.err << " (expected: " << says << ")");
  };
  write_text(config, durable_toml("shipping", "[\"orders.>\"]"));
  one_line_exit_2(broker({}), "durable queues need --store DIR");
  one_line_exit_2(broker({"--store", dir.store(), "--store-sync", "sometimes"}),
                  "--store-sync: expected always, batch or interval:N");
  one_line_exit_2(broker({"--store", dir.store(), "--store-sync", "interval:0"}), "--store-sync");

  write_text(config, durable_toml("shipping", "[\"orders.>\"]", "max_age = 5\n"));
  one_line_exit_2(broker({"--store", dir.store()}), "durable[0] 'shipping': unknown key 'max_age'");
  write_text(config, "[[durable]]\nsubjects = [\"a\"]\n");
  one_line_exit_2(broker({"--store", dir.store()}), "durable[0]: no 'name'");
  write_text(config, durable_toml("shipping", "[]"));
  one_line_exit_2(broker({"--store", dir.store()}), "durable[0] 'shipping': subjects must not be empty");
  write_text(config, durable_toml("shipping", "\"orders.>\""));
  one_line_exit_2(broker({"--store", dir.store()}), "subjects must be an array of strings");
  write_text(config, durable_toml("shipping", "[\"orders.>\"]", "max_msgs = \"ten\"\n"));
  one_line_exit_2(broker({"--store", dir.store()}), "max_msgs must be a whole number");
  // The core's own checks, before the broker starts.
  write_text(config, durable_toml("shipping", "[\"orders..x\"]"));
  one_line_exit_2(broker({"--store", dir.store()}), "subject 'orders..x'");
  write_text(config, durable_toml("shipping", "[\"a\"]") + durable_toml("shipping", "[\"b\"]"));
  one_line_exit_2(broker({"--store", dir.store()}), "'shipping' is declared twice");
  // --check says the same, and shows the queue when it is good.
  write_text(config, durable_toml("shipping", "[\"orders.>\"]", "max_msgs = 10\n"));
  auto ok = broker({"--store", dir.store(), "--store-sync", "interval:5", "--check"});
  BOOST_TEST(ok.code == 0, "stderr: " << ok.err);
  BOOST_TEST(ok.out.find("store_sync = interval:5\n") != std::string::npos, ok.out);
  BOOST_TEST(ok.out.find("store_segment_bytes = 67108864\n") != std::string::npos, ok.out);
  BOOST_TEST(ok.out.find("durable = shipping (subjects orders.>; max_msgs 10;") != std::string::npos, ok.out);
  BOOST_TEST(!fs::exists(dir.store()), "--check created the store");
}

BOOST_AUTO_TEST_CASE(a_second_broker_on_the_same_store_is_refused_naming_the_lock) {
  store_dir dir;
  auto config = (dir.path() / "broker.toml").string();
  write_text(config, durable_toml("shipping", "[\"orders.>\"]"));
  store_broker first{dir, config};
  auto r = run({broker_bin, "--listen", "tcp://127.0.0.1:*", "--store", dir.store(), "--config", config});
  BOOST_TEST(r.code != 0);
  BOOST_TEST(r.out.find("listening on") == std::string::npos, "it listened: " << r.out);
  BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, "stderr: " << r.err);
  BOOST_TEST(r.err.find((fs::path{dir.store()} / "LOCK").string() + " is locked") != std::string::npos,
             "stderr: " << r.err);
  // The first still serves.
  auto c = first.connect();
  sync_with_broker(*c);
}

BOOST_AUTO_TEST_SUITE_END()
