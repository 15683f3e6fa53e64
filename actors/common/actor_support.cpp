// SPDX-License-Identifier: Apache-2.0
#include "actor_support.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "plexus/topic.hpp"

namespace plexus::actors::detail {

bool valid_token(std::string_view s, std::size_t max) {
  return !s.empty() && s.size() <= max && std::all_of(s.begin(), s.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
           ch == '-';
  });
}

std::string topic_problem(std::string_view what, const std::string& topic, bool pattern) {
  auto head = std::string{what} + " \"" + topic + "\": ";
  if (auto e = pattern ? validate_pattern(topic) : validate_topic(topic); e != topic_errc::ok)
    return head + to_string(e);
  if (reserved_namespace(topic) != reserved::none) return head + "a reserved namespace ($SYS., $DLQ., _INBOX.)";
  return {};
}

void add_problem(std::string& problems, const std::string& what) {
  problems += (problems.empty() ? "" : "; ") + what;
}

void log_line(const char* level, const std::string& who, std::string_view id, std::string_view text) {
  using namespace std::chrono;
  auto t = system_clock::now();
  auto secs = system_clock::to_time_t(t);
  auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  std::fprintf(stderr, "%s.%03lldZ %-5s %s msg=%.*s trace=- %.*s\n", stamp, static_cast<long long>(ms),
               level, who.c_str(), static_cast<int>(id.size()), id.data(), static_cast<int>(text.size()),
               text.data());
}

function_builder& add_singleton(service& svc, const std::string& name, const std::string& topic,
                                actor_factory make) {
  auto& f = svc.function(name).on(topic).instances(1).restart(permanent);
  return actor_function(f, std::move(make));
}

} // namespace plexus::actors::detail
