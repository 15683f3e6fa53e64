// SPDX-License-Identifier: Apache-2.0
// Metrics and spans as data: the latency histogram's accuracy, the
// Prometheus text it writes, and the dependency graph built from spans.
#define BOOST_TEST_MODULE plexus_observe
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "plexus/metrics.hpp"
#include "plexus/trace.hpp"

using namespace plexus;

BOOST_AUTO_TEST_SUITE(observe_data)

BOOST_AUTO_TEST_CASE(histogram_quantiles_are_within_one_percent) {
  plexus::observe::latency_histogram h;
  std::mt19937_64 rng{42};
  std::lognormal_distribution<double> d{std::log(200'000.0), 1.5}; // ~200 us, long tail
  std::vector<double> truth;
  for (int i = 0; i < 100'000; ++i) {
    auto ns = std::max(1500.0, d(rng));
    truth.push_back(ns);
    h.record(static_cast<std::uint64_t>(ns));
  }
  std::sort(truth.begin(), truth.end());
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    auto exact = truth[static_cast<std::size_t>(std::ceil(q * truth.size())) - 1] / 1e9;
    auto got = h.quantile(q);
    BOOST_TEST(std::abs(got - exact) / exact < 0.01, "q" << q << ": " << got << " vs " << exact);
  }
  BOOST_TEST(h.count() == 100'000u);
  BOOST_TEST(h.at_most(1e-5) < h.at_most(1e-3));
  BOOST_TEST(h.at_most(1000.0) == h.count());
}

BOOST_AUTO_TEST_CASE(prometheus_text_declares_families_and_escapes_label_values) {
  plexus::observe::prometheus_text t;
  t.family("x_total", "counter", "Things.");
  t.sample("x_total", {{"name", "a\"b\\c\nd"}}, std::uint64_t{3});
  plexus::observe::latency_histogram h;
  h.record(50'000);    // 50 us
  h.record(5'000'000); // 5 ms
  t.family("d_seconds", "histogram", "Durations.");
  plexus::observe::write_histogram(t, "d_seconds", {{"f", "g"}}, h);
  auto s = t.str();
  BOOST_TEST(s.find("# HELP x_total Things.\n# TYPE x_total counter\n") == 0u);
  BOOST_TEST(s.find("x_total{name=\"a\\\"b\\\\c\\nd\"} 3\n") != std::string::npos, s);
  BOOST_TEST(s.find("d_seconds_bucket{f=\"g\",le=\"1e-05\"} 0\n") != std::string::npos, s);
  BOOST_TEST(s.find("d_seconds_bucket{f=\"g\",le=\"0.0001\"} 1\n") != std::string::npos, s);
  BOOST_TEST(s.find("d_seconds_bucket{f=\"g\",le=\"0.01\"} 2\n") != std::string::npos, s);
  BOOST_TEST(s.find("d_seconds_bucket{f=\"g\",le=\"+Inf\"} 2\n") != std::string::npos, s);
  BOOST_TEST(s.find("d_seconds_count{f=\"g\"} 2\n") != std::string::npos, s);
}

BOOST_AUTO_TEST_CASE(the_dependency_graph_follows_parents_across_batches) {
  auto mk = [](std::string id, std::string parent, std::string fn, std::string kind,
               span_status st = span_status::ok) {
    span s;
    s.span_id = std::move(id);
    s.parent_id = std::move(parent);
    s.service = "shop";
    s.function = std::move(fn);
    s.kind = std::move(kind);
    s.status = st;
    return s;
  };
  dependency_graph g;
  // The callee's span arrives before its caller's (another node, a later batch).
  g.add({mk("c1", "r1", "quote", "invocation", span_status::crash)});
  g.add({mk("a1", "", "price", "invocation"), mk("r1", "a1", "price", "request"),
         mk("p2", "a1", "ship", "invocation")});
  auto e = g.edges();
  BOOST_TEST_REQUIRE(e.size() == 2u);
  BOOST_TEST(e[0].caller == "shop.price");
  BOOST_TEST(e[0].callee == "shop.quote");
  BOOST_TEST(e[0].request);
  BOOST_TEST(e[0].failures == 1u);
  BOOST_TEST(e[1].callee == "shop.ship");
  BOOST_TEST(!e[1].request); // a publish: its parent is the invocation itself
  BOOST_TEST(g.dot().find("\"shop.price\" -> \"shop.quote\" [label=\"1 requests, 100% failed\", color=red]")
             != std::string::npos, g.dot());
  // The same two functions by a publish and by a request: two edges, each counted apart.
  g.add({mk("a2", "", "price", "invocation"), mk("q2", "a2", "quote", "invocation"),
         mk("q3", "a2", "quote", "invocation")});
  e = g.edges();
  BOOST_TEST_REQUIRE(e.size() == 3u);
  BOOST_TEST(e[0].callee == "shop.quote");
  BOOST_TEST(!e[0].request);
  BOOST_TEST(e[0].calls == 2u);
  BOOST_TEST(e[1].callee == "shop.quote");
  BOOST_TEST(e[1].request);
  BOOST_TEST(e[1].calls == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
