// SPDX-License-Identifier: Apache-2.0
// A recording thread's ring: what is pushed is drained whole and in order,
// a full ring refuses (records or text) until drained, texts that would
// cross the end start over at the front, a chunk appends another from any
// span on, and one producer and one consumer on two threads lose and
// reorder nothing.
#include <boost/test/unit_test.hpp>

#include <string>
#include <thread>

#include "span_ring.hpp"

using namespace plexus;
using detail::span_chunk;
using detail::span_record;
using detail::span_ring;

namespace {

span_record numbered(std::uint64_t i) {
  span_record r;
  r.span_id = i;
  r.delivery = static_cast<std::uint32_t>(i);
  return r;
}

} // namespace

BOOST_AUTO_TEST_SUITE(span_ring_suite)

BOOST_AUTO_TEST_CASE(pushed_spans_drain_whole_and_in_order) {
  auto ring = std::make_unique<span_ring>();
  BOOST_TEST(ring->push(numbered(1), "orders.shipped", "m-1", "", ""));
  BOOST_TEST(ring->push(numbered(2), "t", "", "boom", "svc.fn"));
  span_chunk out;
  BOOST_TEST(ring->drain(out) == 2u);
  BOOST_TEST_REQUIRE(out.size() == 2u);
  BOOST_TEST(out.spans[0].span_id == 1u);
  BOOST_TEST(out.topic(out.spans[0]) == "orders.shipped");
  BOOST_TEST(out.msg_id(out.spans[0]) == "m-1");
  BOOST_TEST(out.cause(out.spans[1]) == "boom");
  BOOST_TEST(out.callee(out.spans[1]) == "svc.fn");
  BOOST_TEST(ring->drain(out) == 0u); // nothing new
}

BOOST_AUTO_TEST_CASE(a_full_ring_refuses_until_drained) {
  auto ring = std::make_unique<span_ring>();
  for (std::size_t i = 0; i < span_ring::slots; ++i) BOOST_TEST_REQUIRE(ring->push(numbered(i), "t", "", "", ""));
  BOOST_TEST(!ring->push(numbered(0), "t", "", "", "")); // records full
  span_chunk out;
  BOOST_TEST(ring->drain(out) == span_ring::slots);
  BOOST_TEST(ring->push(numbered(0), "t", "", "", ""));
  // Text full: causes of 4096 bytes, fewer than slots of them fit.
  out.clear();
  ring->drain(out);
  const std::string cause(span_ring::max_text, 'c');
  std::size_t fit = 0;
  while (ring->push(numbered(fit), "", "", cause, "")) ++fit;
  // As many as the text ring holds, less the one the end falls in.
  BOOST_TEST(fit >= span_ring::text_bytes / span_ring::max_text - 1);
  BOOST_TEST(fit <= span_ring::text_bytes / span_ring::max_text);
  BOOST_TEST(fit < span_ring::slots); // the text, not the records, was full
  BOOST_TEST(ring->drain(out) == fit);
  BOOST_TEST(ring->push(numbered(0), "", "", cause, ""));
  // A longer text is cut to max_text, as the encoder would.
  out.clear();
  ring->drain(out);
  BOOST_TEST(ring->push(numbered(1), std::string(10'000, 't'), "", "", ""));
  ring->drain(out);
  BOOST_TEST(out.topic(out.spans.back()).size() == span_ring::max_text);
}

BOOST_AUTO_TEST_CASE(texts_that_would_cross_the_end_start_over_at_the_front) {
  auto ring = std::make_unique<span_ring>();
  span_chunk out;
  // 3000-byte texts: the ring's end falls inside one of them every few.
  for (std::uint64_t i = 0; i < 1000; ++i) {
    std::string topic(3000, static_cast<char>('a' + i % 26));
    BOOST_TEST_REQUIRE(ring->push(numbered(i), topic, std::to_string(i), "", ""));
    if (i % 7 == 6) ring->drain(out);
  }
  ring->drain(out);
  BOOST_TEST_REQUIRE(out.size() == 1000u);
  for (std::uint64_t i = 0; i < 1000; ++i) {
    BOOST_TEST_REQUIRE(out.topic(out.spans[i]) == std::string(3000, static_cast<char>('a' + i % 26)));
    BOOST_TEST_REQUIRE(out.msg_id(out.spans[i]) == std::to_string(i));
  }
}

BOOST_AUTO_TEST_CASE(a_chunk_appends_another_from_any_span_on_with_its_texts) {
  // A chunk drained across the ring's end (its texts with a gap), appended
  // whole and from each span on to a chunk that already holds one.
  auto ring = std::make_unique<span_ring>();
  auto bytes = [](const span_record& r) {
    return std::size_t{r.topic_size} + r.msg_id_size + r.cause_size + r.callee_size;
  };
  span_chunk drained;
  std::size_t gap = 0; // the span whose text starts over at the front
  for (std::uint64_t i = 0; gap == 0; i += 20) {
    BOOST_TEST_REQUIRE(i < 1000u);
    drained.clear();
    for (std::uint64_t k = i; k < i + 20; ++k) {
      std::string topic(3000, static_cast<char>('a' + k % 26));
      BOOST_TEST_REQUIRE(ring->push(numbered(k), topic, std::to_string(k), k % 3 ? "" : "boom", "svc.fn"));
    }
    BOOST_TEST_REQUIRE(ring->drain(drained) == 20u);
    for (std::size_t k = 1; k < drained.size() && gap == 0; ++k)
      if (drained.spans[k].text_at != drained.spans[k - 1].text_at + bytes(drained.spans[k - 1])) gap = k;
  }
  for (std::size_t first = 0; first < drained.size(); ++first) {
    span_chunk out;
    out.add(numbered(7), "before", "m", "", "");
    out.append(drained, first);
    BOOST_TEST_REQUIRE(out.size() == 1 + drained.size() - first);
    BOOST_TEST(out.topic(out.spans[0]) == "before");
    for (std::size_t k = 1; k < out.size(); ++k) {
      const auto& d = drained.spans[first + k - 1];
      const auto& o = out.spans[k];
      BOOST_TEST_REQUIRE(o.span_id == d.span_id);
      BOOST_TEST_REQUIRE(out.topic(o) == drained.topic(d));
      BOOST_TEST_REQUIRE(out.msg_id(o) == drained.msg_id(d));
      BOOST_TEST_REQUIRE(out.cause(o) == drained.cause(d));
      BOOST_TEST_REQUIRE(out.callee(o) == drained.callee(d));
    }
  }
  span_chunk none;
  none.append(drained, drained.size()); // past the end: nothing
  BOOST_TEST(none.empty());
  BOOST_TEST(none.text.empty());
}

BOOST_AUTO_TEST_CASE(one_producer_and_one_consumer_lose_and_reorder_nothing) {
  auto ring = std::make_unique<span_ring>();
  constexpr std::uint64_t total = 200'000;
  std::thread producer([&] {
    for (std::uint64_t i = 0; i < total; ++i) {
      auto id = std::to_string(i);
      while (!ring->push(numbered(i), "topic", id, i % 100 == 0 ? "a failure" : "", ""))
        std::this_thread::yield(); // full: the consumer catches up
    }
  });
  span_chunk out;
  std::uint64_t seen = 0;
  bool in_order = true;
  while (seen < total) {
    out.clear();
    if (ring->drain(out) == 0) {
      std::this_thread::yield();
      continue;
    }
    for (auto& s : out.spans) {
      in_order = in_order && s.span_id == seen && out.msg_id(s) == std::to_string(seen)
                 && out.cause(s) == (seen % 100 == 0 ? "a failure" : "");
      ++seen;
    }
  }
  producer.join();
  BOOST_TEST(seen == total);
  BOOST_TEST(in_order);
}

BOOST_AUTO_TEST_SUITE_END()
