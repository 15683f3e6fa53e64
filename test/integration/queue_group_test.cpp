// SPDX-License-Identifier: Apache-2.0
// A queue group shares a stream among its members, fairly, and never gives a
// member more than the credit it granted.
#include <algorithm>
#include <deque>
#include <set>

#include "harness.hpp"

using namespace plexus::itest;

namespace {

struct member_state {
  std::deque<std::pair<std::uint32_t, std::string>> todo; // (sid, payload)
  std::vector<std::string> done;
  std::uint32_t outstanding = 0, max_outstanding = 0;
  bool stop = false;
};

// One group member: the handler (on the client's I/O thread) only queues;
// a worker processes and gives one credit back per message, so the member
// really has messages outstanding and the broker must hold the rest back.
class member {
public:
  /// `progress` (optional) counts messages processed and credited, over
  /// all members.
  member(const broker_process& b, std::string queue, std::uint32_t credit,
         guarded<std::size_t>* progress = nullptr)
    : progress_(progress) {
    client_ = b.connect();
    plexus::subscribe_options o;
    o.queue = std::move(queue);
    o.credit = credit;
    client_->subscribe("jobs.>", [this](const plexus::message_view& v) {
      state_.update([&](member_state& s) {
        s.todo.emplace_back(v.sid, std::string{v.payload});
        s.max_outstanding = std::max(s.max_outstanding, ++s.outstanding);
      });
    }, o);
    sync_with_broker(*client_);
    worker_ = std::thread([this] { work(); });
  }
  ~member() {
    state_.update([](member_state& s) { s.stop = true; });
    worker_.join();
    client_.reset(); // no handler runs after this
  }
  member(const member&) = delete;
  member& operator=(const member&) = delete;

  [[nodiscard]] member_state state() const { return state_.snapshot(); }
  [[nodiscard]] std::size_t processed() const {
    return state_.read([](const member_state& s) { return s.done.size(); });
  }

private:
  void work() {
    for (;;) {
      if (!state_.wait_until([](const member_state& s) { return s.stop || !s.todo.empty(); }, 60s))
        return;
      std::uint32_t sid = 0;
      bool stop = false;
      state_.update([&](member_state& s) {
        stop = s.stop;
        if (stop || s.todo.empty()) return;
        sid = s.todo.front().first;
        s.done.push_back(std::move(s.todo.front().second));
        s.todo.pop_front();
        --s.outstanding; // counted before the credit leaves
      });
      if (stop) return;
      client_->grant_credit(sid, 1);
      if (progress_) progress_->update([](std::size_t& n) { ++n; });
    }
  }

  guarded<std::size_t>* progress_;
  guarded<member_state> state_;
  std::unique_ptr<plexus::client> client_;
  std::thread worker_;
};

// Checks the members' shares, their credit bound, and that every id came
// exactly once over the whole group.
void check_group(const std::vector<std::unique_ptr<member>>& group, std::size_t total,
                 std::uint32_t credit, double tolerance) {
  std::multiset<std::string> seen;
  const double fair = static_cast<double>(total) / static_cast<double>(group.size());
  for (std::size_t i = 0; i < group.size(); ++i) {
    auto s = group[i]->state();
    BOOST_TEST_MESSAGE("member " << i << ": " << s.done.size() << " messages, max outstanding "
                                 << s.max_outstanding << " (credit " << credit << ")");
    BOOST_TEST(s.max_outstanding <= credit, "member " << i << " had " << s.max_outstanding
                                            << " outstanding with credit " << credit);
    BOOST_TEST(static_cast<double>(s.done.size()) >= fair * (1 - tolerance), "member " << i);
    BOOST_TEST(static_cast<double>(s.done.size()) <= fair * (1 + tolerance), "member " << i);
    seen.insert(s.done.begin(), s.done.end());
  }
  BOOST_REQUIRE_EQUAL(seen.size(), total);
  for (std::size_t i = 0; i < total; ++i) BOOST_REQUIRE_EQUAL(seen.count(std::to_string(i)), 1u);
}

/// A broker and three members of "workers", each with `credit`.
struct three_members {
  broker_process broker;
  guarded<std::size_t> progress;
  std::vector<std::unique_ptr<member>> group;
  explicit three_members(std::uint32_t credit) {
    for (std::size_t i = 0; i < 3; ++i)
      group.push_back(std::make_unique<member>(broker, "workers", credit, &progress));
  }
};

} // namespace

BOOST_AUTO_TEST_SUITE(queue_group)


BOOST_AUTO_TEST_CASE(a_queue_group_spreads_messages_fairly_over_its_members) {
  constexpr std::uint32_t credit = 8;
  constexpr std::size_t total = 10000;
  three_members f{credit};
  auto& [broker, progress, group] = f;

  // Windows of `credit` messages, each processed before the next: a member
  // then always has credit for its turn (at most 3 per window, at most 3
  // credits still on their way), so the shares show the broker's round
  // robin and not how the OS scheduled the members' threads. A broker that
  // favoured one member would give it up to all 8 of every window.
  auto pub = broker.connect();
  for (std::size_t i = 0; i < total;) {
    auto end = std::min(total, i + credit);
    for (; i < end; ++i) pub->publish("jobs.resize", std::to_string(i));
    BOOST_REQUIRE_MESSAGE(progress.wait_until([end](std::size_t n) { return n >= end; }),
                          "the group processed " << progress.snapshot() << " of " << end
                                                 << " within 10 s");
  }
  check_group(group, total, credit, 0.10);
}

BOOST_AUTO_TEST_CASE(a_queue_group_member_never_holds_more_than_its_credit) {
  constexpr std::uint32_t credit = 8;
  constexpr std::size_t total = 10000;
  three_members f{credit};
  auto& [broker, progress, group] = f;

  // All at once: the group queue holds the backlog and each member gets a
  // message only for a credit it gave back. Shares follow how fast each
  // member returns credit (on a loaded 2-core machine as uneven as
  // 176/1408/8416), so they are only required to be non-zero here.
  auto pub = broker.connect();
  for (std::size_t i = 0; i < total; ++i) pub->publish("jobs.resize", std::to_string(i));
  BOOST_REQUIRE_MESSAGE(progress.wait_until([](std::size_t n) { return n >= total; }, 30s),
                        "the group processed " << progress.snapshot() << " of " << total
                                               << " within 30 s");
  check_group(group, total, credit, 1.0);
  for (auto& m : group) BOOST_TEST(m->processed() > 0u);
}

BOOST_AUTO_TEST_CASE(a_member_without_credit_receives_nothing_until_it_grants_some) {
  broker_process broker;
  collector got;
  auto c = broker.connect();
  plexus::subscribe_options o;
  o.queue = "workers";
  o.credit = 0;
  auto sid = c->subscribe("jobs.>", got.handler(), o);
  sync_with_broker(*c);
  auto pub = broker.connect();
  for (int i = 0; i < 5; ++i) pub->publish("jobs.x", std::to_string(i));
  sync_with_broker(*pub); // the broker holds all five in the group now
  sync_with_broker(*c);   // and anything it had sent would be here by now
  BOOST_TEST(got.size() == 0u);
  c->grant_credit(sid, 2);
  BOOST_REQUIRE(got.wait_count(2));
  sync_with_broker(*c);
  BOOST_TEST(got.payloads() == (std::vector<std::string>{"0", "1"}), boost::test_tools::per_element());
  c->grant_credit(sid, 10);
  BOOST_REQUIRE(got.wait_count(5));
  BOOST_TEST(got.payloads() == (std::vector<std::string>{"0", "1", "2", "3", "4"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
