// SPDX-License-Identifier: Apache-2.0
// The file drop (actors/files): its core without I/O (order, in-flight
// bound, what each confirm code does, retries, moves that find a file
// changed), then the actor on real nodes over a TCP broker: files written
// or moved in are published and moved to done/ or failed/, files present
// at start are picked up, nobody subscribing leaves a file waiting,
// content is inlined up to a limit, bad options are refused.

#define BOOST_TEST_MODULE plexus_files_actor
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include <sodium.h>

#include "drop_core.hpp"
#include "plexus/actors/files.hpp"
#include "plexus/node.hpp"
#include "runtime_helpers.hpp"
#include "waiter.hpp"

using namespace std::chrono_literals;
using namespace plexus;
using namespace plexus::actors;
using namespace plexus::actors::detail;
using plexus::test::read_file;
using plexus::test::confirmed;
using plexus::test::tcp_broker;
using plexus::test::temp_dir;
using plexus::test::waiter;
namespace fs = std::filesystem;

namespace {

void write_file(const fs::path& p, const std::string& content) { std::ofstream{p, std::ios::binary} << content; }

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator{dir})
    if (e.is_regular_file()) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string sha256_hex(const std::string& s) {
  unsigned char d[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(d, reinterpret_cast<const unsigned char*>(s.data()), s.size());
  return to_hex({reinterpret_cast<const char*>(d), sizeof d});
}

/// Waits for a condition on the file system (or anything another thread changes).
template <class Pred>
bool eventually(Pred p, std::chrono::milliseconds deadline = 20s) {
  waiter w;
  return w.until(p, deadline);
}

struct seen_event {
  file_event e;
  std::string msg_id;
  std::string at_path; // what the path held when the handler ran
};

/// What a consumer function got, in order.
class event_log {
public:
  /// A consumer of `topic` in `svc` that records each event and answers `answer`.
  void consume(service& svc, const std::string& topic, result<void> answer = {}) {
    svc.function("take").on(topic).handle([this, answer](const file_event& e, context& ctx) -> result<void> {
      auto at = read_file(e.path);
      w_.update([&] { seen_.push_back({e, std::string{ctx.msg_id()}, at}); });
      return answer;
    });
  }
  bool until(std::size_t n) {
    return w_.until([&] { return seen_.size() >= n; });
  }
  std::vector<seen_event> events() {
    std::lock_guard lock{w_.m};
    return seen_;
  }

private:
  waiter w_;
  std::vector<seen_event> seen_;
};

/// What add_file_drop throws for `o`, and that it added nothing.
std::string refusal(file_drop_options o) {
  service svc{"ingest", {}};
  try {
    add_file_drop(svc, std::move(o));
  } catch (const std::invalid_argument& e) {
    BOOST_TEST(svc.functions().empty());
    return e.what();
  }
  BOOST_FAIL("add_file_drop took the options");
  return {};
}

const drop_clock::time_point t0{};

} // namespace

BOOST_AUTO_TEST_SUITE(files_actor)

BOOST_AUTO_TEST_CASE(the_core_reads_the_oldest_files_first_and_never_more_than_max_in_flight) {
  drop_core core{"in", "files.in", {.max_in_flight = 2}};
  core.listed({{"c", 1, 300}, {"a", 1, 100}, {"b", 1, 200}});
  core.seen("a"); // known: taken once
  auto steps = core.next(t0);
  BOOST_TEST_REQUIRE(steps.size() == 2u);
  BOOST_TEST((steps[0].kind == drop_step::read && steps[0].name == "a"));
  BOOST_TEST((steps[1].kind == drop_step::read && steps[1].name == "b"));
  BOOST_TEST(core.next(t0).empty()); // c waits
  core.read("a", steps[0].token, read_outcome::ok, "payload-a", "base-a", 1, 100);
  core.read("b", steps[1].token, read_outcome::gone); // deleted meanwhile: forgotten
  auto next = core.next(t0);
  BOOST_TEST_REQUIRE(next.size() == 2u);
  BOOST_TEST((next[0].kind == drop_step::publish && next[0].msg_id == "in:base-a"));
  BOOST_TEST(core.payload("a") == "payload-a");
  BOOST_TEST((next[1].kind == drop_step::read && next[1].name == "c"));
  BOOST_TEST((core.confirmed("a", next[0].token, 0, t0).kind == verdict::done));
  auto move = core.next(t0);
  BOOST_TEST_REQUIRE(move.size() == 1u);
  BOOST_TEST((move[0].kind == drop_step::move && move[0].to == destination::done));
  core.seen("a"); // a new file of that name while the old one moves
  core.moved("a", move[0].token, move_outcome::moved, t0);
  BOOST_TEST((core.phase("a") == file_phase::queued));
  BOOST_TEST(!core.phase("b"));
}

BOOST_AUTO_TEST_CASE(the_core_retries_what_may_pass_later_and_fails_what_cannot) {
  drop_core core{"in", "files.in"};
  core.seen("f");
  auto read = core.next(t0);
  core.read("f", read[0].token, read_outcome::ok, "p", "b", 1, 1);
  auto pub = core.next(t0);
  // 101 (nobody subscribes): again after 1 s, 2 s, 4 s, ... 30 s, each attempt its own id.
  std::vector<long> delays;
  auto now = t0;
  for (int i = 0; i < 7; ++i) {
    BOOST_TEST(core.confirmed("f", pub[0].token + 1000, 0, now).kind == verdict::ignored); // a stale token
    auto v = core.confirmed("f", pub[0].token, 101, now);
    BOOST_TEST((v.kind == verdict::retry));
    delays.push_back(static_cast<long>(v.delay.count()));
    BOOST_TEST(core.next(now).empty());
    BOOST_TEST((core.next_wake() == now + v.delay));
    now += v.delay;
    pub = core.next(now);
    BOOST_TEST_REQUIRE(pub.size() == 1u);
    BOOST_TEST(pub[0].msg_id == "in:b#" + std::to_string(i + 2));
  }
  std::vector<long> expect{1000, 2000, 4000, 8000, 16000, 30000, 30000};
  BOOST_TEST(delays == expect, boost::test_tools::per_element());
  BOOST_TEST((core.confirmed("f", pub[0].token, 103, now).kind == verdict::retry)); // overloaded
  core.retry_now(now); // the rescan topic: at once
  pub = core.next(now);
  BOOST_TEST_REQUIRE(pub.size() == 1u);
  BOOST_TEST((core.confirmed("f", pub[0].token, 102, now).kind == verdict::failed));
  auto move = core.next(now);
  BOOST_TEST_REQUIRE(move.size() == 1u);
  BOOST_TEST((move[0].to == destination::failed));
  BOOST_TEST(move[0].reason.starts_with("102 dead_lettered: dead-lettered\n"), move[0].reason);
  BOOST_TEST(move[0].reason.find("msg id: in:b#9") != std::string::npos, move[0].reason);
  // A move that fails waits and is tried again; one that finds the file changed reads it anew.
  core.moved("f", move[0].token, move_outcome::failed, now);
  BOOST_TEST(core.next(now).empty());
  move = core.next(now + 1s);
  BOOST_TEST_REQUIRE(move.size() == 1u);
  core.moved("f", move[0].token, move_outcome::changed, now);
  auto again = core.next(now);
  BOOST_TEST_REQUIRE(again.size() == 1u);
  BOOST_TEST((again[0].kind == drop_step::read));
  // expired (104, no retry helps): failed/.
  core.read("f", again[0].token, read_outcome::ok, "p2", "b2", 2, 2);
  pub = core.next(now);
  BOOST_TEST((core.confirmed("f", pub[0].token, 104, now).kind == verdict::failed));
}

BOOST_AUTO_TEST_CASE(names_and_ids_are_stable_and_say_what_they_are) {
  BOOST_TEST(id_base("a.csv", 5, 7) == id_base("a.csv", 5, 7));
  BOOST_TEST(id_base("a.csv", 5, 7) != id_base("a.csv", 5, 8));
  BOOST_TEST(id_base("a.csv", 5, 7).size() == 32u);
  BOOST_TEST(clash_name("a.csv", 2) == "a.2.csv");
  BOOST_TEST(clash_name("a", 1) == "a.1");
  BOOST_TEST(wanted("a.csv", "*.csv"));
  BOOST_TEST(!wanted("a.txt", "*.csv"));
  BOOST_TEST(!wanted(".a.csv", ""));
  BOOST_TEST(!wanted("a.csv.tmp", ""));
}

BOOST_AUTO_TEST_CASE(a_file_closed_in_the_directory_is_published_and_moved_to_done_once_acked) {
  temp_dir d{"closed"};
  event_log log;
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  auto& svc = n.service("ingest");
  add_file_drop(svc, {.name = "in", .dir = d.str(), .topic = "files.in"});
  log.consume(svc, "files.in");
  n.start();
  write_file(d.path / "a.txt", "hello, drop");
  BOOST_TEST_REQUIRE(log.until(1));
  BOOST_TEST(eventually([&] { return fs::exists(d.path / "done" / "a.txt") && !fs::exists(d.path / "a.txt"); }));
  auto seen = log.events();
  BOOST_TEST(seen.size() == 1u);
  const auto& e = seen[0].e;
  BOOST_TEST(e.name == "a.txt");
  BOOST_TEST(e.path == (d.path / "a.txt").string());
  BOOST_TEST(e.size == 11u);
  BOOST_TEST(e.sha256 == sha256_hex("hello, drop"));
  BOOST_TEST(e.has_content);
  BOOST_TEST(e.content == "hello, drop");
  BOOST_TEST(seen[0].at_path == "hello, drop"); // the file is still there while the handler runs
  BOOST_TEST(seen[0].msg_id == "in:" + id_base("a.txt", e.size, e.mtime_ns));
  BOOST_TEST(read_file(d.path / "done" / "a.txt") == "hello, drop");
  BOOST_TEST(names_in(d.path / "failed").empty());
  BOOST_TEST(plexus::test::stats_of(n, "files-in").live == 1u); // a supervised function
  n.stop();
}

BOOST_AUTO_TEST_CASE(files_there_at_start_go_oldest_first_moved_in_ones_too_and_others_are_ignored) {
  temp_dir d{"start"}, outside{"outside"};
  auto now = fs::file_time_type::clock::now();
  write_file(d.path / "new.csv", "2");
  write_file(d.path / "old.csv", "1");
  fs::last_write_time(d.path / "new.csv", now - 30s);
  fs::last_write_time(d.path / "old.csv", now - 60s);
  for (auto* name : {".hidden.csv", "part.csv.tmp", "notes.txt"}) write_file(d.path / name, "x");
  event_log log;
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  auto& svc = n.service("ingest");
  add_file_drop(svc, {.name = "start", .dir = d.str(), .topic = "files.start", .pattern = "*.csv",
                      .max_in_flight = 1}); // one at a time: the order shows
  log.consume(svc, "files.start");
  n.start();
  BOOST_TEST_REQUIRE(log.until(2));
  // After start: ignored names first, then a file renamed in from elsewhere.
  for (auto* name : {".late.csv", "late.csv.tmp", "late.txt"}) write_file(d.path / name, "y");
  write_file(outside.path / "moved.csv", "3");
  fs::rename(outside.path / "moved.csv", d.path / "moved.csv");
  BOOST_TEST_REQUIRE(log.until(3));
  BOOST_TEST(eventually([&] { return names_in(d.path / "done").size() == 3; }));
  std::vector<std::string> order;
  for (auto& s : log.events()) order.push_back(s.e.name);
  // Events are taken in order (one in flight), an ignored one would have come before moved.csv.
  std::vector<std::string> expect{"old.csv", "new.csv", "moved.csv"};
  BOOST_TEST(order == expect, boost::test_tools::per_element());
  std::vector<std::string> left{".hidden.csv", ".late.csv", "late.csv.tmp", "late.txt", "notes.txt",
                                "part.csv.tmp"};
  BOOST_TEST(names_in(d.path) == left, boost::test_tools::per_element());
  n.stop();
}

BOOST_AUTO_TEST_CASE(a_rejected_file_is_dead_lettered_and_moved_to_failed_with_the_reason) {
  temp_dir d{"rejected"};
  event_log log;
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  auto& svc = n.service("ingest");
  add_file_drop(svc, {.name = "bad", .dir = d.str(), .topic = "files.bad"});
  log.consume(svc, "files.bad", reject{"not a CSV"});
  n.start();
  write_file(d.path / "bad.csv", "garbage");
  auto failed = d.path / "failed";
  BOOST_TEST_REQUIRE(eventually([&] { return fs::exists(failed / "bad.csv.reason"); }));
  BOOST_TEST(read_file(failed / "bad.csv") == "garbage");
  BOOST_TEST(!fs::exists(d.path / "bad.csv"));
  BOOST_TEST(names_in(d.path / "done").empty());
  auto reason = read_file(failed / "bad.csv.reason");
  BOOST_TEST(reason.starts_with("102 dead_lettered: dead-lettered\n"), reason);
  BOOST_TEST(reason.find("topic: files.bad") != std::string::npos, reason);
  BOOST_TEST(log.events().size() == 1u); // rejected: dead-lettered at once, never redelivered
  n.stop();
}

BOOST_AUTO_TEST_CASE(a_file_nobody_subscribes_to_waits_until_a_consumer_comes) {
  temp_dir d{"waiting"};
  event_log log;
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  add_file_drop(n.service("ingest"), {.name = "wait", .dir = d.str(), .topic = "files.wait"});
  n.start();
  write_file(d.path / "w.csv", "waits");
  // Over 2.5 s (the first publish, then retries after 1 s and 2 s) it stays put.
  BOOST_TEST(!eventually([&] {
    return !fs::exists(d.path / "w.csv") || !names_in(d.path / "done").empty() ||
           !names_in(d.path / "failed").empty();
  }, 2500ms));
  node consumer{node_options{.broker = b.endpoint()}};
  log.consume(consumer.service("late"), "files.wait");
  consumer.start();
  BOOST_TEST(confirmed(n.client(), file_drop_rescan_topic("wait"), "") == 0u); // retry now
  BOOST_TEST_REQUIRE(log.until(1));
  BOOST_TEST(eventually([&] { return fs::exists(d.path / "done" / "w.csv") && !fs::exists(d.path / "w.csv"); }));
  auto seen = log.events();
  BOOST_TEST(seen[0].e.content == "waits");
  // Published before (answered 101): this is a later attempt, with an id of its own.
  auto hash = seen[0].msg_id.find('#');
  BOOST_TEST_REQUIRE(hash != std::string::npos, seen[0].msg_id);
  BOOST_TEST(std::stoi(seen[0].msg_id.substr(hash + 1)) >= 2, seen[0].msg_id);
  consumer.stop();
  n.stop();
}

BOOST_AUTO_TEST_CASE(a_file_left_in_the_directory_is_not_delivered_again_after_a_restart) {
  temp_dir d{"restart"};
  event_log log;
  tcp_broker b;
  node consumer{node_options{.broker = b.endpoint()}};
  log.consume(consumer.service("c"), "files.again");
  consumer.start();
  file_drop_options o{.name = "again", .dir = d.str(), .topic = "files.again"};
  {
    node first{node_options{.broker = b.endpoint()}};
    add_file_drop(first.service("ingest"), o);
    first.start();
    write_file(d.path / "r.csv", "once");
    BOOST_TEST_REQUIRE(eventually([&] { return fs::exists(d.path / "done" / "r.csv"); }));
    first.stop();
  }
  // As if the node had died between the ACK and the move: the same file
  // (a rename keeps its mtime) is back when another node starts.
  fs::rename(d.path / "done" / "r.csv", d.path / "r.csv");
  node second{node_options{.broker = b.endpoint()}};
  add_file_drop(second.service("ingest"), o);
  second.start();
  BOOST_TEST(eventually([&] { return fs::exists(d.path / "done" / "r.csv") && !fs::exists(d.path / "r.csv"); }));
  BOOST_TEST(log.events().size() == 1u); // the broker answered the same id with its first outcome
  second.stop();
  consumer.stop();
}

BOOST_AUTO_TEST_CASE(files_dropped_while_the_node_is_down_are_picked_up_after_it_starts) {
  temp_dir d{"down"};
  event_log log;
  tcp_broker b;
  node consumer{node_options{.broker = b.endpoint()}};
  log.consume(consumer.service("c"), "files.down");
  consumer.start();
  file_drop_options o{.name = "down", .dir = d.str(), .topic = "files.down"};
  {
    node first{node_options{.broker = b.endpoint()}};
    add_file_drop(first.service("ingest"), o);
    first.start();
    write_file(d.path / "before.csv", "1");
    BOOST_TEST_REQUIRE(eventually([&] { return fs::exists(d.path / "done" / "before.csv"); }));
    first.stop();
  }
  // Nobody watches the directory now: these wait in it.
  write_file(d.path / "while-1.csv", "2");
  write_file(d.path / "while-2.csv", "3");
  BOOST_TEST(log.events().size() == 1u);
  node second{node_options{.broker = b.endpoint()}};
  add_file_drop(second.service("ingest"), o);
  second.start();
  BOOST_TEST_REQUIRE(log.until(3));
  BOOST_TEST(eventually([&] { return names_in(d.path / "done").size() == 3 && names_in(d.path).empty(); }));
  std::vector<std::string> got;
  for (auto& s : log.events()) got.push_back(s.e.name + "=" + s.at_path);
  std::sort(got.begin(), got.end());
  std::vector<std::string> expect{"before.csv=1", "while-1.csv=2", "while-2.csv=3"};
  BOOST_TEST(got == expect, boost::test_tools::per_element()); // each once, none again
  second.stop();
  consumer.stop();
}

BOOST_AUTO_TEST_CASE(a_file_bigger_than_max_content_is_published_by_path_alone) {
  temp_dir d{"big"};
  event_log log;
  tcp_broker b;
  node n{node_options{.broker = b.endpoint()}};
  auto& svc = n.service("ingest");
  add_file_drop(svc, {.name = "big", .dir = d.str(), .topic = "files.big", .max_content = 16});
  log.consume(svc, "files.big");
  n.start();
  std::string big(1000, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
  write_file(d.path / "big.bin", big);
  write_file(d.path / "edge.bin", std::string(16, 'e')); // exactly the limit: inlined
  BOOST_TEST_REQUIRE(log.until(2));
  for (auto& s : log.events()) {
    BOOST_TEST_CONTEXT(s.e.name) {
      bool is_big = s.e.name == "big.bin";
      BOOST_TEST(s.e.has_content == !is_big);
      BOOST_TEST(s.e.content == (is_big ? std::string{} : std::string(16, 'e')));
      BOOST_TEST(s.e.size == (is_big ? 1000u : 16u));
      BOOST_TEST(s.e.sha256 == sha256_hex(is_big ? big : std::string(16, 'e')));
      BOOST_TEST(s.at_path == (is_big ? big : std::string(16, 'e'))); // readable by path until the ACK
    }
  }
  BOOST_TEST(eventually([&] { return names_in(d.path / "done").size() == 2; }));
  n.stop();
}

BOOST_AUTO_TEST_CASE(bad_options_are_refused_at_add_time_naming_each_one) {
  temp_dir d{"options"};
  write_file(d.path / "plain", "a file, not a directory");
  file_drop_options ok{.name = "x", .dir = (d.path / "drop").string(), .topic = "files.x"};
  auto with = [&](auto change) {
    auto o = ok;
    change(o);
    return refusal(o);
  };
  auto name = with([](auto& o) { o.name = "a/b"; });
  BOOST_TEST(name.find("file drop \"a/b\": name \"a/b\"") == 0u, name);
  auto longer = with([](auto& o) { o.name = std::string(21, 'n'); });
  BOOST_TEST(longer.find("1-20 letters") != std::string::npos, longer);
  auto topic = with([](auto& o) { o.topic = "files..x"; });
  BOOST_TEST(topic.find("topic \"files..x\": ") != std::string::npos, topic);
  auto reserved = with([](auto& o) { o.topic = "$SYS.files"; });
  BOOST_TEST(reserved.find("reserved") != std::string::npos, reserved);
  auto dir = with([&](auto& o) { o.dir = (d.path / "plain" / "sub").string(); });
  BOOST_TEST(dir.find("dir \"" + (d.path / "plain" / "sub").string() + "\": ") != std::string::npos, dir);
  auto content = with([](auto& o) { o.max_content = 2 << 20; });
  BOOST_TEST(content.find("max_content 2097152") != std::string::npos, content);
  // Every problem in one message.
  auto all = with([](auto& o) {
    o.dir = "";
    o.topic = "";
    o.pattern = "a/*.csv";
    o.max_in_flight = 0;
  });
  for (auto* part : {"dir: empty", "topic \"\": ", "pattern \"a/*.csv\"", "max_in_flight 0"})
    BOOST_TEST(all.find(part) != std::string::npos, all);
  // The same options, right, are taken, and the directories made.
  service svc{"ingest", {}};
  BOOST_TEST(add_file_drop(svc, ok).name() == "files-x");
  BOOST_TEST(svc.functions().size() == 1u);
  BOOST_TEST(fs::is_directory(d.path / "drop" / "done"));
  BOOST_TEST(fs::is_directory(d.path / "drop" / "failed"));
}

BOOST_AUTO_TEST_SUITE_END()
