// SPDX-License-Identifier: Apache-2.0
// $SYS.queue.add / $SYS.queue.rm requests (plexus/queues.hpp): the
// declaration in the request's headers, the broker's answer as the reply
// or as a failure (status_failed, the cause in its text).
#include "plexus/queues.hpp"

#include "plexus/client.hpp"

namespace plexus {

namespace {

std::string ask(client& c, std::string_view topic, std::string_view name,
                const std::vector<std::pair<std::string_view, std::string_view>>& fields,
                std::chrono::milliseconds timeout) {
  std::string packed;
  publish_options o;
  o.headers = wire::pack_string_map(fields, packed);
  auto r = c.request(topic, {}, timeout, o);
  if (r.code == 0) return r.payload;
  auto why = r.code == status_failed ? r.text : std::string{status_text(r.code)};
  if (r.code == static_cast<std::uint32_t>(status::no_responders))
    why = "the broker does not know " + std::string{topic} + " (a plexus-broker older than durable queues?)";
  throw queue_error("durable queue '" + std::string{name} + "': " + why);
}

} // namespace

std::string declare_queue(client& c, const queue_spec& q, std::chrono::milliseconds timeout) {
  std::string subjects;
  for (auto& s : q.subjects) subjects += (subjects.empty() ? "" : " ") + s;
  auto msgs = std::to_string(q.max_msgs), bytes = std::to_string(q.max_bytes),
       age = std::to_string(q.max_age.count());
  std::vector<std::pair<std::string_view, std::string_view>> fields{{"name", q.name},
                                                                    {"subjects", subjects}};
  if (q.max_msgs) fields.emplace_back("max_msgs", msgs);
  if (q.max_bytes) fields.emplace_back("max_bytes", bytes);
  if (q.max_age.count() > 0) fields.emplace_back("max_age_ms", age);
  return ask(c, "$SYS.queue.add", q.name, fields, timeout);
}

std::string remove_queue(client& c, std::string_view name, std::chrono::milliseconds timeout) {
  return ask(c, "$SYS.queue.rm", name, {{"name", name}}, timeout);
}

} // namespace plexus
