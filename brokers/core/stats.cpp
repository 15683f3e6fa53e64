// SPDX-License-Identifier: Apache-2.0
// The broker's stats, published as JSON on $SYS.broker.<id>.stats.
#include <string>

#include "state.hpp"

namespace plexus::broker {

namespace {

void json_string(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += static_cast<char>(ch);
    } else if (ch < 0x20) {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\u00";
      out += hex[ch >> 4];
      out += hex[ch & 15];
    } else {
      out += static_cast<char>(ch);
    }
  }
  out += '"';
}

struct object {
  std::string& out;
  bool first = true;
  explicit object(std::string& o) : out(o) { out += '{'; }
  ~object() { out += '}'; }
  object(const object&) = delete;
  object& operator=(const object&) = delete;
  void key(std::string_view k) {
    if (!first) out += ',';
    first = false;
    json_string(out, k);
    out += ':';
  }
  void num(std::string_view k, std::uint64_t v) {
    key(k);
    out += std::to_string(v);
  }
};

constexpr std::size_t max_listed_connections = 64;

} // namespace

std::string stats_json(const core& b, time_point now) {
  std::string out;
  {
  object root{out};
  root.key("broker");
  json_string(out, b.settings().id);
  root.num("time_ns", static_cast<std::uint64_t>(now.count()));
  const auto& c = b.stats();
  root.key("counters");
  {
    object o{out};
    o.num("msgs_in", c.msgs_in);
    o.num("bytes_in", c.bytes_in);
    o.num("msgs_out", c.msgs_out);
    o.num("bytes_out", c.bytes_out);
    o.num("bad_frames", c.bad_frames);
    o.num("slow_consumer_drops", c.slow_consumer_drops);
    o.num("slow_consumer_disconnects", c.slow_consumer_disconnects);
    o.num("group_queue_drops", c.group_queue_drops);
    o.num("group_queue_peak", c.group_queue_peak);
    o.num("pauses", c.pauses);
    o.num("resumes", c.resumes);
    o.num("paused_refusals", c.paused_refusals);
    o.num("flow_overruns", c.flow_overruns);
    o.num("expired", c.expired);
    o.num("no_responders", c.no_responders);
    o.num("no_interest", c.no_interest);
    o.num("durable_unreachable", c.durable_unreachable);
    o.num("queue_admin", c.queue_admin);
    o.num("duplicates", c.duplicates);
    o.num("dedup_evictions", c.dedup_evictions);
    o.num("acks", c.acks);
    o.num("late_acks", c.late_acks);
    o.num("nacks", c.nacks);
    o.num("redeliveries", c.redeliveries);
    o.num("ack_timeouts", c.ack_timeouts);
    o.num("dead_letters", c.dead_letters);
    o.num("dead_letters_dropped", c.dead_letters_dropped);
    o.num("confirms", c.confirms);
    o.num("connections_opened", c.connections_opened);
    o.num("connections_closed", c.connections_closed);
    o.num("heartbeat_timeouts", c.heartbeat_timeouts);
    o.num("forwarded", c.forwarded);
    o.num("forwards_in", c.forwards_in);
    o.num("forwards_denied", c.forwards_denied);
    o.num("relays", c.relays);
    o.num("late_relays", c.late_relays);
    o.num("rerouted", c.rerouted);
    o.num("peer_links_lost", c.peer_links_lost);
    o.num("self_links", c.self_links);
    o.num("peers_refused", c.peers_refused);
    o.num("connections_refused", c.connections_refused);
    o.num("permission_denied", c.permission_denied);
    o.num("open_replies_dropped", c.open_replies_dropped);
  }
  auto g = b.current();
  root.key("gauges");
  {
    object o{out};
    o.num("connections", g.connections);
    o.num("subscriptions", g.subscriptions);
    o.num("groups", g.groups);
    o.num("pending_msgs", g.pending_msgs);
    o.num("pending_bytes", g.pending_bytes);
    o.num("group_queued", g.group_queued);
    o.num("unacked", g.unacked);
    o.num("dedup_entries", g.dedup_entries);
    o.num("dedup_bytes", g.dedup_bytes);
    o.num("peers", g.peers);
    o.num("peer_routes", g.peer_routes);
    o.num("forwards_unsettled", g.forwards_unsettled);
  }
  root.key("peers");
  out += '[';
  auto peers = b.peers();
  for (std::size_t i = 0; i < peers.size(); ++i) {
    if (i) out += ',';
    const auto& ps = peers[i];
    object o{out};
    o.key("id");
    json_string(out, ps.id);
    o.num("links", ps.links);
    o.num("interests", ps.interests);
    o.num("groups", ps.groups);
    o.num("unsettled", ps.unsettled);
    o.num("fwd_out", ps.fwd_out);
    o.num("fwd_in", ps.fwd_in);
  }
  out += ']';
  root.key("durables");
  out += '[';
  auto durables = b.durables();
  for (std::size_t i = 0; i < durables.size(); ++i) {
    if (i) out += ',';
    const auto& d = durables[i];
    object o{out};
    o.key("name");
    json_string(out, d.name);
    o.key("subjects");
    out += '[';
    for (std::size_t j = 0; j < d.cfg.subjects.size(); ++j) {
      if (j) out += ',';
      json_string(out, d.cfg.subjects[j]);
    }
    out += ']';
    o.num("max_msgs", d.cfg.max_msgs);
    o.num("max_bytes", d.cfg.max_bytes);
    o.num("max_age_ms", static_cast<std::uint64_t>(d.cfg.max_age.count()));
    o.key("declared");
    out += d.declared ? "\"runtime\"" : "\"config\"";
    o.num("messages", d.messages);
    o.num("bytes", d.bytes);
    o.num("waiting", d.waiting);
    o.num("members", d.members);
    o.num("stored", d.stored);
    o.num("acked", d.acked);
    o.num("full", d.full);
    o.num("aged_out", d.aged_out);
    o.num("restored", d.restored);
  }
  out += ']';
  auto conns = b.connections();
  root.key("connections");
  out += '[';
  for (std::size_t i = 0; i < conns.size() && i < max_listed_connections; ++i) {
    if (i) out += ',';
    const auto& cs = conns[i];
    object o{out};
    o.num("id", cs.id);
    o.key("node");
    json_string(out, cs.node);
    if (!cs.user.empty()) {
      o.key("user");
      json_string(out, cs.user);
      o.num("permission_denied", cs.permission_denied);
    }
    o.num("msgs_in", cs.msgs_in);
    o.num("msgs_out", cs.msgs_out);
    o.num("bad_frames", cs.bad_frames);
    o.num("subscriptions", cs.subscriptions);
    o.num("pending_msgs", cs.pending_msgs);
    o.num("pending_bytes", cs.pending_bytes);
    o.num("unacked", cs.unacked);
    if (cs.flow_control) {
      o.num("paused", cs.paused);
      o.num("pauses", cs.pauses);
    }
  }
  out += ']';
  } // closes the root object
  return out;
}

void core::state::publish_stats() {
  // The stats describe this core; `owner` is set by the core that owns us.
  auto topic = "$SYS.broker." + cfg.id + ".stats";
  if (validate_topic(topic, cfg.limits.topic) != topic_errc::ok) return;
  publish_internal(topic, stats_json(*owner, now));
}

} // namespace plexus::broker
