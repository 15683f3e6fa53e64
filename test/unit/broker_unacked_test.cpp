// SPDX-License-Identifier: Apache-2.0
// The broker's per-subscription store of unacked deliveries (seq_ring),
// against std::map as the reference.
#include <boost/test/unit_test.hpp>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "unacked.hpp"

using plexus::broker::seq_ring;

BOOST_AUTO_TEST_SUITE(broker_unacked)

BOOST_AUTO_TEST_CASE(take_finds_live_entries_once) {
  seq_ring<std::string> r;
  for (std::uint64_t s = 1; s <= 40; ++s) r.push(s, "m" + std::to_string(s));
  BOOST_TEST(r.size() == 40u);
  std::string out;
  BOOST_TEST(r.take(7, out));
  BOOST_TEST(out == "m7");
  BOOST_TEST(!r.take(7, out)); // a tombstone now
  BOOST_TEST(!r.take(0, out));
  BOOST_TEST(!r.take(41, out));
  BOOST_TEST(r.take(1, out));
  BOOST_TEST(out == "m1");
  BOOST_TEST(r.size() == 38u);
}

BOOST_AUTO_TEST_CASE(tombstones_leave_from_the_front_and_the_ring_wraps) {
  seq_ring<int> r;
  std::uint64_t next = 1, oldest = 1;
  int out = 0;
  for (int round = 0; round < 1000; ++round) {
    for (int i = 0; i < 5; ++i) r.push(next, static_cast<int>(next)), ++next;
    for (int i = 0; i < 5; ++i) {
      BOOST_TEST_REQUIRE(r.take(oldest, out));
      BOOST_TEST_REQUIRE(out == static_cast<int>(oldest));
      ++oldest;
    }
    BOOST_TEST_REQUIRE(r.stored() == 0u); // nothing left behind
  }
}

BOOST_AUTO_TEST_CASE(sparse_seqs_of_a_shared_connection_counter) {
  // Two subscriptions on one connection: each sees every other seq.
  seq_ring<int> r;
  for (std::uint64_t s = 2; s <= 200; s += 2) r.push(s, static_cast<int>(s));
  int out = 0;
  BOOST_TEST(!r.take(3, out));
  BOOST_TEST(r.take(100, out));
  BOOST_TEST(out == 100);
  std::vector<int> got;
  auto n = r.take_range(51, 61, [&](int&& v) { got.push_back(v); });
  BOOST_TEST(n == 5u);
  BOOST_TEST((got == std::vector<int>{52, 54, 56, 58, 60}));
  BOOST_TEST(r.size() == 94u);
}

BOOST_AUTO_TEST_CASE(a_range_to_the_largest_seq_does_not_wrap) {
  seq_ring<int> r;
  r.push(~std::uint64_t{0} - 1, 1);
  r.push(~std::uint64_t{0}, 2);
  auto n = r.take_range(0, ~std::uint64_t{0}, [](int&&) {});
  BOOST_TEST(n == 2u);
  BOOST_TEST(r.empty());
}

BOOST_AUTO_TEST_CASE(an_old_live_entry_does_not_keep_every_tombstone) {
  seq_ring<int> r;
  r.push(1, 1); // never acked
  int out = 0;
  for (std::uint64_t s = 2; s < 100'000; ++s) {
    r.push(s, 0);
    BOOST_TEST_REQUIRE(r.take(s, out));
  }
  BOOST_TEST(r.size() == 1u);
  BOOST_TEST(r.stored() < 64u * 4u); // compacted as it went
  BOOST_TEST(r.take(1, out));
  BOOST_TEST(out == 1);
  BOOST_TEST(r.stored() == 0u);
}

BOOST_AUTO_TEST_CASE(scan_and_take_all_see_live_entries_in_order) {
  seq_ring<int> r;
  for (std::uint64_t s = 1; s <= 10; ++s) r.push(s * 3, static_cast<int>(s));
  int out = 0;
  BOOST_TEST(r.take(9, out));
  std::vector<std::uint64_t> seen;
  r.scan([&](std::uint64_t seq, const int&) {
    seen.push_back(seq);
    return seq < 15;
  });
  BOOST_TEST((seen == std::vector<std::uint64_t>{3, 6, 12, 15}));
  auto all = r.take_all();
  BOOST_TEST(all.size() == 9u);
  BOOST_TEST(all.front().first == 3u);
  BOOST_TEST(all.back().first == 30u);
  BOOST_TEST(r.empty());
  r.push(31, 7); // usable after
  BOOST_TEST(r.take(31, out));
  BOOST_TEST(out == 7);
}

BOOST_AUTO_TEST_CASE(matches_a_map_under_random_operations) {
  std::mt19937_64 rng{12345};
  seq_ring<std::shared_ptr<int>> r;
  std::map<std::uint64_t, int> ref;
  std::uint64_t next = 1;
  for (int step = 0; step < 200'000; ++step) {
    auto op = rng() % 10;
    if (op < 4) {
      next += 1 + (rng() % 3 == 0 ? rng() % 4 : 0); // mostly consecutive
      auto v = static_cast<int>(step);
      r.push(next, std::make_shared<int>(v));
      ref.emplace(next, v);
    } else if (op < 7 && !ref.empty()) {
      // Take one: usually near the front, sometimes anywhere.
      auto lo = ref.begin()->first;
      auto seq = lo + rng() % (rng() % 4 == 0 ? next - lo + 2 : 8);
      std::shared_ptr<int> out;
      auto it = ref.find(seq);
      BOOST_TEST_REQUIRE(r.take(seq, out) == (it != ref.end()));
      if (it != ref.end()) {
        BOOST_TEST_REQUIRE(*out == it->second);
        ref.erase(it);
      }
    } else if (op < 9 && !ref.empty()) {
      auto lo = ref.begin()->first;
      auto first = lo + rng() % 16 - 2;
      auto last = first + rng() % 40;
      std::vector<int> got, want;
      for (auto it = ref.lower_bound(first); it != ref.end() && it->first <= last;)
        want.push_back(it->second), it = ref.erase(it);
      auto n = r.take_range(first, last, [&](std::shared_ptr<int>&& v) { got.push_back(*v); });
      BOOST_TEST_REQUIRE(n == want.size());
      BOOST_TEST_REQUIRE((got == want));
    } else {
      std::vector<std::uint64_t> seen, want;
      r.scan([&](std::uint64_t s, const std::shared_ptr<int>&) {
        seen.push_back(s);
        return seen.size() < 50;
      });
      for (auto& [s, v] : ref) {
        if (want.size() == 50) break;
        want.push_back(s);
      }
      BOOST_TEST_REQUIRE((seen == want));
    }
    BOOST_TEST_REQUIRE(r.size() == ref.size());
  }
}

BOOST_AUTO_TEST_SUITE_END()
