// SPDX-License-Identifier: Apache-2.0
// `plexus queue` and `plexus dlq` without a broker (framework/cli/queues.hpp):
// reading the durables out of a broker's stats JSON, the rows they print,
// what a dead letter says of itself, which messages a replay filter
// takes, and which headers a replay publishes.
#define BOOST_TEST_MODULE plexus_cli_queue
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "../../framework/cli/queues.hpp"

using namespace plexus::cli;

namespace {

// The shape brokers/core/stats.cpp writes (abridged counters and gauges).
const std::string stats_json =
  R"({"broker":"b1","time_ns":1700000000000000000,"counters":{"msgs_in":12,"acks":3},)"
  R"("gauges":{"connections":2,"pending_msgs":0},"peers":[{"id":"b2","links":1,"fwd_out":0}],)"
  R"("durables":[{"name":"orders-dlq","messages":2,"bytes":1536,"waiting":2,"members":0,"stored":2,)"
  R"("acked":0,"full":0,"aged_out":0,"restored":1},)"
  R"({"name":"orders","subjects":["orders.>","returns.*"],"max_msgs":1000,"max_bytes":2048,)"
  R"("max_age_ms":0,"declared":"runtime","messages":5,"bytes":100,"waiting":4,"members":1,"stored":9,"acked":4,"full":7,)"
  R"("aged_out":3,"restored":0,"future_field":{"x":[1,2.5,true,null]}}],)"
  R"("connections":[{"id":1,"node":"n\u00e9\"x","msgs_in":1}]})";

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in{text};
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

header_list dlq_headers() {
  return {{"tenant", "acme"},
          {"plexus-dlq-reason", "bad sku"},
          {"plexus-dlq-deliveries", "3"},
          {"plexus-dlq-topic", "orders.created"},
          {"plexus-dlq-time", "1700000000123456789"}};
}

} // namespace

BOOST_AUTO_TEST_SUITE(cli_queue)

BOOST_AUTO_TEST_CASE(durables_are_read_from_a_brokers_stats_with_every_field) {
  auto rows = durables_from_stats(stats_json);
  BOOST_TEST_REQUIRE(rows.has_value());
  BOOST_TEST_REQUIRE(rows->size() == 2u);
  auto& dlq = (*rows)[0];
  BOOST_TEST(dlq.broker == "b1");
  BOOST_TEST(dlq.name == "orders-dlq");
  BOOST_TEST(dlq.messages == 2u);
  BOOST_TEST(dlq.bytes == 1536u);
  BOOST_TEST(dlq.waiting == 2u);
  BOOST_TEST(dlq.restored == 1u);
  auto& orders = (*rows)[1];
  BOOST_TEST(orders.name == "orders");
  BOOST_TEST(orders.members == 1u);
  BOOST_TEST(orders.stored == 9u);
  BOOST_TEST(orders.acked == 4u);
  BOOST_TEST(orders.full == 7u);
  BOOST_TEST(orders.aged_out == 3u);
  BOOST_TEST((orders.subjects == std::vector<std::string>{"orders.>", "returns.*"}));
  BOOST_TEST(orders.declared == "runtime");
  BOOST_TEST(orders.max_msgs == 1000u);
  BOOST_TEST(orders.max_bytes == 2048u);
  BOOST_TEST(dlq.subjects.empty()); // a broker from before subjects were in its stats
}

BOOST_AUTO_TEST_CASE(stats_without_durables_are_a_broker_with_none_and_other_text_is_not_stats) {
  auto none = durables_from_stats(R"({"broker":"b2","counters":{},"durables":[]})");
  BOOST_TEST_REQUIRE(none.has_value());
  BOOST_TEST(none->empty());
  auto older = durables_from_stats(R"({"broker":"b3","counters":{"acks":1}})");
  BOOST_TEST_REQUIRE(older.has_value());
  BOOST_TEST(older->empty());
  BOOST_TEST(!durables_from_stats("").has_value());
  BOOST_TEST(!durables_from_stats("not json").has_value());
  BOOST_TEST(!durables_from_stats(R"({"durables":[]})").has_value()); // whose?
  BOOST_TEST(!durables_from_stats(stats_json.substr(0, stats_json.size() - 1)).has_value());
  BOOST_TEST(!durables_from_stats(stats_json + "x").has_value());
  BOOST_TEST(!durables_from_stats(std::string(200, '[')).has_value()); // nesting is bounded
}

BOOST_AUTO_TEST_CASE(a_durable_name_with_escapes_is_decoded) {
  auto rows = durables_from_stats(R"({"broker":"b\u00e9","durables":[{"name":"a\"b\\c\ud83d\ude00"}]})");
  BOOST_TEST_REQUIRE(rows.has_value());
  BOOST_TEST_REQUIRE(rows->size() == 1u);
  BOOST_TEST((*rows)[0].broker == "b\xc3\xa9");
  BOOST_TEST((*rows)[0].name == "a\"b\\c\xf0\x9f\x98\x80");
}

BOOST_AUTO_TEST_CASE(bytes_are_shown_in_binary_units) {
  BOOST_TEST(human_bytes(0) == "0 B");
  BOOST_TEST(human_bytes(1023) == "1023 B");
  BOOST_TEST(human_bytes(1024) == "1.0 KiB");
  BOOST_TEST(human_bytes(1536) == "1.5 KiB");
  BOOST_TEST(human_bytes(3ull << 20) == "3.0 MiB");
  BOOST_TEST(human_bytes(5ull << 30) == "5.0 GiB");
}

BOOST_AUTO_TEST_CASE(queue_table_has_one_sorted_row_per_broker_and_durable) {
  auto rows = *durables_from_stats(stats_json);
  durable_row zeta;
  zeta.broker = "a0";
  zeta.name = "zeta";
  rows.push_back(zeta);
  auto lines = lines_of(queue_table(rows));
  BOOST_TEST_REQUIRE(lines.size() == 4u);
  BOOST_TEST(lines[0].starts_with("BROKER"));
  for (auto col : {"NAME", "MESSAGES", "BYTES", "WAITING", "MEMBERS", "STORED", "ACKED", "FULL"})
    BOOST_TEST(lines[0].find(col) != std::string::npos, col);
  BOOST_TEST(lines[1].starts_with("a0"));
  BOOST_TEST(lines[2].find("orders ") != std::string::npos);
  BOOST_TEST(lines[3].find("orders-dlq") != std::string::npos);
  BOOST_TEST(lines[3].find("1.5 KiB") != std::string::npos);
  // Right-aligned counts: every row as wide as the header, FULL last.
  BOOST_TEST(lines[2].size() == lines[0].size());
  BOOST_TEST(lines[2].ends_with(" 7"));
}

BOOST_AUTO_TEST_CASE(queue_details_show_every_field_of_each_broker_with_exact_bytes) {
  auto rows = *durables_from_stats(stats_json);
  rows.erase(std::remove_if(rows.begin(), rows.end(), [](auto& d) { return d.name != "orders-dlq"; }), rows.end());
  auto copy = rows.front();
  copy.broker = "b0";
  rows.push_back(copy);
  auto text = queue_details(rows);
  for (auto field : {"broker", "name", "messages", "bytes", "waiting", "members", "stored", "acked", "full",
                     "aged_out", "restored"})
    BOOST_TEST((text.find(std::string{"\n"} + field + " ") != std::string::npos
                || text.starts_with(std::string{field} + " ")),
               field);
  BOOST_TEST(text.find("1536 (1.5 KiB)") != std::string::npos);
  BOOST_TEST(text.find("\n\n") != std::string::npos); // two blocks
  BOOST_TEST(text.find("b0") < text.find("b1"));
  auto orders = *durables_from_stats(stats_json);
  std::erase_if(orders, [](auto& d) { return d.name != "orders"; });
  auto details = queue_details(orders);
  BOOST_TEST(details.find("subjects  orders.> returns.*\n") != std::string::npos, details);
  BOOST_TEST(details.find("declared  runtime\n") != std::string::npos, details);
  BOOST_TEST(details.find("max_bytes 2048 (2.0 KiB)\n") != std::string::npos, details);
  BOOST_TEST(details.find("max_age   none\n") != std::string::npos, details);
}

BOOST_AUTO_TEST_CASE(a_dead_letter_is_described_by_the_brokers_headers) {
  auto d = describe_dead_letter("$DLQ.orders.created", "m-7", dlq_headers(), 42, 1);
  BOOST_TEST(d.id == "m-7");
  BOOST_TEST(d.dlq_topic == "$DLQ.orders.created");
  BOOST_TEST(d.topic == "orders.created");
  BOOST_TEST(d.reason == "bad sku");
  BOOST_TEST(d.deliveries == "3");
  BOOST_TEST(d.time_ns == "1700000000123456789");
  BOOST_TEST(d.size == 42u);
}

BOOST_AUTO_TEST_CASE(a_dead_letter_without_msg_id_or_topic_header_gets_position_and_topic_from_its_own) {
  auto d = describe_dead_letter("$DLQ.orders.paid", "", {{"plexus-dlq-reason", "x"}}, 0, 3);
  BOOST_TEST(d.id == "#3");
  BOOST_TEST(d.topic == "orders.paid");
  BOOST_TEST(d.deliveries.empty());
}

BOOST_AUTO_TEST_CASE(dead_letter_time_is_shown_as_utc_iso_with_milliseconds) {
  BOOST_TEST(utc_time("1700000000123456789") == "2023-11-14T22:13:20.123Z");
  BOOST_TEST(utc_time("0") == "1970-01-01T00:00:00.000Z");
  BOOST_TEST(utc_time("") == "-");
  BOOST_TEST(utc_time("yesterday") == "yesterday");
}

BOOST_AUTO_TEST_CASE(the_filter_is_a_substring_of_the_reason_or_the_original_topic) {
  auto d = describe_dead_letter("$DLQ.orders.created", "m", dlq_headers(), 0, 1);
  BOOST_TEST(matches_filter(d, ""));
  BOOST_TEST(matches_filter(d, "bad sku"));
  BOOST_TEST(matches_filter(d, "sku"));
  BOOST_TEST(matches_filter(d, "orders.cre"));
  BOOST_TEST(!matches_filter(d, "no stock"));
  BOOST_TEST(!matches_filter(d, "BAD SKU"));
  BOOST_TEST(!matches_filter(d, "$DLQ")); // the original topic, not the DLQ's
}

BOOST_AUTO_TEST_CASE(a_replay_keeps_the_original_headers_drops_the_dlq_ones_and_says_where_from) {
  auto h = dlq_headers();
  h.insert(h.begin() + 1, {"plexus-replayed-from", "$DLQ.older"});
  h.emplace_back("plexus-dlqish", "kept"); // not the broker's prefix
  auto out = replay_headers(h, "$DLQ.orders.created");
  header_list want{{"tenant", "acme"}, {"plexus-dlqish", "kept"}, {"plexus-replayed-from", "$DLQ.orders.created"}};
  BOOST_TEST_REQUIRE(out.size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    BOOST_TEST(out[i].first == want[i].first);
    BOOST_TEST(out[i].second == want[i].second);
  }
}

BOOST_AUTO_TEST_CASE(dlq_rows_show_id_topic_deliveries_reason_time_and_size_on_one_line) {
  auto a = describe_dead_letter("$DLQ.orders.created", "m-1", dlq_headers(), 42, 1);
  auto hs = dlq_headers();
  hs[1].second = "line one\nline two " + std::string(100, 'x');
  auto b = describe_dead_letter("$DLQ.orders.created", "", hs, 7, 2);
  auto lines = lines_of(dead_letter_table({a, b}));
  BOOST_TEST_REQUIRE(lines.size() == 3u);
  for (auto col : {"ID", "TOPIC", "DELIVERIES", "REASON", "TIME", "BYTES"})
    BOOST_TEST(lines[0].find(col) != std::string::npos, col);
  for (auto field : {"m-1", "orders.created", "bad sku", "2023-11-14T22:13:20.123Z"})
    BOOST_TEST(lines[1].find(field) != std::string::npos, field);
  BOOST_TEST(lines[1].ends_with("42"));
  BOOST_TEST(lines[2].starts_with("#2"));
  BOOST_TEST(lines[2].find("line one line two") != std::string::npos);
  BOOST_TEST(lines[2].find("...") != std::string::npos);
  BOOST_TEST(lines[2].find(std::string(100, 'x')) == std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_text_payload_is_shown_as_it_is_and_binary_as_a_bounded_hex_dump) {
  BOOST_TEST(payload_dump("{\"sku\":\"A-1\"}") == "{\"sku\":\"A-1\"}");
  std::string bin(300, '\0');
  for (std::size_t i = 0; i < bin.size(); ++i) bin[i] = static_cast<char>(i);
  auto lines = lines_of(payload_dump(bin));
  BOOST_TEST_REQUIRE(lines.size() == 17u); // 256 bytes at 16 a line, and what was left out
  BOOST_TEST(lines[0].starts_with("00000000  00 01 02 03 04 05 06 07  08 09"));
  BOOST_TEST(lines[2].ends_with("| !\"#$%&'()*+,-./|"));
  BOOST_TEST(lines[15].starts_with("000000f0  f0 f1"));
  BOOST_TEST(lines[16] == "... 44 more bytes");
  auto small = lines_of(payload_dump(std::string{"\x01\x02", 2}));
  BOOST_TEST_REQUIRE(small.size() == 1u);
  BOOST_TEST(small[0].starts_with("00000000  01 02 "));
  BOOST_TEST(small[0].ends_with("|..|"));
}

BOOST_AUTO_TEST_CASE(show_prints_every_header_and_the_payload) {
  auto h = dlq_headers();
  auto d = describe_dead_letter("$DLQ.orders.created", "m-1", h, 5, 1);
  auto text = dead_letter_details(d, h, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "hello");
  for (auto& [k, v] : h) BOOST_TEST(text.find("  " + k + ": " + v + "\n") != std::string::npos, k);
  BOOST_TEST(text.find("traceparent  00-0af7651916cd43dd8448eb211c80319c") != std::string::npos);
  BOOST_TEST(text.find("time         2023-11-14T22:13:20.123Z") != std::string::npos);
  BOOST_TEST(text.ends_with("payload (5 bytes)\nhello\n"));
}

BOOST_AUTO_TEST_SUITE_END()
