// SPDX-License-Identifier: Apache-2.0
// What a handler reaches through its context: the envelope, publishing,
// replies, requests with a continuation, trace context and a log line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>
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

std::string random_hex(std::size_t bytes) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes * 2);
  std::uint64_t bits = 0;
  for (std::size_t i = 0; i < bytes * 2; ++i) {
    if (i % 16 == 0) bits = rng();
    out.push_back(digits[bits & 0xf]);
    bits >>= 4;
  }
  return out;
}

bool is_hex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

// The trace id of a W3C traceparent "00-<32 hex>-<16 hex>-<2 hex>", or
// empty when it is not one (an all-zero id is invalid too).
std::string_view trace_id_of(std::string_view tp) {
  if (tp.size() != 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-') return {};
  auto id = tp.substr(3, 32);
  if (!is_hex(id) || id.find_first_not_of('0') == std::string_view::npos) return {};
  return id;
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
std::string_view context::traceparent() const noexcept { return d_.traceparent; }

std::string_view context::trace_id() {
  auto& id = inv_ ? inv_->trace_id : trace_id_; // an instance's: shared by its continuations
  if (id.empty()) {
    auto incoming = trace_id_of(d_.traceparent);
    id = incoming.empty() ? random_hex(16) : std::string{incoming};
  }
  return id;
}

std::string_view context::span_id() {
  auto& id = inv_ ? inv_->span_id : span_id_;
  if (id.empty()) id = random_hex(8);
  return id;
}

void detail::begin_span(invocation& inv, const delivery& d) {
  // Cheap on purpose (it runs for every message): ids are made only when
  // something asks for them, and the sampling decision is the incoming
  // traceparent's flag, or a random draw for a trace that starts here.
  inv.trace_id.clear();
  inv.span_id.clear();
  inv.sampled = trace_id_of(d.traceparent).empty()
                  ? inv.spans && inv.spans->sample_new_trace()
                  : d.traceparent.substr(53, 2) == "01";
  inv.start_ns = now_ns();
  inv.request_failure = span_status::ok;
  inv.request_cause.clear();
  inv.request_callee.clear();
}

std::string context::outgoing_traceparent() {
  std::string tp = "00-";
  tp += trace_id();
  tp += '-';
  tp += span_id();
  tp += inv_ && !inv_->sampled ? "-00" : "-01";
  return tp;
}

std::string detail::parent_span_of(std::string_view traceparent) {
  return trace_id_of(traceparent).empty() ? std::string{} : std::string{traceparent.substr(36, 16)};
}

namespace {
std::string derived_msg_id(std::string_view input, const std::string& function, std::uint32_t n) {
  if (input.empty()) return random_hex(16);
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
    client_.publish(topic, payload, o);
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
    if (code != 0) t->failed.store(code, std::memory_order_relaxed);
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
  inv_->request_span_id = random_hex(8);
  inv_->request_start_ns = now;
  std::string tp = "00-";
  tp += trace_id();
  tp += '-';
  tp += inv_->request_span_id;
  tp += inv_->sampled ? "-01" : "-00";
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
