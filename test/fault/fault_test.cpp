// SPDX-License-Identifier: Apache-2.0
// Fault tests on real processes: three plexus-broker processes in a full
// mesh, worker nodes (fault_worker) in one queue group spread over them,
// and a publisher here that asks for confirms. Workers and brokers are
// killed (-9) or stopped (SIGSTOP) mid-stream; the promise checked is the
// one in README: nothing confirmed is lost while the publishing process
// lives. Every id must end up confirmed by the cluster AND written by a
// worker before its ACK; duplicates are allowed (at least once), counted
// and reported.
//
// PLEXUS_FAULT_SCALE=large (the ctest label `fault`) runs the issue's
// scale: 100k messages and a worker killed every 2 s, 10 times.
#define BOOST_TEST_MODULE plexus_fault
#include <boost/test/unit_test.hpp>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <set>

#include "../integration/harness.hpp"

using namespace plexus;
using namespace plexus::itest;
using steady = std::chrono::steady_clock;

namespace {

const std::string worker_bin = PLEXUS_FAULT_WORKER_BIN;

struct scale {
  std::size_t messages;
  int kills;
  milliseconds kill_every;
  double rate; // messages per second offered
  milliseconds deadline;
};

scale current_scale() {
  const char* s = std::getenv("PLEXUS_FAULT_SCALE");
  if (s && std::string_view{s} == "large") return {100000, 10, 2000ms, 4000, 300s};
  return {6000, 3, 700ms, 2500, 90s};
}

/// Three brokers b1, b2, b3 in a full mesh (b2 dials b1; b3 dials both; a
/// link serves both directions), up once b1 sees both peers.
struct cluster {
  cluster() {
    ::setenv("PLEXUS_CLUSTER_SECRET", "fault-suite cluster secret", 1); // every broker inherits it
    b.push_back(std::make_unique<broker_process>(std::vector<std::string>{"--id", "b1"}));
    b.push_back(std::make_unique<broker_process>(
      std::vector<std::string>{"--id", "b2", "--peer", b[0]->endpoint()}));
    b.push_back(std::make_unique<broker_process>(std::vector<std::string>{
      "--id", "b3", "--peer", b[0]->endpoint(), "--peer", b[1]->endpoint()}));
    for (int i = 0; i < 3; ++i) {
      stats_watch w{*b[i], "b" + std::to_string(i + 1)};
      BOOST_REQUIRE_MESSAGE(w.wait_for("peers", [](auto n) { return n == 2; }),
                            "broker b" << i + 1 << " did not link with both peers: " << w.json());
    }
  }
  std::vector<std::unique_ptr<broker_process>> b;
};

/// One fault_worker process on a broker, recording ids into `out`.
class worker {
public:
  worker(const std::string& broker, const std::string& out) {
    spawn_options o;
    o.args = {worker_bin, "--broker", broker, "--out", out, "--work-us", "500"};
    o.out = redirect::pipe;
    proc_ = std::make_unique<child_process>(o);
    auto line = proc_->read_line(default_wait);
    BOOST_REQUIRE_MESSAGE(line && *line == "ready", "fault_worker did not start on " << broker);
  }
  void kill() { proc_->signal(SIGKILL); (void)proc_->wait(default_wait); }

private:
  std::unique_ptr<child_process> proc_;
};

/// Publishes ids 0..n-1 with confirms and keeps each until the cluster
/// confirms it "ok"; any other outcome (peer lost, no interest while
/// workers restart) is published again under a new msg id. The payload is
/// `offset` + id: two publishers with other offsets number their msg ids
/// alike (and share a node id), and each must still see every one of its
/// messages processed.
class publisher {
public:
  publisher(const std::string& broker, std::size_t n, std::size_t offset = 0)
    : confirmed_(n, false), offset_(offset) {
    client_options o;
    o.endpoint = broker;
    o.node_id = "faultpub";
    c_ = std::make_unique<client>(o);
  }

  void publish(std::size_t id) {
    auto attempt = attempts_++;
    publish_options o;
    auto msg_id = "p" + std::to_string(id) + "-" + std::to_string(attempt);
    o.msg_id = msg_id;
    c_->publish_confirmed("fault.work", std::to_string(offset_ + id), [this, id](std::uint32_t code) {
      std::lock_guard lock{m_};
      if (code != 0) {
        ++not_ok_;
        retry_.push_back(id);
      } else if (!confirmed_[id]) {
        confirmed_[id] = true;
        ++done_;
        last_confirm_ = steady::now();
        if (!first_after_kill_ && kill_at_) first_after_kill_ = last_confirm_;
      }
      cv_.notify_all();
    }, o);
  }

  /// Re-publishes what came back not ok; true once everything is confirmed.
  bool settle_until(steady::time_point deadline) {
    for (;;) {
      std::vector<std::size_t> again;
      {
        std::unique_lock lock{m_};
        cv_.wait_until(lock, std::min(deadline, steady::now() + 100ms),
                       [&] { return !retry_.empty() || done_ == confirmed_.size(); });
        if (done_ == confirmed_.size()) return true;
        if (steady::now() >= deadline) return false;
        again.swap(retry_);
      }
      for (auto id : again) publish(id);
    }
  }

  void publish_paced(std::size_t from, std::size_t to, double rate) {
    // Offered load at `rate` msg/s: a load generator's pacing, not a wait
    // for anything.
    auto start = steady::now();
    for (auto id = from; id < to; ++id) {
      if ((id - from) % 50 == 0)
        std::this_thread::sleep_until(start + std::chrono::duration<double>((id - from) / rate));
      publish(id);
    }
  }

  void mark_kill() {
    std::lock_guard lock{m_};
    kill_at_ = steady::now();
    first_after_kill_.reset();
  }
  std::optional<milliseconds> resumed_after_kill() {
    std::lock_guard lock{m_};
    if (!kill_at_ || !first_after_kill_) return std::nullopt;
    return std::chrono::duration_cast<milliseconds>(*first_after_kill_ - *kill_at_);
  }
  std::size_t confirmed() {
    std::lock_guard lock{m_};
    return done_;
  }
  std::size_t not_ok() {
    std::lock_guard lock{m_};
    return not_ok_;
  }
  client_stats stats() const { return c_->stats(); }

private:
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<bool> confirmed_;
  std::size_t offset_ = 0;
  std::size_t done_ = 0, not_ok_ = 0;
  std::atomic<std::size_t> attempts_{0};
  std::vector<std::size_t> retry_;
  steady::time_point last_confirm_{};
  std::optional<steady::time_point> kill_at_, first_after_kill_;
  std::unique_ptr<client> c_; // last: its I/O thread stops before the state above goes
};

/// Worker processes, and the files they record into (a killed worker's
/// file stays: what it processed counts).
struct worker_set {
  std::vector<std::unique_ptr<temp_file>> files;
  std::vector<std::unique_ptr<worker>> procs;
  std::vector<std::string> brokers;

  void start(const std::string& broker) {
    files.push_back(std::make_unique<temp_file>("fault-worker"));
    procs.push_back(std::make_unique<worker>(broker, files.back()->path()));
    brokers.push_back(broker);
  }
  /// kill -9 worker i, and a new process takes its place.
  void replace(std::size_t i) {
    procs[i]->kill();
    files.push_back(std::make_unique<temp_file>("fault-worker"));
    procs[i] = std::make_unique<worker>(brokers[i], files.back()->path());
  }
};

/// Every id the workers wrote, with how many times.
std::map<std::size_t, int> processed(const std::vector<std::unique_ptr<temp_file>>& files) {
  std::map<std::size_t, int> seen;
  for (auto& f : files) {
    std::ifstream in{f->path()};
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) ++seen[std::stoul(line)];
  }
  return seen;
}

void check_none_lost(const std::map<std::size_t, int>& seen, std::size_t n, const char* what) {
  std::size_t missing = 0, dups = 0;
  for (std::size_t id = 0; id < n; ++id) {
    auto it = seen.find(id);
    if (it == seen.end()) ++missing;
    else dups += static_cast<std::size_t>(it->second - 1);
  }
  BOOST_TEST(missing == 0u, what << ": " << missing << " confirmed ids were never processed");
  BOOST_TEST_MESSAGE(what << ": " << n << " ids, 0 lost expected, " << missing << " lost, "
                          << dups << " duplicates (at least once)");
}

} // namespace

BOOST_AUTO_TEST_SUITE(fault)

BOOST_AUTO_TEST_CASE(workers_killed_mid_stream_lose_nothing) {
  auto sc = current_scale();
  cluster cl;
  worker_set workers; // three over b2 and b3; the publisher on b1
  for (int i : {1, 2, 1}) workers.start(cl.b[i]->endpoint());
  publisher pub{cl.b[0]->endpoint(), sc.messages};
  // A second publisher on b3 with the same node id and the same msg ids
  // (its payloads are ids n..2n-1): a confirm 0 for one of its messages
  // that the broker took for the first one's would show as a lost id.
  publisher twin{cl.b[2]->endpoint(), sc.messages, sc.messages};
  auto per_step = static_cast<std::size_t>(sc.rate * sc.kill_every.count() / 1000.0);
  std::size_t sent = 0;
  for (int k = 0; k < sc.kills; ++k) {
    auto next = std::min(sc.messages, sent + per_step);
    pub.publish_paced(sent, next, sc.rate);
    twin.publish_paced(sent, next, sc.rate);
    sent = next;
    workers.replace(static_cast<std::size_t>(k) % workers.procs.size());
  }
  pub.publish_paced(sent, sc.messages, sc.rate);
  twin.publish_paced(sent, sc.messages, sc.rate);
  BOOST_TEST_REQUIRE(pub.settle_until(steady::now() + sc.deadline),
                     "confirmed " << pub.confirmed() << " of " << sc.messages);
  BOOST_TEST_REQUIRE(twin.settle_until(steady::now() + sc.deadline),
                     "the twin: confirmed " << twin.confirmed() << " of " << sc.messages);
  check_none_lost(processed(workers.files), 2 * sc.messages, "worker kills, two publishers");
  std::uint64_t redelivered = 0;
  for (int i = 1; i < 3; ++i) { // what the workers' brokers redelivered
    stats_watch w{*cl.b[i], "b" + std::to_string(i + 1)};
    BOOST_TEST_REQUIRE(w.wait_for("redeliveries", [](auto) { return true; }));
    redelivered += w.counter("redeliveries");
  }
  BOOST_TEST_MESSAGE("kills: " << sc.kills << ", redelivered by the brokers: " << redelivered
                               << ", outcomes not ok (published again): " << pub.not_ok());
}

BOOST_AUTO_TEST_CASE(a_broker_killed_mid_stream_loses_nothing_confirmed) {
  auto sc = current_scale();
  cluster cl;
  worker_set workers;
  for (int i = 0; i < 3; ++i) workers.start(cl.b[i]->endpoint()); // one per broker
  // The publisher's broker is the one that dies: it must fail over.
  publisher pub{cl.b[1]->endpoint(), sc.messages};
  pub.publish_paced(0, sc.messages / 3, sc.rate);
  pub.mark_kill();
  cl.b[1]->process().signal(SIGKILL);
  pub.publish_paced(sc.messages / 3, sc.messages, sc.rate);
  BOOST_TEST_REQUIRE(pub.settle_until(steady::now() + sc.deadline),
                     "confirmed " << pub.confirmed() << " of " << sc.messages);
  check_none_lost(processed(workers.files), sc.messages, "broker kill");
  auto st = pub.stats();
  BOOST_TEST(st.reconnects >= 1u);
  if (auto t = pub.resumed_after_kill())
    BOOST_TEST_MESSAGE("first confirm after the kill: " << t->count() << " ms; re-sent "
                                                        << st.resent);
}

BOOST_AUTO_TEST_CASE(a_broker_stopped_for_5_seconds_loses_nothing) {
  auto sc = current_scale();
  cluster cl;
  worker_set workers;
  for (int i : {0, 2, 2}) workers.start(cl.b[i]->endpoint());
  publisher pub{cl.b[0]->endpoint(), sc.messages};
  pub.publish_paced(0, sc.messages / 2, sc.rate);
  cl.b[2]->process().signal(SIGSTOP);
  auto resume = steady::now() + 5s;
  pub.publish_paced(sc.messages / 2, sc.messages, sc.rate);
  std::this_thread::sleep_until(resume); // the stop lasts 5 s: the scenario, not a wait
  cl.b[2]->process().signal(SIGCONT);
  BOOST_TEST_REQUIRE(pub.settle_until(steady::now() + sc.deadline),
                     "confirmed " << pub.confirmed() << " of " << sc.messages);
  check_none_lost(processed(workers.files), sc.messages, "broker SIGSTOP 5 s");
}

BOOST_AUTO_TEST_CASE(a_durable_queue_s_broker_killed_again_and_again_loses_nothing_confirmed) {
  // One broker keeps the workers' queue "fault" on disk (--store), and is
  // killed -9 and started again on the same port and directory every
  // kill_every while the publisher streams: what it confirmed 0 was on
  // disk, so every confirmed id is processed, whoever was running when.
  auto sc = current_scale();
  temp_dir dir{"plexus-fault-durable"};
  auto config = (dir.path() / "broker.toml").string();
  {
    std::ofstream f{config};
    f << "[[durable]]\nname = \"fault\"\nsubjects = [\"fault.work\"]\n";
    BOOST_TEST_REQUIRE(f.good());
  }
  std::vector<std::string> args{"--id", "d1", "--store", (dir.path() / "store").string(),
                                "--config", config};
  auto b = std::make_unique<broker_process>(args);
  const auto endpoint = b->endpoint();
  worker_set workers;
  for (int i = 0; i < 2; ++i) workers.start(endpoint);
  publisher pub{endpoint, sc.messages};
  auto per_step = static_cast<std::size_t>(sc.rate * sc.kill_every.count() / 1000.0);
  std::size_t sent = 0;
  for (int k = 0; k < sc.kills; ++k) {
    auto next = std::min(sc.messages, sent + per_step);
    pub.publish_paced(sent, next, sc.rate);
    sent = next;
    b->process().signal(SIGKILL);
    (void)b->process().wait(default_wait);
    b = std::make_unique<broker_process>(args, endpoint);
  }
  pub.publish_paced(sent, sc.messages, sc.rate);
  BOOST_TEST_REQUIRE(pub.settle_until(steady::now() + sc.deadline),
                     "confirmed " << pub.confirmed() << " of " << sc.messages);
  // Confirmed is on disk, not necessarily processed yet: the workers drain it.
  std::map<std::size_t, int> seen;
  BOOST_TEST_REQUIRE(poll_until([&] {
    seen = processed(workers.files);
    return seen.size() >= sc.messages;
  }, sc.deadline, 100ms), "processed " << seen.size() << " of " << sc.messages);
  check_none_lost(seen, sc.messages, "durable queue, broker killed -9 again and again");
  auto st = pub.stats();
  BOOST_TEST(st.reconnects >= static_cast<std::uint64_t>(sc.kills));
  BOOST_TEST_MESSAGE("re-sent after reconnects: " << st.resent
                                                  << ", outcomes not ok (published again): " << pub.not_ok());
}

BOOST_AUTO_TEST_SUITE_END()

namespace {

/// Three brokers, each in a network namespace of its own with a veth to a
/// bridge in this namespace (10.77.0.0/24; this process is 10.77.0.254):
/// cutting one veth partitions that broker, with the workers in its
/// namespace, from everyone else. Needs root and `ip` (iproute2).
const std::string ip_bin = "/usr/sbin/ip"; // iproute2; the child spawner takes a path

/// The namespaces and links, removed when it goes (also when building them
/// failed half-way).
struct netns_scope {
  std::string tag = std::to_string(::getpid() % 100000);
  ~netns_scope() {
    for (int i = 1; i <= 3; ++i) {
      auto n = std::to_string(i) + "-" + tag;
      (void)std::system((ip_bin + " link del plxh" + n + " 2>/dev/null").c_str());
      (void)std::system((ip_bin + " netns del plxns" + n + " 2>/dev/null").c_str());
    }
    (void)std::system((ip_bin + " link del plxbr" + tag + " 2>/dev/null").c_str());
  }
};

class netns_cluster {
public:
  netns_cluster() {
    tag_ = scope_.tag;
    run("ip link add plxbr" + tag_ + " type bridge");
    run("ip addr add 10.77.0.254/24 dev plxbr" + tag_);
    run("ip link set plxbr" + tag_ + " up");
    for (int i = 1; i <= 3; ++i) {
      auto ns = name(i), host = "plxh" + std::to_string(i) + "-" + tag_;
      run("ip netns add " + ns);
      run("ip link add " + host + " type veth peer name eth0 netns " + ns);
      run("ip link set " + host + " master plxbr" + tag_ + " up");
      run("ip -n " + ns + " addr add 10.77.0." + std::to_string(i) + "/24 dev eth0");
      run("ip -n " + ns + " link set eth0 up");
      run("ip -n " + ns + " link set lo up");
    }
    ::setenv("PLEXUS_CLUSTER_SECRET", "fault-suite cluster secret", 1); // every broker inherits it
    for (int i = 1; i <= 3; ++i) {
      spawn_options o;
      o.args = {ip_bin, "netns", "exec", name(i), broker_bin, "--id", "b" + std::to_string(i),
                "--listen", endpoint(i), "--log-level", "warn",
                // 10.77.0.i: an address of the test's own namespaces, no one else's
                "--insecure"};
      for (int j = 1; j <= 3; ++j) {
        o.args.push_back("--peer");
        o.args.push_back(endpoint(j));
      }
      o.out = redirect::pipe;
      brokers_.push_back(std::make_unique<child_process>(o));
      auto line = brokers_.back()->read_line(default_wait);
      BOOST_REQUIRE_MESSAGE(line && line->starts_with("listening on"), "broker b" << i << " did not start");
    }
  }
  ~netns_cluster() {
    workers_.clear(); // the processes go before their namespaces
    brokers_.clear();
  }

  [[nodiscard]] static std::string endpoint(int i) {
    return "tcp://10.77.0." + std::to_string(i) + ":7400";
  }
  [[nodiscard]] std::string name(int i) const { return "plxns" + std::to_string(i) + "-" + tag_; }

  /// A worker in broker i's namespace, connected to it.
  void add_worker(int i, const std::string& out) {
    spawn_options o;
    o.args = {ip_bin, "netns", "exec", name(i), worker_bin, "--broker", endpoint(i),
              "--out", out, "--work-us", "500"};
    o.out = redirect::pipe;
    workers_.push_back(std::make_unique<child_process>(o));
    auto line = workers_.back()->read_line(default_wait);
    BOOST_REQUIRE_MESSAGE(line && *line == "ready", "a worker did not start in " << name(i));
  }

  /// Cuts (or heals) broker i's veth: its packets are dropped both ways.
  void cut(int i, bool down) {
    run("ip link set plxh" + std::to_string(i) + "-" + tag_ + (down ? " down" : " up"));
  }

private:
  static void run(const std::string& cmd) {
    auto full = "/usr/sbin/" + cmd;
    BOOST_REQUIRE_MESSAGE(std::system(full.c_str()) == 0, "failed: " << full);
  }
  netns_scope scope_; // first: removed last
  std::string tag_;
  std::vector<std::unique_ptr<child_process>> brokers_, workers_;
};

} // namespace

BOOST_AUTO_TEST_SUITE(partition)

// Run by the ctest entry fault.partition (label fault) only where the
// machine allows: root and `ip netns`; it is skipped elsewhere.
BOOST_AUTO_TEST_CASE(a_broker_partitioned_away_for_5_seconds_loses_nothing) {
  auto sc = current_scale();
  netns_cluster cl;
  std::vector<std::unique_ptr<temp_file>> files;
  for (int i : {2, 3, 3}) {
    files.push_back(std::make_unique<temp_file>("fault-worker"));
    cl.add_worker(i, files.back()->path());
  }
  publisher pub{netns_cluster::endpoint(1), sc.messages};
  pub.publish_paced(0, sc.messages / 2, sc.rate);
  cl.cut(3, true); // b3 and its two workers are cut off from b1 and b2
  auto heal = steady::now() + 5s;
  pub.publish_paced(sc.messages / 2, sc.messages, sc.rate);
  std::this_thread::sleep_until(heal); // the partition lasts 5 s: the scenario, not a wait
  cl.cut(3, false);
  BOOST_TEST_REQUIRE(pub.settle_until(steady::now() + sc.deadline),
                     "confirmed " << pub.confirmed() << " of " << sc.messages);
  check_none_lost(processed(files), sc.messages, "partition 5 s");
}

BOOST_AUTO_TEST_SUITE_END()
