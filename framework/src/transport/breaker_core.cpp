// SPDX-License-Identifier: Apache-2.0
// Request circuit breakers: the state machine per topic, and the
// `$SYS.breaker.*` event's msgpack (written and read by hand: a map of
// strings and unsigned integers, without pulling msgpack into the client).
#include "breaker_core.hpp"

#include <algorithm>
#include <cassert>
#include <limits>
#include <stdexcept>
#include <tuple>
#include <type_traits>


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

namespace {

void put_be(std::string& out, std::uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

void put_str(std::string& out, std::string_view s) {
  if (s.size() < 32) out += static_cast<char>(0xa0 | s.size());
  else if (s.size() <= 0xff) {
    out += static_cast<char>(0xd9);
    put_be(out, s.size(), 1);
  } else if (s.size() <= 0xffff) {
    out += static_cast<char>(0xda);
    put_be(out, s.size(), 2);
  } else {
    out += static_cast<char>(0xdb);
    put_be(out, s.size(), 4);
  }
  out += s;
}

void put_uint(std::string& out, std::uint64_t v) {
  if (v < 128) out += static_cast<char>(v);
  else if (v <= 0xff) {
    out += static_cast<char>(0xcc);
    put_be(out, v, 1);
  } else if (v <= 0xffff) {
    out += static_cast<char>(0xcd);
    put_be(out, v, 2);
  } else if (v <= 0xffffffff) {
    out += static_cast<char>(0xce);
    put_be(out, v, 4);
  } else {
    out += static_cast<char>(0xcf);
    put_be(out, v, 8);
  }
}

struct event_reader {
  std::string_view in;
  std::size_t at = 0;

  [[noreturn]] static void fail() { throw std::runtime_error("not a $SYS.breaker event"); }
  std::uint8_t byte() {
    if (at >= in.size()) fail();
    return static_cast<std::uint8_t>(in[at++]);
  }
  std::uint64_t be(int bytes) {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | byte();
    return v;
  }
  std::string_view bytes(std::uint64_t n) {
    if (n > in.size() - at) fail();
    auto s = in.substr(at, n);
    at += n;
    return s;
  }
  std::uint32_t map_size() {
    auto b = byte();
    if ((b & 0xf0) == 0x80) return b & 0x0f;
    if (b == 0xde) return static_cast<std::uint32_t>(be(2));
    if (b == 0xdf) return static_cast<std::uint32_t>(be(4));
    fail();
  }
  // A string or an unsigned integer: one of them is set.
  bool value(std::string_view& s, std::uint64_t& u) {
    auto b = byte();
    if (b < 0x80) {
      u = b;
      return false;
    }
    if ((b & 0xe0) == 0xa0) {
      s = bytes(b & 0x1f);
      return true;
    }
    switch (b) {
      case 0xcc: u = be(1); return false;
      case 0xcd: u = be(2); return false;
      case 0xce: u = be(4); return false;
      case 0xcf: u = be(8); return false;
      case 0xd9: s = bytes(be(1)); return true;
      case 0xda: s = bytes(be(2)); return true;
      case 0xdb: s = bytes(be(4)); return true;
      default: fail();
    }
  }
};

} // namespace

std::string encode_breaker_event(const breaker_event& e) {
  std::string out;
  out += static_cast<char>(0x80 | 6);
  put_str(out, "node");
  put_str(out, e.node);
  put_str(out, "topic");
  put_str(out, e.topic);
  put_str(out, "state");
  put_str(out, e.state);
  put_str(out, "requests");
  put_uint(out, e.requests);
  put_str(out, "failures");
  put_uint(out, e.failures);
  put_str(out, "trials");
  put_uint(out, e.trials);
  return out;
}

} // namespace plexus::detail

namespace plexus {

breaker_event decode_breaker_event(std::string_view payload) {
  detail::event_reader r{payload};
  breaker_event e;
  auto n = r.map_size();
  bool has_topic = false, has_state = false;
  for (std::uint32_t i = 0; i < n; ++i) {
    std::string_view key, s;
    std::uint64_t u = 0;
    if (!r.value(key, u)) r.fail();
    bool text = r.value(s, u);
    auto want_text = [&](std::string& field) {
      if (!text) r.fail();
      field.assign(s);
    };
    auto want_uint = [&](auto& field) {
      if (text || u > std::numeric_limits<std::remove_reference_t<decltype(field)>>::max()) r.fail();
      field = static_cast<std::remove_reference_t<decltype(field)>>(u);
    };
    if (key == "node") want_text(e.node);
    else if (key == "topic") {
      want_text(e.topic);
      has_topic = true;
    } else if (key == "state") {
      want_text(e.state);
      has_state = true;
    } else if (key == "requests") want_uint(e.requests);
    else if (key == "failures") want_uint(e.failures);
    else if (key == "trials") want_uint(e.trials);
    // other keys: a later version's, skipped
  }
  if (r.at != payload.size() || !has_topic || !has_state) r.fail();
  return e;
}

} // namespace plexus
