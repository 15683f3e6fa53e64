// SPDX-License-Identifier: Apache-2.0
#include "pg_core.hpp"

#include <algorithm>
#include <cstdio>
#include <set>

#include "actor_support.hpp"
#include "plexus/topic.hpp"
#include "plexus/wire.hpp"

namespace plexus::actors::detail {

namespace {

constexpr std::size_t max_name = 20;    // "pg:<20>:<16 hex>-<16 hex>#<n>" fits 64 bytes
constexpr std::size_t max_channel = 63; // Postgres' NAMEDATALEN - 1
constexpr std::chrono::milliseconds first_retry{250};

std::string hex16(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

} // namespace

std::vector<std::string> option_problems(const postgres_options& o) {
  std::vector<std::string> bad;
  if (!valid_token(o.name, max_name))
    bad.push_back("name \"" + o.name + "\": 1-20 letters, digits, '_' or '-'");
  if (o.conninfo.empty()) bad.push_back("conninfo: empty (a libpq connection string, e.g. \"dbname=shop\")");
  if (auto why = topic_problem("topic", o.topic); !why.empty()) bad.push_back(why);
  if (o.channels.empty()) bad.push_back("channels: none (LISTEN on at least one)");
  std::set<std::string_view> seen;
  for (const auto& c : o.channels) {
    if (!valid_token(c, max_channel))
      bad.push_back("channel \"" + c + "\": 1-63 letters, digits, '_' or '-'");
    else if (!seen.insert(c).second)
      bad.push_back("channel \"" + c + "\": listed twice");
  }
  return bad;
}

std::string listen_statement(const std::vector<std::string>& channels) {
  std::string sql;
  for (const auto& c : channels) {
    if (!sql.empty()) sql += "; ";
    sql += "LISTEN \"";
    for (char ch : c) sql += ch == '"' ? std::string{"\"\""} : std::string(1, ch);
    sql += '"';
  }
  return sql;
}

std::string id_stem(std::string_view name, std::uint64_t start_ns) {
  return "pg:" + std::string{name} + ":" + hex16(start_ns);
}

std::string event_id(std::string_view stem, std::uint64_t n, std::uint32_t attempt) {
  auto id = std::string{stem} + "-" + std::to_string(n);
  if (attempt > 1) id += "#" + std::to_string(attempt);
  return id;
}

std::string encode_event(const postgres_event& e) {
  msgpack::sbuffer buf;
  msgpack::pack(buf, e);
  return {buf.data(), buf.size()};
}

confirm_verdict judge_confirm(std::uint32_t code, std::uint32_t attempt) {
  if (code == 0) return {};
  if (code == code_of(status::no_interest)) return {.no_interest = true};
  const auto* info = find_status(code);
  if (info && info->retryable && attempt < max_attempts)
    return {.kind = confirm_verdict::retry, .delay = first_retry * (1u << (attempt - 1))};
  return {.kind = confirm_verdict::dropped};
}

} // namespace plexus::actors::detail
