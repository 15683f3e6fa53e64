// SPDX-License-Identifier: Apache-2.0
// What a handler reaches through its context: the envelope, publishing,
// replies, requests with a continuation, trace context and a log line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <stdexcept>

#include "function_pool.hpp"
#include "instance.hpp"
#include "plexus/node.hpp"
#include "span_sink.hpp"

namespace plexus {

namespace {

// The msg id of a reliable function's n-th publish for one message: the
// message's id, the function and n (hashed when that would not fit the
// wire's 64 bytes). A message without an id gets a random one each time.
std::string derived_msg_id(std::string_view input, const std::string& function, std::uint32_t n);

using detail::random_id;

std::string random_hex128() {
  std::string out;
  out.reserve(32);
  detail::append_hex(out, random_id());
  detail::append_hex(out, random_id());
  return out;
}

// A W3C traceparent "00-<32 hex>-<16 hex>-<2 hex>": its trace id, parent
// span id and sampled flag (bit 0 of the flags). False when it is not one
// (an all-zero trace id is invalid too).
bool parse_traceparent(std::string_view tp, std::uint64_t& hi, std::uint64_t& lo,
                       std::uint64_t& parent, bool& sampled) noexcept {
  if (tp.size() != 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-') return false;
  std::uint64_t h = 0, l = 0, p = 0;
  if (!detail::parse_hex(tp.substr(3, 16), h) || !detail::parse_hex(tp.substr(19, 16), l)
      || !detail::parse_hex(tp.substr(36, 16), p) || (h | l) == 0)
    return false;
  auto flag = tp[54];
  if (!((flag >= '0' && flag <= '9') || (flag >= 'a' && flag <= 'f'))) return false;
  hi = h;
  lo = l;
  parent = p;
  sampled = ((flag >= 'a' ? flag - 'a' + 10 : flag - '0') & 1) != 0;
  return true;
}

std::string traceparent_of(std::uint64_t hi, std::uint64_t lo, std::uint64_t span, bool sampled) {
  std::string tp;
  tp.reserve(55);
  tp = "00-";
  detail::append_hex(tp, hi);
  detail::append_hex(tp, lo);
  tp += '-';
  detail::append_hex(tp, span);
  tp += sampled ? "-01" : "-00";
  return tp;
}

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count());
}

} // namespace

std::string_view context::topic() const noexcept { return d_.topic; }
std::string_view context::msg_id() const noexcept { return d_.msg_id; }
std::string_view context::reply_to() const noexcept { return d_.reply_to; }
std::uint32_t context::delivery() const noexcept { return d_.count; }
std::uint64_t context::deadline_ns() const noexcept { return d_.deadline_ns; }
bool context::cold_start() const noexcept { return inv_ && inv_->cold; }
std::uint64_t context::cold_start_ns() const noexcept { return inv_ && inv_->cold ? inv_->cold_ns : 0; }
std::uint64_t context::since_arrival_ns() const noexcept {
  if (!inv_ || d_.arrived_ns == 0) return 0;
  return static_cast<std::uint64_t>(std::max<std::int64_t>(0, detail::steady_ns() - d_.arrived_ns));
}
std::string_view context::traceparent() const noexcept { return d_.traceparent; }
std::optional<std::chrono::milliseconds> context::next_retry_delay() const noexcept {
  if (!inv_ || !inv_->opts) return std::nullopt;
  auto next = detail::decide_retry(*inv_->opts, d_.count, inv_->jitter, std::chrono::milliseconds{-1});
  if (!next.retry) return std::nullopt;
  return next.delay;
}

void detail::note_overloaded(invocation& inv, std::string_view topic) {
  if (!inv.overloaded) inv.paused_topic = std::string{topic};
  inv.overloaded = true;
}

void detail::ensure_ids(invocation& inv) {
  if ((inv.trace_hi | inv.trace_lo) == 0) {
    inv.trace_hi = random_id();
    inv.trace_lo = random_id();
  }
  if (inv.span == 0) inv.span = random_id();
}

std::string_view context::trace_id() {
  if (!inv_) { // outside an instance: ids of its own
    if (trace_id_.empty()) {
      std::uint64_t hi = 0, lo = 0, parent = 0;
      bool sampled = false;
      trace_id_ = parse_traceparent(d_.traceparent, hi, lo, parent, sampled)
                    ? std::string{d_.traceparent.substr(3, 32)}
                    : random_hex128();
    }
    return trace_id_;
  }
  // An instance's: shared by its continuations.
  detail::ensure_ids(*inv_);
  if (inv_->trace_hex.empty()) {
    detail::append_hex(inv_->trace_hex, inv_->trace_hi);
    detail::append_hex(inv_->trace_hex, inv_->trace_lo);
  }
  return inv_->trace_hex;
}

std::string_view context::span_id() {
  if (!inv_) {
    if (span_id_.empty()) detail::append_hex(span_id_, random_id());
    return span_id_;
  }
  detail::ensure_ids(*inv_);
  if (inv_->span_hex.empty()) detail::append_hex(inv_->span_hex, inv_->span);
  return inv_->span_hex;
}

void detail::begin_span(invocation& inv, const delivery& d) {
  // Cheap on purpose (it runs for every message): ids are made only when
  // something asks for them, and the sampling decision is the incoming
  // traceparent's flag, or a random draw for a trace that starts here.
  inv.trace_hex.clear();
  inv.span_hex.clear();
  inv.span = 0;
  bool sampled = false;
  if (parse_traceparent(d.traceparent, inv.trace_hi, inv.trace_lo, inv.parent, sampled)) {
    inv.sampled = sampled;
  } else {
    inv.trace_hi = inv.trace_lo = inv.parent = 0;
    inv.sampled = inv.spans && inv.spans->sample_new_trace();
  }
  inv.start_ns = now_ns();
  inv.request_failure = span_status::ok;
  inv.request_cause.clear();
  inv.request_callee.clear();
  inv.overloaded = false;
  inv.paused_topic.clear();
}

std::string context::outgoing_traceparent() {
  if (!inv_) {
    auto trace = std::string{trace_id()};
    std::string tp = "00-" + trace + '-' + std::string{span_id()} + "-01";
    return tp;
  }
  detail::ensure_ids(*inv_);
  return traceparent_of(inv_->trace_hi, inv_->trace_lo, inv_->span, inv_->sampled);
}

namespace {
std::string derived_msg_id(std::string_view input, const std::string& function, std::uint32_t n) {
  if (input.empty()) return random_hex128();
  auto id = std::string{input} + '/' + function + '#' + std::to_string(n);
  if (id.size() <= 64) return id;
  std::uint64_t h = 1469598103934665603ull; // FNV-1a 64
  for (unsigned char ch : id) h = (h ^ ch) * 1099511628211ull;
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return std::string{input.substr(0, 40)} + '/' + out;
}
} // namespace

void context::publish(std::string_view topic, std::string_view payload) {
  auto tp = outgoing_traceparent();
  publish_options o;
  o.traceparent = tp;
  if (!inv_ || !inv_->reliable) {
    try {
      client_.publish(topic, payload, o);
    } catch (const publish_error& e) {
      // In an instance a paused topic is refused, never waited for (the
      // runtime's paused_publish::fail): the invocation ends `overloaded`
      // even if the handler catches this.
      if (inv_ && e.code == code_of(status::overloaded)) detail::note_overloaded(*inv_, topic);
      throw;
    }
    return;
  }
  // Confirmed, under an id the same run of this message gives again: a
  // repeat after a crash is dropped by the broker, not passed on.
  auto& t = inv_->tracker;
  if (!t) t = std::make_shared<detail::publish_tracker>();
  auto id = derived_msg_id(d_.msg_id, inv_->name ? *inv_->name : std::string{}, t->published++);
  o.msg_id = id;
  t->pending.fetch_add(1, std::memory_order_relaxed);
  client_.publish_confirmed(topic, payload, [t, pool = inv_->pool](std::uint32_t code) {
    // Delivered to nobody is not delivered: the message is run again later.
    // A consumer that took it and gave up on it (dead-lettered: it is on
    // $DLQ with the reason) or found it expired has given its verdict,
    // which a re-run cannot change: this message is done. (Re-run, it
    // published a new message for each try: one poison order was
    // quarantined once per retry of its upstream.)
    bool verdict = code == code_of(status::dead_lettered) || code == code_of(status::expired);
    if (code != 0 && !verdict) t->failed.store(code, std::memory_order_relaxed);
    if (t->pending.fetch_sub(1, std::memory_order_acq_rel) == 1) detail::post_published(pool, t);
  }, o);
}

void context::reply(std::string_view payload) {
  if (d_.reply_to.empty()) return;
  auto tp = outgoing_traceparent();
  publish_options o;
  o.traceparent = tp;
  client_.publish(d_.reply_to, payload, o);
}

result<void> context::request(std::string_view topic, std::string_view payload,
                              std::chrono::milliseconds timeout, continuation then) {
  if (!inv_) throw std::logic_error("context::request outside a function instance");
  if (inv_->then) throw std::logic_error("context::request: one request at a time per message");
  if (!then) throw std::invalid_argument("context::request: no continuation");
  // The caller's deadline bounds ours, and travels on.
  auto now = now_ns();
  auto budget = std::max(timeout, std::chrono::milliseconds{0});
  auto deadline = now + static_cast<std::uint64_t>(budget.count()) * 1'000'000u;
  if (d_.deadline_ns != 0) {
    deadline = std::min(deadline, d_.deadline_ns);
    auto left = d_.deadline_ns > now ? d_.deadline_ns - now : 0;
    budget = std::min(budget, std::chrono::milliseconds{(left + 999'999) / 1'000'000});
  }
  // The request is a span of its own, the callee's parent.
  inv_->request_topic = std::string{topic};
  inv_->request_span = random_id();
  inv_->request_start_ns = now;
  detail::ensure_ids(*inv_);
  auto tp = traceparent_of(inv_->trace_hi, inv_->trace_lo, inv_->request_span, inv_->sampled);
  publish_options o;
  o.deadline_ns = deadline;
  o.traceparent = tp;
  auto token = ++inv_->token;
  client_.request_async(topic, payload, budget,
                        [inst = inv_->instance, token](plexus::reply r) {
                          detail::post_reply(inst, token, std::move(r));
                        },
                        o);
  inv_->then = std::move(then); // the reply is handled after this handler returns
  return result<void>{detail::pending_tag{}};
}

void context::log(log_level level, std::string_view text) {
  static constexpr const char* names[] = {"debug", "info", "warn", "error"};
  auto t = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(t);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  auto id = trace_id();
  std::fprintf(stderr, "%s.%03lldZ %-5s %s msg=%.*s trace=%.*s %.*s\n", stamp,
               static_cast<long long>(ms), names[static_cast<int>(level) & 3],
               inv_ && inv_->name ? inv_->name->c_str() : "-", static_cast<int>(d_.msg_id.size()),
               d_.msg_id.data(), static_cast<int>(id.size()), id.data(),
               static_cast<int>(text.size()), text.data());
}

} // namespace plexus
