// SPDX-License-Identifier: Apache-2.0
// Durable queue groups (issue #19): a message matching a durable's subjects
// is copied into it, the copy appended to the store (through the shell,
// as store_ops) and delivered like any queue group's message; the
// publisher's CONFIRM waits until the store says the append is durable;
// the copy's settling (ACK, dead letter, deadline, max_age) ACKs it in the
// store. After a restart the shell hands back what the store kept.
#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "state.hpp"

namespace plexus::broker {

namespace {
// What the store keeps of a message: u8 format (1), u64 when it was first
// kept (ns since the epoch: max_age counts from there, across restarts),
// u32 header length, a PUB header with everything a delivery and the dedup
// need (the publisher's scope and user too), the payload. Little-endian.
constexpr std::uint8_t stored_format = 1;
constexpr std::size_t stored_prefix = 1 + 8 + 4;

template <class T>
void put_le(std::string& out, std::size_t at, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i) out[at + i] = static_cast<char>(v >> (8 * i));
}

template <class T>
T get_le(std::string_view in, std::size_t at) {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i)
    v |= static_cast<T>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  return v;
}

std::string encode_stored(const message& m) {
  wire::header h;
  h.kind = wire::op::pub;
  carry_message(m, h);
  h.publisher = m.publisher;
  h.user = m.user;
  std::string out(stored_prefix, '\0');
  wire::encode_header(h, out);
  out[0] = static_cast<char>(stored_format);
  put_le(out, 1, static_cast<std::uint64_t>(m.kept_at.count()));
  put_le(out, 9, static_cast<std::uint32_t>(out.size() - stored_prefix));
  out.append(m.payload);
  return out;
}

struct stored_message {
  wire::header h;
  std::string_view payload;
  time_point kept_at{};
};

bool decode_stored(std::string_view body, const wire::limits& lim, stored_message& out,
                   std::string& why) {
  if (body.size() < stored_prefix || static_cast<std::uint8_t>(body[0]) != stored_format) {
    why = body.size() < stored_prefix ? "a body of " + std::to_string(body.size()) + " bytes"
                                      : "an unknown format " + std::to_string(static_cast<unsigned char>(body[0]));
    return false;
  }
  out.kept_at = time_point{static_cast<std::int64_t>(get_le<std::uint64_t>(body, 1))};
  auto len = get_le<std::uint32_t>(body, 9);
  if (len > body.size() - stored_prefix) {
    why = "a header longer than its body";
    return false;
  }
  if (auto err = wire::decode_header(body.substr(stored_prefix, len), lim, out.h); err) {
    why = "its header does not decode: " + wire::to_string(err);
    return false;
  }
  if (out.h.kind != wire::op::pub || validate_topic(out.h.topic, lim.topic) != topic_errc::ok) {
    why = "its header is not a publish";
    return false;
  }
  out.payload = body.substr(stored_prefix + len);
  return true;
}
} // namespace

std::string core::state::durable_problem(const durable_config& dc) const {
  if (dc.name.empty() || dc.name.size() > cfg.limits.max_name_bytes)
    return "durable queue: a name of 1 to " + std::to_string(cfg.limits.max_name_bytes) + " bytes";
  if (dc.name.front() == '$') // "$queues" holds the declarations in the store
    return "durable queue '" + dc.name + "': names starting with '$' are the broker's";
  if (dc.subjects.empty()) return "durable queue '" + dc.name + "': no subjects";
  for (auto& p : dc.subjects)
    if (auto e = validate_pattern(p, cfg.limits.topic); e != topic_errc::ok)
      return "durable queue '" + dc.name + "': subject '" + p + "': " + to_string(e);
  if (dc.max_msgs == 0 || dc.max_bytes == 0)
    return "durable queue '" + dc.name + "': max_msgs and max_bytes must be above 0";
  return {};
}

void core::state::setup_durables() {
  for (auto& dc : cfg.durables) {
    if (auto why = durable_problem(dc); !why.empty()) throw std::invalid_argument(why);
    if (durables.contains(dc.name) || durable_homes.contains(dc.name))
      throw std::invalid_argument("durable queue '" + dc.name + "' is declared twice");
    if (!dc.home.empty() && dc.home != cfg.id) {
      // Its home advertises its subjects (interest): publishes go there.
      auto rd = std::make_unique<remote_durable>(remote_durable{dc.name, dc.home});
      for (auto& p : dc.subjects) remote_trie.insert(p, rd.get());
      durable_homes.emplace(dc.name, std::move(rd));
      continue;
    }
    add_durable(dc);
  }
}

durable_queue& core::state::add_durable(const durable_config& dc) {
  auto d = std::make_unique<durable_queue>();
  d->cfg = dc;
  // Its group: keyed apart from any (pattern, queue) group, in the trie
  // under each subject, in `groups` (delayed NACKs find it by key).
  auto g = std::make_unique<group>();
  g->kind = route_kind::group;
  g->key = std::string{"\0durable\0", 9} + dc.name;
  g->pattern = dc.subjects.front();
  g->name = dc.name;
  g->dur = d.get();
  d->grp = g.get();
  for (auto& p : dc.subjects) {
    trie.insert(p, g.get());
    // Peers forward what matches to this broker, the durable's home, as
    // for a plain subscriber here.
    if (++local_patterns[p] == 1) advertise_pattern(p, true);
  }
  groups.emplace(g->key, std::move(g));
  auto& out = *d;
  durables.emplace(dc.name, std::move(d));
  return out;
}

void core::state::remove_durable(durable_queue& d) {
  auto& g = *d.grp;
  // What it keeps goes, acked in the store: waiting, and waiting on a
  // delayed NACK (a member held it and left). Members are gone already.
  for (auto it = delayed_nacks.begin(); it != delayed_nacks.end();) {
    if (it->second.group_key != g.key) {
      ++it;
      continue;
    }
    auto m = std::move(it->second.msg);
    it = delayed_nacks.erase(it);
    settle(*m, status::no_interest);
  }
  while (!g.waiting.empty()) {
    auto q = std::move(g.waiting.front());
    g.waiting.pop_front();
    g.waiting_bytes -= q.msg->payload.size();
    settle(*q.msg, status::no_interest);
  }
  for (auto& p : d.cfg.subjects) {
    trie.erase(p, &g);
    if (auto it = local_patterns.find(p); it != local_patterns.end() && --it->second == 0) {
      local_patterns.erase(it);
      advertise_pattern(p, false);
    }
  }
  if (d.decl_id != 0) store_ops.push_back({store_op::kind::ack, d.decl_id, {}, {}});
  auto name = d.cfg.name;
  groups.erase(g.key); // `g` is gone after this line
  durables.erase(name); // and `d`
}

durable_queue* core::state::durable_named(std::string_view name) const {
  auto it = durables.find(name);
  return it == durables.end() ? nullptr : it->second.get();
}

void core::state::capture(durable_queue& d, const message_ptr& m) {
  if (d.last_route == route_gen) return; // two of its subjects matched
  d.last_route = route_gen;
  auto size = m->payload.size();
  if (d.messages >= d.cfg.max_msgs || d.bytes + size > d.cfg.max_bytes) {
    ++d.full;
    note_outcome(*m, status::full);
    return;
  }
  wire::header h;
  carry_message(*m, h);
  auto copy = message::copy_of(h, m->payload, m->publisher, m->user);
  copy->durable = &d;
  copy->store_id = next_store_id++;
  copy->kept_at = now;
  store_ops.push_back({store_op::kind::append, copy->store_id, d.cfg.name, encode_stored(*copy)});
  ++d.messages;
  d.bytes += size;
  ++d.stored;
  // The publish is settled once its copy is on disk (stored()).
  ++m->unsettled;
  awaiting_store.emplace_back(copy->store_id, m);
  deliver_to_group(*d.grp, {std::move(copy), 0}, nullptr, false);
}

void core::state::release_durable(message& m) {
  auto& d = *m.durable;
  store_ops.push_back({store_op::kind::ack, m.store_id, {}, {}});
  --d.messages;
  d.bytes -= m.payload.size();
  ++d.acked;
}

void core::state::age_out_durables() {
  if (now < next_age_check) return;
  next_age_check = now + milliseconds{1000};
  for (auto& [name, d] : durables) {
    if (d->cfg.max_age.count() <= 0) continue;
    auto& g = *d->grp;
    // Oldest first (a redelivery goes back to the front, older still):
    // what waits past max_age goes; what a member holds waits for it.
    while (!g.waiting.empty() && g.waiting.front().msg->kept_at + d->cfg.max_age <= now) {
      auto q = std::move(g.waiting.front());
      g.waiting.pop_front();
      g.waiting_bytes -= q.msg->payload.size();
      ++d->aged_out;
      settle(*q.msg, status::expired);
    }
  }
}

void core::state::check_remote_durables(message& m) {
  if (durable_homes.empty() || m.from) return; // a peer's message: its origin checked
  remote_scratch.clear();
  remote_trie.match(m.topic, remote_scratch);
  for (auto* rd : remote_scratch) {
    auto p = peers.find(rd->home);
    // forward() marks a peer it sent the message to with this route_gen.
    if (p != peers.end() && p->second->last_route == route_gen && !p->second->links.empty())
      continue;
    ++stats.durable_unreachable;
    note_outcome(m, status::unavailable);
    return;
  }
}

bool core::restore(std::uint64_t id, std::string_view group_name, std::string_view body,
                   time_point now, std::string& why) {
  auto& s = *s_;
  s.now = now;
  if (is_declaration_group(group_name)) {
    if (s.restore_left > 0) --s.restore_left;
    auto ok = s.restore_declaration(id, body, why);
    s.next_store_id = std::max(s.next_store_id, id + 1);
    return ok;
  }
  auto* d = s.durable_named(group_name);
  if (!d) {
    why = "no durable queue '" + std::string{group_name} + "' in this configuration";
    return false;
  }
  stored_message sm;
  if (!decode_stored(body, s.cfg.limits, sm, why)) return false;
  auto copy = message::copy_of(sm.h, sm.payload, sm.h.publisher, sm.h.user);
  copy->durable = d;
  copy->store_id = id;
  copy->kept_at = sm.kept_at;
  ++d->messages;
  d->bytes += sm.payload.size();
  ++d->restored;
  // A publisher re-sending it after the restart hears 0: it is kept. Its
  // window counts from when it was first kept (the store's time): one
  // whose window ended before the restart is not remembered.
  auto newer = s.restore_left > 0 ? --s.restore_left : 0; // messages the store gives after it
  if (!copy->msg_id.empty() && !copy->publisher.empty() && sm.kept_at + s.cfg.dedup_window > now) {
    if (newer >= s.cfg.dedup_entries) { // the newer ones would evict it before any input
      ++s.stats.dedup_evictions;
    } else {
      auto key = dedup_key(copy->publisher, copy->msg_id, s.key_scratch);
      s.stats.dedup_evictions += s.dedup.insert_settled(key, sm.kept_at, status::ok);
    }
  }
  s.next_store_id = std::max(s.next_store_id, id + 1);
  s.deliver_to_group(*d->grp, {std::move(copy), 0}, nullptr, false);
  s.finish_closes();
  return true;
}

void core::restoring(std::size_t count) {
  s_->restore_left = count;
}

void core::store_ids_from(std::uint64_t next_id) {
  s_->next_store_id = std::max(s_->next_store_id, next_id);
}

std::vector<store_op> core::take_store_ops() { return std::exchange(s_->store_ops, {}); }

void core::stored(std::uint64_t durable_id, time_point now) {
  auto& s = *s_;
  s.now = now;
  while (!s.awaiting_store.empty() && s.awaiting_store.front().first <= durable_id) {
    auto m = std::move(s.awaiting_store.front().second);
    s.awaiting_store.pop_front();
    s.settle(*m, status::ok);
  }
  while (!s.awaiting_decl.empty() && s.awaiting_decl.front().first <= durable_id) {
    auto reply_to = std::move(s.awaiting_decl.front().second);
    s.awaiting_decl.pop_front();
    s.publish_internal(reply_to, "created");
  }
  s.finish_closes();
}

std::vector<durable_stats> core::durables() const {
  std::vector<durable_stats> out;
  out.reserve(s_->durables.size());
  for (auto& [name, d] : s_->durables) {
    durable_stats ds;
    ds.name = name;
    ds.cfg = d->cfg;
    ds.declared = d->decl_id != 0;
    ds.messages = d->messages;
    ds.bytes = d->bytes;
    ds.waiting = d->grp->waiting.size();
    ds.members = d->grp->members.size();
    ds.stored = d->stored;
    ds.acked = d->acked;
    ds.full = d->full;
    ds.aged_out = d->aged_out;
    ds.restored = d->restored;
    out.push_back(std::move(ds));
  }
  return out;
}

} // namespace plexus::broker
