// SPDX-License-Identifier: Apache-2.0
#include "span_sink.hpp"

#include <algorithm>
#include <random>
#include <chrono>

namespace plexus::detail {

span_sink::span_sink(client& c, std::string node, double sample)
  : c_(c), topic_("$SYS.trace." + node),
    threshold_(static_cast<std::uint64_t>(std::clamp(sample, 0.0, 1.0) * 18446744073709551615.0)),
    keep_all_(sample >= 1.0), thread_([this] { run(); }) {
  query_sid_ = c_.subscribe("$SYS.trace-query", [this](const message_view& q) { answer(q); });
}

void span_sink::answer(const message_view& query) {
  if (query.reply_to.empty()) return;
  std::vector<const span*> found;
  std::lock_guard lock{m_};
  bool all = query.payload == "*"; // plexus graph: every span kept
  for (auto& s : recent_)
    if (all || s.trace_id == query.payload) found.push_back(&s);
  if (found.empty()) return; // only nodes that have some answer
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk{buf};
  pk.pack_array(static_cast<std::uint32_t>(found.size()));
  for (auto* s : found) pk.pack(*s);
  c_.publish(query.reply_to, {buf.data(), buf.size()});
}

span_sink::~span_sink() { stop(); }

bool span_sink::sample_new_trace() const noexcept {
  if (keep_all_) return true;
  if (threshold_ == 0) return false;
  thread_local std::uint64_t x = std::random_device{}() | 1; // xorshift64: a draw costs ~1 ns
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return x < threshold_;
}

void span_sink::record(span s, bool sampled) {
  if (s.status == span_status::ok && !sampled) return;
  std::unique_lock lock{m_};
  if (pending_.size() >= max_pending) {
    ++dropped_;
    return;
  }
  pending_.push_back(std::move(s));
  if (pending_.size() == batch) cv_.notify_one();
}

void span_sink::run() {
  std::vector<span> out;
  std::unique_lock lock{m_};
  while (!stopping_) {
    cv_.wait_for(lock, std::chrono::milliseconds{50},
                 [&] { return stopping_ || pending_.size() >= batch; });
    out.swap(pending_);
    lock.unlock();
    publish(out);
    lock.lock();
  }
  out.swap(pending_);
  lock.unlock();
  publish(out);
}

void span_sink::publish(std::vector<span>& spans) {
  for (std::size_t at = 0; at < spans.size(); at += batch) {
    auto n = std::min(batch, spans.size() - at);
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk{buf};
    pk.pack_array(static_cast<std::uint32_t>(n));
    for (std::size_t i = 0; i < n; ++i) pk.pack(spans[at + i]);
    c_.publish(topic_, {buf.data(), buf.size()});
  }
  std::lock_guard lock{m_};
  for (auto& s : spans) {
    recent_.push_back(std::move(s));
    if (recent_.size() > kept) recent_.pop_front();
  }
  spans.clear();
}

void span_sink::stop() {
  {
    std::lock_guard lock{m_};
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  c_.unsubscribe(query_sid_);
}

} // namespace plexus::detail
