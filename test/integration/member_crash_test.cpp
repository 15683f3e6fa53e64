// SPDX-License-Identifier: Apache-2.0
// At least once across a crash: a queue-group member process is killed with
// SIGKILL in the middle of a stream; whatever it had not acked goes to the
// surviving member, and every publisher confirm still says ok.
#include <future>
#include <set>

#include "harness.hpp"

using namespace plexus::itest;

namespace {

std::size_t ids_in(const std::vector<std::string>& lines) {
  std::size_t n = 0;
  for (auto& l : lines) n += l.rfind("id-", 0) == 0;
  return n;
}

enum class failure { killed, hung };

// A `plexus sub --queue g --ack` process and an in-process member share
// 2000 confirmed messages; the process is stopped (SIGSTOP) mid-stream and
// then killed (SIGKILL) or left hung, which only heartbeats reveal.
void lose_a_member_mid_stream(failure how) {
  constexpr std::size_t n = 2000;
  broker_process broker{{"--heartbeat-ms", "200"}};
  // State the clients' handlers use is declared before the clients.
  guarded<std::vector<received>> mine;
  guarded<std::map<std::uint32_t, std::size_t>> confirms; // code -> count

  // The member process: prints each payload, then acks it and grants 1 credit.
  temp_file out{"plexus-itest-member"};
  spawn_options so;
  so.args = {cli_bin, "--broker", broker.endpoint(), "sub", "jobs", "--queue", "g", "--ack", "--raw"};
  so.out = redirect::file;
  so.out_path = out.path();
  child_process child{so};

  // It has joined once a confirmed publish is acked by it (101 = no group yet).
  auto pub = broker.connect("publisher");
  BOOST_REQUIRE_MESSAGE(poll_until([&] {
    auto code = std::make_shared<std::promise<std::uint32_t>>();
    auto f = code->get_future();
    pub->publish_confirmed("jobs", "warmup", [code](std::uint32_t c) { code->set_value(c); });
    if (f.wait_for(default_wait) != std::future_status::ready) return false;
    return f.get() == 0;
  }), "the plexus sub process never joined the group" << (child.running() ? "" : " (it exited)"));

  // The in-process member: acks every message and gives its credit back.
  auto survivor = broker.connect("survivor");
  plexus::subscribe_options o;
  o.queue = "g";
  o.acked = true;
  o.credit = 64;
  plexus::client* sc = survivor.get();
  survivor->subscribe("jobs", [&mine, sc](const plexus::message_view& v) {
    mine.update([&](auto& l) { l.push_back(copy_of(v)); });
    sc->ack(v.sid, v.seq);
    sc->grant_credit(v.sid, 1);
  }, o);
  sync_with_broker(*survivor);

  auto publish = [&](std::size_t from, std::size_t to) {
    for (auto i = from; i < to; ++i)
      pub->publish_confirmed("jobs", "id-" + std::to_string(i), [&confirms](std::uint32_t c) {
        confirms.update([c](auto& m) { ++m[c]; });
      });
  };
  publish(0, n / 2);
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return ids_in(complete_lines(out.path())) >= 10; }),
                        "the member process printed no ids within 10 s");
  // Stopped first, so it surely holds deliveries it has not acked when it dies.
  child.signal(SIGSTOP);
  publish(n / 2, n);
  auto failed_at = std::chrono::steady_clock::now();
  if (how == failure::killed) {
    child.signal(SIGKILL);
    BOOST_REQUIRE_EQUAL(child.wait(default_wait).value_or(-1), 128 + SIGKILL);
  }

  auto confirmed = [](const std::map<std::uint32_t, std::size_t>& m) {
    std::size_t total = 0;
    for (auto& [code, count] : m) total += count;
    return total;
  };
  BOOST_REQUIRE_MESSAGE(confirms.wait_until([&](auto& m) { return confirmed(m) >= n; }, 30s),
                        "only " << confirms.read(confirmed) << " of " << n << " confirms within 30 s");
  BOOST_TEST_MESSAGE("all confirms in " << std::chrono::duration_cast<milliseconds>(
                       std::chrono::steady_clock::now() - failed_at).count() << " ms after the "
                     << (how == failure::killed ? "SIGKILL" : "SIGSTOP"));
  auto codes = confirms.snapshot();
  for (auto& [code, count] : codes)
    BOOST_TEST_MESSAGE("CONFIRM " << code << " (" << plexus::status_text(code) << "): " << count);
  BOOST_TEST(codes[0] == n);

  std::set<std::string> by_child, by_survivor;
  for (auto& l : complete_lines(out.path()))
    if (l.rfind("id-", 0) == 0) by_child.insert(l);
  std::size_t redelivered = 0;
  for (auto& m : mine.snapshot()) {
    if (m.payload.rfind("id-", 0) != 0) continue;
    by_survivor.insert(m.payload);
    redelivered += m.delivery > 1;
  }
  std::size_t lost = 0, duplicates = 0;
  for (std::size_t i = 0; i < n; ++i) {
    auto id = "id-" + std::to_string(i);
    bool a = by_child.contains(id), b = by_survivor.contains(id);
    lost += !a && !b;
    duplicates += a && b;
  }
  BOOST_TEST_MESSAGE("lost member printed " << by_child.size() << ", survivor got "
                     << by_survivor.size() << " (" << redelivered << " redelivered), "
                     << duplicates << " seen by both");
  BOOST_TEST(lost == 0u);
  BOOST_TEST(redelivered > 0u); // the killed member did hold unacked deliveries
  BOOST_TEST(by_child.size() + by_survivor.size() - duplicates == n);
}

} // namespace

BOOST_AUTO_TEST_SUITE(member_crash)

BOOST_AUTO_TEST_CASE(a_member_killed_mid_stream_loses_no_message) {
  lose_a_member_mid_stream(failure::killed);
}

// Its TCP connection stays up: only the broker's heartbeat (200 ms x 3
// here) finds out the member is gone and hands its deliveries on.
BOOST_AUTO_TEST_CASE(a_member_hung_mid_stream_loses_no_message) {
  lose_a_member_mid_stream(failure::hung);
}

BOOST_AUTO_TEST_SUITE_END()
