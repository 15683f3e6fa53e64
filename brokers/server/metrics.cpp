// SPDX-License-Identifier: Apache-2.0
#include "metrics.hpp"

#include <string>
#include <vector>

#include "plexus/metrics.hpp"

namespace plexus::broker {

std::string prometheus_metrics(const core& b, const shell_figures& s) {
  observe::prometheus_text t;
  const auto& id = b.settings().id;
  const observe::labels l{{"broker", id}};
  const auto& c = b.stats();
  struct counter {
    const char* name;
    const char* help;
    std::uint64_t value;
  };
  const counter counters[] = {
    {"plexus_broker_messages_in_total", "Messages accepted from publishers and peers.", c.msgs_in},
    {"plexus_broker_messages_out_total", "Messages queued for subscribers.", c.msgs_out},
    {"plexus_broker_bytes_in_total", "Payload bytes accepted.", c.bytes_in},
    {"plexus_broker_bytes_out_total", "Payload bytes queued for subscribers.", c.bytes_out},
    {"plexus_broker_bad_frames_total", "Frames that did not decode or broke the protocol.", c.bad_frames},
    {"plexus_broker_slow_consumer_drops_total", "Messages dropped for a full subscriber queue.", c.slow_consumer_drops},
    {"plexus_broker_group_queue_drops_total", "Messages dropped for a full queue group.", c.group_queue_drops},
    {"plexus_broker_flow_pauses_total", "PAUSEs sent: a publisher's queue group reached pause_percent of its queue.", c.pauses},
    {"plexus_broker_flow_resumes_total", "RESUMEs sent: a paused queue group drained to resume_percent.", c.resumes},
    {"plexus_broker_flow_paused_refusals_total", "Confirmed publishes answered 103 while their publisher was paused.", c.paused_refusals},
    {"plexus_broker_flow_overruns_total", "Messages from paused publishers that found their group's queue full (dropped).", c.flow_overruns},
    {"plexus_broker_expired_total", "Messages dropped past their deadline.", c.expired},
    {"plexus_broker_no_responders_total", "Requests that matched no subscriber.", c.no_responders},
    {"plexus_broker_durable_unreachable_total", "Publishes matching a durable queue whose home broker was out of reach (116).", c.durable_unreachable},
    {"plexus_broker_queue_admin_total", "Requests on $SYS.queue.add / $SYS.queue.rm answered.", c.queue_admin},
    {"plexus_broker_duplicates_total", "Publishes dropped as duplicates by msg id.", c.duplicates},
    {"plexus_broker_dedup_evictions_total", "Msg ids forgotten before the dedup window ended (a bound was hit).", c.dedup_evictions},
    {"plexus_broker_acks_total", "Deliveries acknowledged.", c.acks},
    {"plexus_broker_nacks_total", "Deliveries refused by their consumer.", c.nacks},
    {"plexus_broker_redeliveries_total", "Deliveries made again.", c.redeliveries},
    {"plexus_broker_ack_timeouts_total", "Deliveries not acknowledged in time.", c.ack_timeouts},
    {"plexus_broker_dead_letters_total", "Messages dead-lettered.", c.dead_letters},
    {"plexus_broker_confirms_total", "Publisher confirms sent.", c.confirms},
    {"plexus_broker_forwarded_total", "Messages forwarded to peer brokers.", c.forwarded},
    {"plexus_broker_forwards_in_total", "Messages forwarded here by peers.", c.forwards_in},
    {"plexus_broker_forwards_denied_total", "Forwarded messages refused: this broker's policy denies their publisher (code 114).", c.forwards_denied},
    {"plexus_broker_rerouted_total", "Forwards routed again after a peer was lost or returned them.", c.rerouted},
    {"plexus_broker_peer_links_lost_total", "Links to peer brokers lost.", c.peer_links_lost},
    {"plexus_broker_peers_refused_total", "PEER_HELLOs refused: no valid proof of the cluster secret.", c.peers_refused},
    {"plexus_broker_connections_refused_total", "HELLOs refused past max_connections or a user's share.", c.connections_refused},
    {"plexus_broker_heartbeat_timeouts_total", "Connections dropped for silence.", c.heartbeat_timeouts},
    {"plexus_broker_permission_denied_total", "Operations refused for their identity's permissions (code 114).", c.permission_denied},
    {"plexus_broker_open_replies_dropped_total", "Open requests forgotten for the per-connection bound: their answers are refused.", c.open_replies_dropped},
    {"plexus_broker_handshakes_refused_total", "Connections closed when accepted: max_handshakes were in their handshake.", s.handshakes_refused},
    {"plexus_broker_handshakes_failed_total", "ZeroMQ/CURVE handshakes that failed: unknown keys, protocol errors, timeouts, hang-ups.", s.handshakes_failed},
  };
  for (auto& k : counters) {
    t.family(k.name, "counter", k.help);
    t.sample(k.name, l, k.value);
  }
  auto g = b.current();
  const counter gauges[] = {
    {"plexus_broker_connections", "Open connections (clients and peer links).", g.connections},
    {"plexus_broker_subscriptions", "Subscriptions.", g.subscriptions},
    {"plexus_broker_groups", "Queue groups.", g.groups},
    {"plexus_broker_pending_messages", "Messages queued for connections.", g.pending_msgs},
    {"plexus_broker_group_queued_messages", "Messages waiting in queue groups for credit.", g.group_queued},
    {"plexus_broker_group_queue_peak_messages", "The longest a queue group's queue has been (messages).", c.group_queue_peak},
    {"plexus_broker_unacked_messages", "Deliveries awaiting an ACK.", g.unacked},
    {"plexus_broker_dedup_entries", "Msg ids in the dedup window.", g.dedup_entries},
    {"plexus_broker_dedup_bytes", "Bytes the dedup window holds (ids and bookkeeping, no payloads).", g.dedup_bytes},
    {"plexus_broker_peers", "Peer brokers with a live link.", g.peers},
    {"plexus_broker_forwards_unsettled", "Forwards awaiting the peer's outcome.", g.forwards_unsettled},
    {"plexus_broker_handshakes_in_progress", "Connections accepted and still in their ZeroMQ/CURVE handshake.", s.handshakes_in_progress},
  };
  for (auto& k : gauges) {
    t.family(k.name, "gauge", k.help);
    t.sample(k.name, l, k.value);
  }
  if (s.store) {
    const counter store_gauges[] = {
      {"plexus_broker_store_disk_bytes", "Bytes of the store's segment files, buffered writes included.", s.store_disk_bytes},
      {"plexus_broker_store_live_bytes", "Bytes of the store's records of unacked messages.", s.store_live_bytes},
      {"plexus_broker_store_live_messages", "Messages the store keeps (not acked yet).", s.store_live_messages},
      {"plexus_broker_store_segments", "Segment files of the store.", s.store_segments},
      {"plexus_broker_store_orphans", "Messages recovered at start that no durable queue took: left on disk.", s.store_orphans},
    };
    for (auto& k : store_gauges) {
      t.family(k.name, "gauge", k.help);
      t.sample(k.name, l, k.value);
    }
    const counter store_counters[] = {
      {"plexus_broker_store_fsyncs_total", "fdatasync and fsync calls of the store, recovery's included.", s.store_fsyncs},
      {"plexus_broker_store_commits_total", "Store commits that wrote something (each makes publishes durable).", s.store_commits},
      {"plexus_broker_store_torn_tails_cut_total", "Torn tails cut from the store's last segment at recovery.", s.store_torn_tails_cut},
    };
    for (auto& k : store_counters) {
      t.family(k.name, "counter", k.help);
      t.sample(k.name, l, k.value);
    }
  }
  // Per durable queue: its labels made once, each family a row of this table.
  if (auto durables = b.durables(); !durables.empty()) {
    std::vector<observe::labels> dl;
    for (auto& d : durables) dl.push_back({{"broker", id}, {"durable", d.name}});
    struct per_durable {
      const char* name;
      const char* type;
      const char* help;
      std::uint64_t (*read)(const durable_stats&);
    };
    static constexpr per_durable families[] = {
      {"plexus_broker_durable_messages", "gauge", "Messages a durable queue keeps (waiting or in flight).",
       [](const durable_stats& d) { return std::uint64_t{d.messages}; }},
      {"plexus_broker_durable_bytes", "gauge", "Payload bytes a durable queue keeps.",
       [](const durable_stats& d) { return std::uint64_t{d.bytes}; }},
      {"plexus_broker_durable_waiting", "gauge", "Messages of a durable queue waiting for a member with credit.",
       [](const durable_stats& d) { return std::uint64_t{d.waiting}; }},
      {"plexus_broker_durable_members", "gauge", "Subscriptions in a durable queue.",
       [](const durable_stats& d) { return std::uint64_t{d.members}; }},
      {"plexus_broker_durable_stored_total", "counter", "Messages a durable queue kept (appended to the store).",
       [](const durable_stats& d) { return d.stored; }},
      {"plexus_broker_durable_acked_total", "counter", "Messages of a durable queue settled: acked, dead-lettered, expired or aged out.",
       [](const durable_stats& d) { return d.acked; }},
      {"plexus_broker_durable_full_total", "counter", "Publishes a durable queue refused at a limit (code 115).",
       [](const durable_stats& d) { return d.full; }},
      {"plexus_broker_durable_aged_out_total", "counter", "Messages of a durable queue dropped past max_age.",
       [](const durable_stats& d) { return d.aged_out; }},
    };
    for (auto& f : families) {
      t.family(f.name, f.type, f.help);
      for (std::size_t i = 0; i < durables.size(); ++i) t.sample(f.name, dl[i], f.read(durables[i]));
    }
  }
  // With authentication: refusals by the identity that earned them ("" for
  // connections that never proved one).
  t.family("plexus_user_permission_denied_total", "counter",
           "Operations refused for a user's permissions (code 114), by user.");
  for (auto& [user, n] : b.denied_by_user())
    t.sample("plexus_user_permission_denied_total", {{"broker", id}, {"user", user}}, n);
  // Per connection: its labels made once, each family a row of this table.
  auto conns = b.connections();
  std::vector<observe::labels> conn_labels;
  std::vector<std::string> conn_ids;
  conn_ids.reserve(conns.size()); // the labels view these strings
  for (auto& cs : conns) {
    conn_ids.push_back(std::to_string(cs.id));
    conn_labels.push_back({{"broker", id}, {"conn", conn_ids.back()}, {"node", cs.node}});
  }
  struct per_connection {
    const char* name;
    const char* type;
    const char* help;
    std::uint64_t (*read)(const connection_stats&);
  };
  static constexpr per_connection families[] = {
    {"plexus_connection_messages_in_total", "counter", "Messages a connection published.",
     [](const connection_stats& cs) { return cs.msgs_in; }},
    {"plexus_connection_messages_out_total", "counter", "Messages sent to a connection.",
     [](const connection_stats& cs) { return cs.msgs_out; }},
    {"plexus_connection_pending_messages", "gauge", "Messages queued for a connection.",
     [](const connection_stats& cs) { return std::uint64_t{cs.pending_msgs}; }},
    {"plexus_connection_unacked_messages", "gauge", "Deliveries to a connection awaiting an ACK.",
     [](const connection_stats& cs) { return std::uint64_t{cs.unacked}; }},
  };
  for (auto& f : families) {
    t.family(f.name, f.type, f.help);
    for (std::size_t i = 0; i < conns.size(); ++i) t.sample(f.name, conn_labels[i], f.read(conns[i]));
  }
  t.family("plexus_broker_ack_latency_seconds", "histogram",
           "Delivery to ACK of at-least-once deliveries: how long consumers take, network included.");
  observe::write_histogram(t, "plexus_broker_ack_latency_seconds", l, b.ack_latency());
  t.family("plexus_connection_ack_latency_seconds", "histogram",
           "Delivery to ACK of a connection's at-least-once deliveries.");
  for (std::size_t i = 0; i < conns.size(); ++i)
    if (conns[i].ack_latency) // it has ACKed something
      observe::write_histogram(t, "plexus_connection_ack_latency_seconds", conn_labels[i],
                               *conns[i].ack_latency);
  return t.str();
}

} // namespace plexus::broker
