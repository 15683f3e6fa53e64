// SPDX-License-Identifier: Apache-2.0
// plexus-bench --compare's logic: pairing rows, which way is better, and
// when a change is beyond the noise the runs recorded.
#define BOOST_TEST_MODULE plexus_bench_compare
#include <boost/test/unit_test.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "compare.hpp"
#include "report.hpp"

namespace pb = plexus::bench;

namespace {

pb::result row(std::string metric, std::string unit, double median, double mad, double min,
               double max, std::string system = "plexus") {
  pb::result r;
  r.scenario = "pubsub";
  r.case_name = "128B";
  r.system = std::move(system);
  r.metric = std::move(metric);
  r.unit = std::move(unit);
  r.stats = {median, mad, min, max, 5};
  return r;
}

pb::verdict one(const pb::result& a, const pb::result& b) {
  std::vector<pb::result> va{a}, vb{b};
  auto c = pb::compare(va, vb);
  BOOST_REQUIRE_EQUAL(c.rows.size(), 1u);
  return c.rows.front().outcome;
}

} // namespace

BOOST_AUTO_TEST_SUITE(compare)

BOOST_AUTO_TEST_CASE(rates_are_better_higher_and_times_better_lower) {
  BOOST_TEST((pb::better_direction("msg/s") == pb::better::higher));
  BOOST_TEST((pb::better_direction("MB/s") == pb::better::higher));
  BOOST_TEST((pb::better_direction("us") == pb::better::lower));
  BOOST_TEST((pb::better_direction("ms") == pb::better::lower));
  BOOST_TEST((pb::better_direction("B") == pb::better::lower));
  BOOST_TEST((pb::better_direction("furlongs") == pb::better::unknown));
}

BOOST_AUTO_TEST_CASE(a_throughput_drop_beyond_the_noise_is_a_regression) {
  auto a = row("msgs_per_s", "msg/s", 1e6, 1e4, 0.98e6, 1.02e6);
  auto b = row("msgs_per_s", "msg/s", 0.8e6, 1e4, 0.78e6, 0.82e6);
  BOOST_TEST((one(a, b) == pb::verdict::regressed));
  BOOST_TEST((one(b, a) == pb::verdict::improved));
}

BOOST_AUTO_TEST_CASE(a_latency_rise_beyond_the_noise_is_a_regression) {
  auto a = row("p99_us", "us", 100, 2, 96, 104);
  auto b = row("p99_us", "us", 150, 5, 140, 160);
  BOOST_TEST((one(a, b) == pb::verdict::regressed));
  BOOST_TEST((one(b, a) == pb::verdict::improved));
}

BOOST_AUTO_TEST_CASE(overlapping_runs_are_within_noise_whatever_the_ratio) {
  auto a = row("msgs_per_s", "msg/s", 1e6, 1e4, 0.7e6, 1.02e6);
  auto b = row("msgs_per_s", "msg/s", 0.8e6, 1e4, 0.78e6, 0.82e6);
  BOOST_TEST((one(a, b) == pb::verdict::same));
}

BOOST_AUTO_TEST_CASE(apart_runs_within_three_mads_are_within_noise) {
  // Intervals apart, but the runs' MAD is 5%: a 10% change is inside 3 MADs.
  auto a = row("msgs_per_s", "msg/s", 1e6, 5e4, 0.99e6, 1.01e6);
  auto b = row("msgs_per_s", "msg/s", 0.9e6, 5e4, 0.89e6, 0.91e6);
  BOOST_TEST((one(a, b) == pb::verdict::same));
}

BOOST_AUTO_TEST_CASE(rows_pair_by_scenario_case_system_and_metric) {
  std::vector<pb::result> a{row("msgs_per_s", "msg/s", 1, 0, 1, 1),
                            row("msgs_per_s", "msg/s", 2, 0, 2, 2, "nats")};
  std::vector<pb::result> b{row("msgs_per_s", "msg/s", 2, 0, 2, 2, "nats"),
                            row("mb_per_s", "MB/s", 1, 0, 1, 1)};
  auto c = pb::compare(a, b);
  BOOST_REQUIRE_EQUAL(c.rows.size(), 1u);
  BOOST_TEST(c.rows[0].b.system == "nats");
  BOOST_TEST(c.rows[0].ratio == 1.0);
  BOOST_REQUIRE_EQUAL(c.only_a.size(), 1u);
  BOOST_TEST(c.only_a[0].system == "plexus");
  BOOST_REQUIRE_EQUAL(c.only_b.size(), 1u);
  BOOST_TEST(c.only_b[0].metric == "mb_per_s");
  BOOST_TEST(!c.regressed());
}

BOOST_AUTO_TEST_CASE(a_results_file_reads_back_what_to_json_wrote) {
  pb::machine_info m;
  m.git_sha = "abc1234";
  m.build_type = "Release";
  m.load = "1.00 0.50 0.25";
  std::vector<pb::result> rows{row("p99_us", "us", 12.5, 0.5, 11, 14)};
  auto f = pb::parse_results(pb::to_json(m, rows), "test");
  BOOST_TEST(f.machine.git_sha == "abc1234");
  BOOST_TEST(f.machine.load == "1.00 0.50 0.25");
  BOOST_REQUIRE_EQUAL(f.results.size(), 1u);
  BOOST_TEST(f.results[0].metric == "p99_us");
  BOOST_TEST(f.results[0].stats.median == 12.5);
  BOOST_TEST(f.results[0].stats.max == 14.0);
  BOOST_TEST(f.results[0].stats.runs == 5u);
}

BOOST_AUTO_TEST_CASE(a_file_that_is_not_results_is_an_error_naming_it) {
  BOOST_CHECK_EXCEPTION((void)pb::parse_results("{\"header\": {}}", "x.json"), std::runtime_error,
                        [](const auto& e) { return std::string{e.what()}.find("x.json") == 0; });
  BOOST_CHECK_THROW((void)pb::parse_results("[1, 2", "y.json"), std::runtime_error);
}

BOOST_AUTO_TEST_CASE(csv_quotes_fields_with_commas) {
  pb::machine_info m;
  m.cpu = "cpu, fast";
  std::vector<pb::result> rows{row("msgs_per_s", "msg/s", 2, 0, 2, 2),
                               row("msgs_per_s", "msg/s", 1, 0, 1, 1, "nats")};
  auto csv = pb::to_csv(m, rows);
  BOOST_TEST(csv.find("# cpu: cpu, fast\n") != std::string::npos);
  BOOST_TEST(csv.find("scenario,case,system,metric,median,mad,min,max,unit,runs,ratio\n") !=
             std::string::npos);
  BOOST_TEST(csv.find("pubsub,128B,plexus,msgs_per_s,2.00,0.000,2.00,2.00,msg/s,5,"
                      "plexus / nats = 2.00x\n") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
