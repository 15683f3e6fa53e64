// SPDX-License-Identifier: Apache-2.0
// Durable queues declared at run time (issue #19): a request on
// $SYS.queue.add or $SYS.queue.rm, answered by the broker the requester is
// connected to, which becomes the queue's home. A declaration is kept in
// the store (group "$queues") before the answer says "created", so the
// queue and what it keeps survive a restart; restore() reads it back
// before the queue's messages (the store gives records in id order, and a
// declaration is older than anything its queue captured).
//
// The declaration travels in the request's headers (brokers/PROTOCOL.md
// "Durable queues"): name, subjects (space-separated), max_msgs,
// max_bytes, max_age_ms; the store keeps it as the same PUB header.
#include <algorithm>
#include <charconv>

#include "state.hpp"

namespace plexus::broker {

namespace {

constexpr std::string_view add_topic = "$SYS.queue.add", rm_topic = "$SYS.queue.rm";
constexpr std::string_view declarations = "$queues"; // the store group they are kept in

bool read_number(std::string_view text, std::uint64_t& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && end == text.data() + text.size();
}

// A declaration from a request's (or a stored record's) headers; the
// limits it leaves out keep durable_config's defaults.
std::string declaration_of(const wire::string_map_view& headers, durable_config& dc) {
  dc.name = std::string{headers.find("name")};
  if (dc.name.empty()) return "a declaration needs a `name` header";
  auto subjects = headers.find("subjects");
  for (std::size_t at = 0; at < subjects.size();) {
    auto next = subjects.find(' ', at);
    if (next == std::string_view::npos) next = subjects.size();
    if (next > at) dc.subjects.emplace_back(subjects.substr(at, next - at));
    at = next + 1;
  }
  for (auto [key, field] : {std::pair{"max_msgs", &dc.max_msgs}, std::pair{"max_bytes", &dc.max_bytes}}) {
    auto text = headers.find(key);
    if (!text.empty() && !read_number(text, *field))
      return "durable queue '" + dc.name + "': " + key + " '" + std::string{text}
             + "' is not a whole number";
  }
  if (auto text = headers.find("max_age_ms"); !text.empty()) {
    std::uint64_t ms = 0;
    if (!read_number(text, ms) || ms > static_cast<std::uint64_t>(INT64_MAX / 1'000'000))
      return "durable queue '" + dc.name + "': max_age_ms '" + std::string{text}
             + "' is not a whole number of milliseconds";
    dc.max_age = milliseconds{static_cast<std::int64_t>(ms)};
  }
  return {};
}

// What the store keeps of a declaration: a PUB header on add_topic with
// the declaration's headers, all its limits spelled out.
std::string encode_declaration(const durable_config& dc) {
  std::string subjects;
  for (auto& s : dc.subjects) subjects += (subjects.empty() ? "" : " ") + s;
  auto msgs = std::to_string(dc.max_msgs), bytes = std::to_string(dc.max_bytes),
       age = std::to_string(dc.max_age.count());
  std::string packed;
  auto headers = wire::pack_string_map({{"name", dc.name}, {"subjects", subjects},
                                        {"max_msgs", msgs}, {"max_bytes", bytes},
                                        {"max_age_ms", age}},
                                       packed);
  wire::header h;
  h.kind = wire::op::pub;
  h.topic = add_topic;
  h.headers = headers;
  std::string out;
  wire::encode_header(h, out);
  return out;
}

bool same_subjects(std::vector<std::string> a, std::vector<std::string> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  return a == b;
}

} // namespace

bool is_queue_admin(std::string_view topic) noexcept {
  return topic == add_topic || topic == rm_topic;
}

void core::state::answer_admin(const wire::header& h, std::string_view reply,
                               std::string_view failure) {
  if (failure.empty()) {
    publish_internal(h.reply_to, reply);
    return;
  }
  std::string packed;
  auto from = "broker " + cfg.id;
  auto headers = wire::pack_string_map(
    {{"plexus-failure", "rejected"}, {"plexus-from", from}, {"plexus-cause", failure}}, packed);
  publish_internal(h.reply_to, {}, headers.raw(), headers.size());
}

void core::state::on_queue_admin(connection& c, const wire::header& h) {
  if (h.reply_to.empty()) {
    ++stats.bad_frames;
    send_err(c, status::forbidden, std::string{h.topic} + " is a request: it needs a reply-to", &h);
    return;
  }
  ++stats.queue_admin;
  durable_config dc;
  if (auto why = declaration_of(h.headers, dc); !why.empty()) return answer_admin(h, {}, why);
  if (auto home = durable_homes.find(dc.name); home != durable_homes.end())
    return answer_admin(h, {}, "durable queue '" + dc.name + "' is kept by broker '"
                                 + home->second->home + "': ask there");
  auto* d = durable_named(dc.name);
  if (h.topic == rm_topic) {
    if (!d) return answer_admin(h, {}, "no durable queue '" + dc.name + "' on broker '" + cfg.id + "'");
    if (d->decl_id == 0)
      return answer_admin(h, {}, "durable queue '" + dc.name
                                   + "' is declared in the broker's configuration: remove it there");
    if (!d->grp->members.empty())
      return answer_admin(h, {}, "durable queue '" + dc.name + "' has "
                                   + std::to_string(d->grp->members.size())
                                   + " member(s) subscribed: stop them first");
    auto dropped = d->messages;
    remove_durable(*d);
    return answer_admin(h, "removed, " + std::to_string(dropped) + " message(s) dropped", {});
  }
  if (!cfg.store)
    return answer_admin(h, {}, "broker '" + cfg.id
                                 + "' keeps no store (start it with --store DIR): no durable queue "
                                   "can be declared on it");
  if (auto why = durable_problem(dc); !why.empty()) return answer_admin(h, {}, why);
  if (d) {
    if (!same_subjects(d->cfg.subjects, dc.subjects))
      return answer_admin(h, {}, "durable queue '" + dc.name
                                   + "' exists with other subjects; remove it first to change them");
    return answer_admin(h, "exists", {});
  }
  // A plain queue group of that name would take the same messages beside it.
  for (auto& [key, g] : groups)
    if (!g->dur && g->name == dc.name && (!g->members.empty() || !g->remote.empty()))
      return answer_admin(h, {}, "queue group '" + dc.name
                                   + "' has members subscribed as a plain queue group: stop "
                                     "them, declare it, start them again");
  auto& made = add_durable(dc);
  made.decl_id = next_store_id++;
  store_ops.push_back({store_op::kind::append, made.decl_id, std::string{declarations},
                       encode_declaration(dc)});
  // "created" once the declaration is on disk (stored()).
  awaiting_decl.emplace_back(made.decl_id, std::string{h.reply_to});
}

bool core::state::restore_declaration(std::uint64_t id, std::string_view body, std::string& why) {
  wire::header h;
  if (auto err = wire::decode_header(body, cfg.limits, h); err || h.topic != add_topic) {
    why = err ? "a declaration that does not decode: " + wire::to_string(err)
              : std::string{"a declaration that is not one"};
    return false;
  }
  durable_config dc;
  if (why = declaration_of(h.headers, dc); !why.empty()) return false;
  if (durables.contains(dc.name) || durable_homes.contains(dc.name)) {
    // The configuration declares it now: that one wins, this record goes.
    store_ops.push_back({store_op::kind::ack, id, {}, {}});
    return true;
  }
  if (why = durable_problem(dc); !why.empty()) return false;
  add_durable(dc).decl_id = id;
  return true;
}

bool is_declaration_group(std::string_view group) noexcept { return group == declarations; }

} // namespace plexus::broker
