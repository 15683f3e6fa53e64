// SPDX-License-Identifier: Apache-2.0
// Request circuit breakers: the state machine per topic, and the
// `$SYS.breaker.*` event's msgpack (a map of strings and unsigned
// integers, with msgpack-c as the other $SYS events).
#include "breaker_core.hpp"

#include <algorithm>
#include <cassert>
#include <limits>
#include <span>
#include <stdexcept>
#include <tuple>
#include <type_traits>

#include <msgpack.hpp>


namespace plexus {

const char* to_string(breaker_state s) noexcept {
  switch (s) {
    case breaker_state::closed: return "closed";
    case breaker_state::open: return "open";
    case breaker_state::half_open: return "half_open";
  }
  return "unknown";
}

} // namespace plexus

namespace plexus::detail {

request_outcome outcome_of(std::uint32_t code, std::string_view failure) noexcept {
  if (code == 0) return request_outcome::success;
  if (code == status_timeout) return request_outcome::timeout;
  if (code == code_of(status::no_responders)) return request_outcome::no_responders;
  if (code == code_of(status::overloaded) || code == status_outbox_full)
    return request_outcome::overloaded;
  if (code == status_failed) {
    // span_status names (plexus/trace.hpp), which this library does not link
    if (failure == "crash") return request_outcome::crash;
    if (failure == "timeout") return request_outcome::timeout;
    return request_outcome::error;
  }
  // disconnected, session lost, too large, circuit open, a broker's ERR
  // about the PUB itself: the callee was never asked.
  return request_outcome::neutral;
}

bool counts_as_failure(const breaker_options& o, request_outcome r) noexcept {
  switch (r) {
    case request_outcome::timeout: return o.count_timeouts;
    case request_outcome::no_responders: return o.count_no_responders;
    case request_outcome::crash: return o.count_crashes;
    case request_outcome::error: return o.count_errors;
    case request_outcome::overloaded: return o.count_overloaded;
    case request_outcome::success:
    case request_outcome::neutral: return false;
  }
  return false;
}

breaker_core::breaker_core(breaker_options opts)
  : opts_(opts),
    step_width_(std::max<std::chrono::nanoseconds>(
      std::chrono::nanoseconds{1},
      std::chrono::duration_cast<std::chrono::nanoseconds>(opts.window) / steps)) {
  if (opts_.trials == 0) opts_.trials = 1;
  if (opts_.min_requests == 0) opts_.min_requests = 1;
}

std::int64_t breaker_core::step_of(time_point now) const noexcept {
  return static_cast<std::int64_t>(now.time_since_epoch() / step_width_);
}

std::pair<std::uint64_t, std::uint64_t> breaker_core::totals(const entry& e, time_point now) const {
  auto current = step_of(now);
  std::uint64_t requests = 0, failures = 0;
  for (const auto& s : e.window)
    if (s.index >= 0 && s.index <= current && current - s.index < static_cast<std::int64_t>(steps)) {
      requests += s.requests;
      failures += s.failures;
    }
  return {requests, failures};
}

breaker_core::entry* breaker_core::find_or_add(std::string_view topic, time_point now) {
  if (auto it = entries_.find(topic); it != entries_.end()) return &it->second;
  if (entries_.size() >= opts_.max_topics) {
    // Forget closed breakers that remember nothing.
    std::erase_if(entries_, [&](const auto& kv) {
      return kv.second.state == breaker_state::closed && totals(kv.second, now).first == 0;
    });
    if (entries_.size() >= opts_.max_topics) return nullptr;
  }
  return &entries_.emplace(std::string{topic}, entry{}).first->second;
}

void breaker_core::change(entry& e, std::string_view topic, breaker_state to, std::uint64_t requests,
                          std::uint64_t failures, std::uint32_t trials) {
  e.state = to;
  ++e.generation; // outcomes of requests admitted before this say nothing now
  e.trials_out = e.trials_passed = 0;
  transitions_.push_back({std::string{topic}, to, requests, failures, trials});
}

void breaker_core::open(entry& e, std::string_view topic, time_point now, std::uint64_t requests,
                        std::uint64_t failures) {
  std::uint32_t trials = e.state == breaker_state::half_open ? e.trials_out : 0;
  e.opened_at = now;
  e.open_requests = requests;
  e.open_failures = failures;
  ++e.opened;
  e.window = {};
  change(e, topic, breaker_state::open, requests, failures, trials);
}

void breaker_core::wake(entry& e, std::string_view topic, time_point now) {
  if (e.state == breaker_state::open && now - e.opened_at >= opts_.half_open_after)
    change(e, topic, breaker_state::half_open, e.open_requests, e.open_failures, 0);
}

breaker_admission breaker_core::admit(std::string_view topic, time_point now) {
  breaker_admission a;
  auto* e = find_or_add(topic, now);
  if (!e) return a; // untracked: admitted, its outcome goes nowhere
  wake(*e, topic, now);
  a.ticket.tracked = true;
  a.ticket.generation = e->generation;
  a.state = e->state;
  switch (e->state) {
    case breaker_state::closed: return a;
    case breaker_state::half_open:
      if (e->trials_out < opts_.trials) {
        ++e->trials_out;
        a.ticket.trial = true;
        return a;
      }
      break;
    case breaker_state::open:
      a.half_open_in = std::chrono::duration_cast<std::chrono::nanoseconds>(
        opts_.half_open_after - (now - e->opened_at));
      break;
  }
  a.admitted = false;
  a.ticket = {};
  a.requests = e->open_requests;
  a.failures = e->open_failures;
  ++e->refused;
  return a;
}

void breaker_core::record(std::string_view topic, const breaker_ticket& ticket, request_outcome o,
                          time_point now) {
  if (!ticket.tracked) return;
  auto it = entries_.find(topic);
  if (it == entries_.end()) return; // forgotten since (it was closed and empty)
  auto& e = it->second;
  if (ticket.generation != e.generation) return; // from before its last change
  bool failed = counts_as_failure(opts_, o);
  if (ticket.trial) {
    assert(e.state == breaker_state::half_open);
    if (o == request_outcome::neutral) { // it never reached the callee: another may try
      if (e.trials_out > 0) --e.trials_out;
      return;
    }
    if (failed) {
      open(e, topic, now, e.trials_passed + 1, 1);
      return;
    }
    if (++e.trials_passed >= opts_.trials) {
      auto trials = e.trials_passed;
      e.window = {};
      change(e, topic, breaker_state::closed, trials, 0, trials);
    }
    return;
  }
  if (e.state != breaker_state::closed || o == request_outcome::neutral) return;
  auto current = step_of(now);
  auto& s = e.window[static_cast<std::size_t>(current) % steps];
  if (s.index != current) s = {current, 0, 0};
  ++s.requests;
  if (failed) ++s.failures;
  auto [requests, failures] = totals(e, now);
  if (failures > 0 && requests >= opts_.min_requests
      && static_cast<double>(failures) >= opts_.failure_ratio * static_cast<double>(requests))
    open(e, topic, now, requests, failures);
}

std::vector<breaker_transition> breaker_core::take_transitions() {
  std::vector<breaker_transition> out;
  out.swap(transitions_);
  return out;
}

std::vector<breaker_info> breaker_core::snapshot(time_point now) {
  std::vector<breaker_info> out;
  out.reserve(entries_.size());
  for (auto& [topic, e] : entries_) {
    wake(e, topic, now);
    breaker_info b;
    b.topic = topic;
    b.state = e.state;
    if (e.state == breaker_state::closed) std::tie(b.requests, b.failures) = totals(e, now);
    else {
      b.requests = e.open_requests;
      b.failures = e.open_failures;
    }
    b.opened = e.opened;
    b.refused = e.refused;
    out.push_back(std::move(b));
  }
  return out;
}

breaker_state breaker_core::state(std::string_view topic, time_point now) {
  auto it = entries_.find(topic);
  if (it == entries_.end()) return breaker_state::closed;
  wake(it->second, it->first, now);
  return it->second.state;
}

const char* event_word(breaker_state s) noexcept {
  return s == breaker_state::open ? "opened" : to_string(s);
}

// ---------------------------------------------------------------- the event's msgpack

std::string encode_breaker_event(const breaker_event& e) {
  msgpack::sbuffer out;
  msgpack::packer<msgpack::sbuffer> p{out};
  p.pack_map(6);
  p.pack("node").pack(e.node).pack("topic").pack(e.topic).pack("state").pack(e.state);
  p.pack("requests").pack(e.requests).pack("failures").pack(e.failures).pack("trials").pack(e.trials);
  return {out.data(), out.size()};
}

} // namespace plexus::detail

namespace plexus {

breaker_event decode_breaker_event(std::string_view payload) {
  auto fail = [] { return std::runtime_error("not a $SYS.breaker event"); };
  // Small bounds: an event is a flat map of a few keys.
  const msgpack::unpack_limit limit{0, 64, 1 << 16, 0, 0, 2};
  msgpack::object_handle h;
  std::size_t used = 0;
  try {
    h = msgpack::unpack(payload.data(), payload.size(), used, nullptr, nullptr, limit);
  } catch (const std::exception&) {
    throw fail();
  }
  const auto& root = h.get();
  if (used != payload.size() || root.type != msgpack::type::MAP) throw fail();
  breaker_event e;
  bool has_topic = false, has_state = false;
  auto text = [&](const msgpack::object& v, std::string& field) {
    if (v.type != msgpack::type::STR) throw fail();
    field.assign(v.via.str.ptr, v.via.str.size);
  };
  auto whole = [&](const msgpack::object& v, auto& field) {
    using T = std::remove_reference_t<decltype(field)>;
    if (v.type != msgpack::type::POSITIVE_INTEGER || v.via.u64 > std::numeric_limits<T>::max()) throw fail();
    field = static_cast<T>(v.via.u64);
  };
  for (const auto& kv : std::span{root.via.map.ptr, root.via.map.size}) {
    if (kv.key.type != msgpack::type::STR) throw fail();
    const std::string_view key{kv.key.via.str.ptr, kv.key.via.str.size};
    if (key == "node") text(kv.val, e.node);
    else if (key == "topic") {
      text(kv.val, e.topic);
      has_topic = true;
    } else if (key == "state") {
      text(kv.val, e.state);
      has_state = true;
    } else if (key == "requests") whole(kv.val, e.requests);
    else if (key == "failures") whole(kv.val, e.failures);
    else if (key == "trials") whole(kv.val, e.trials);
    // other keys: a later version's, skipped
  }
  if (!has_topic || !has_state) throw fail();
  return e;
}

} // namespace plexus
