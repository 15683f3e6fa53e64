// SPDX-License-Identifier: Apache-2.0
#include "span_sink.hpp"

#include <algorithm>
#include <chrono>
#include <random>
#include <utility>

namespace plexus::detail {

namespace {

std::atomic<std::uint64_t> next_sink_id{1};

// A thread's buffers, one per sink it recorded into. When the thread ends,
// each is marked an orphan: its sink collects it once more and lets go.
struct thread_buffers {
  std::vector<std::pair<std::uint64_t, std::shared_ptr<span_sink::buffer>>> of;
  thread_buffers() = default;
  thread_buffers(const thread_buffers&) = delete;
  thread_buffers& operator=(const thread_buffers&) = delete;
  ~thread_buffers() {
    for (auto& [id, b] : of) b->orphan.store(true, std::memory_order_release);
  }
};

thread_local thread_buffers this_thread_buffers;

} // namespace

span_sink::span_sink(client& c, std::string node, double sample)
  : id_(next_sink_id.fetch_add(1)), c_(c), node_(std::move(node)), topic_("$SYS.trace." + node_),
    threshold_(static_cast<std::uint64_t>(std::clamp(sample, 0.0, 1.0) * 18446744073709551615.0)),
    keep_all_(sample >= 1.0) {
  thread_ = std::thread([this] { run(); });
  query_sid_ = c_.subscribe("$SYS.trace-query", [this](const message_view& q) { answer(q); });
}

span_sink::~span_sink() { stop(); }

const std::string* span_sink::intern(std::string_view name) {
  std::lock_guard lock{names_m_};
  for (auto& n : names_)
    if (n == name) return &n;
  return &names_.emplace_back(name);
}

span_sink::buffer& span_sink::my_buffer() {
  auto& mine = this_thread_buffers.of;
  for (auto& [id, b] : mine)
    if (id == id_) return *b;
  // This thread's first span here. (Entries of sinks gone stay until the
  // thread ends: a few bytes each.)
  auto b = std::make_shared<buffer>();
  {
    std::lock_guard lock{m_};
    buffers_.push_back(b);
  }
  mine.emplace_back(id_, b);
  return *b;
}

void span_sink::wake() {
  {
    std::lock_guard lock{m_};
    full_ = true;
  }
  cv_.notify_one();
}

void span_sink::answer(const message_view& query) {
  if (query.reply_to.empty()) return;
  // "*" (plexus graph: every span kept) or a trace id, 32 hex digits.
  bool all = query.payload == "*";
  std::uint64_t hi = 0, lo = 0;
  if (!all && (query.payload.size() != 32 || !parse_hex(query.payload.substr(0, 16), hi)
               || !parse_hex(query.payload.substr(16), lo)))
    return;
  std::string out;
  {
    std::lock_guard lock{recent_m_};
    std::vector<span_ref> found;
    for (auto& chunk : recent_)
      for (std::size_t i = 0; i < chunk.spans.size(); ++i)
        if (all || (chunk.spans[i].trace_hi == hi && chunk.spans[i].trace_lo == lo))
          found.push_back({&chunk, i});
    if (found.empty()) return; // only nodes that have some answer
    encode_span_batch(node_, found.data(), found.size(), out);
  }
  c_.publish(query.reply_to, out);
}

bool span_sink::sample_new_trace() const noexcept {
  if (keep_all_) return true;
  if (threshold_ == 0) return false;
  thread_local std::uint64_t x = std::random_device{}() | 1; // xorshift64: a draw costs ~1 ns
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return x < threshold_;
}

void span_sink::collect(span_chunk& out) {
  std::vector<std::shared_ptr<buffer>> buffers;
  {
    std::lock_guard lock{m_};
    buffers = buffers_;
  }
  std::vector<const buffer*> orphans;
  for (auto& b : buffers) {
    // An orphan's thread has ended: what it pushed is all there is.
    if (b->orphan.load(std::memory_order_acquire)) orphans.push_back(b.get());
    b->ring.drain(out);
  }
  if (orphans.empty()) return;
  std::lock_guard lock{m_};
  std::erase_if(buffers_, [&](const std::shared_ptr<buffer>& b) {
    return std::find(orphans.begin(), orphans.end(), b.get()) != orphans.end();
  });
}

void span_sink::run() {
  span_chunk chunk; // publish() hands back the room of the oldest it drops
  bool last = false;
  while (!last) {
    {
      std::unique_lock lock{m_};
      cv_.wait_for(lock, std::chrono::milliseconds{50}, [&] { return stopping_ || full_; });
      full_ = false;
      last = stopping_;
    }
    collect(chunk);
    publish(chunk);
  }
}

void span_sink::publish(span_chunk& spans) {
  // One batch each probe_every goes out with a confirm, whose answer says
  // whether anybody subscribes; the rest go out plain, and only while
  // somebody does. (Few confirmed publishes: each takes a place in the
  // broker's dedup window and in the client's unconfirmed outbox.)
  const auto now = std::chrono::steady_clock::now();
  const bool probe = now >= next_probe_ && !spans.empty();
  if (probe) next_probe_ = now + probe_every;
  const bool heard = heard_->load(std::memory_order_relaxed);
  std::size_t from = heard ? 0 : spans.size();
  const std::size_t last = spans.empty() ? 0 : (spans.size() - 1) / batch * batch;
  if (!heard && probe) from = last; // nobody listening: the newest batch only
  for (std::size_t at = from; at < spans.size(); at += batch) {
    auto n = std::min(batch, spans.size() - at);
    refs_.clear();
    for (std::size_t i = 0; i < n; ++i) refs_.push_back({&spans, at + i});
    encoded_.clear();
    encode_span_batch(node_, refs_.data(), n, encoded_);
    if (!probe || at != last) {
      c_.publish(topic_, encoded_);
      continue;
    }
    c_.publish_confirmed(topic_, encoded_, [heard_now = heard_](std::uint32_t code) {
      // 101: accepted, nobody subscribes. Anything else (delivered, or a
      // failure on the way) counts as heard: keep publishing.
      heard_now->store(code != 101, std::memory_order_relaxed);
    });
  }
  if (spans.empty()) return;
  span_chunk room;
  {
    std::lock_guard lock{recent_m_};
    recent_count_ += spans.size();
    recent_.push_back(std::move(spans));
    while (recent_count_ - recent_.front().size() >= kept) {
      recent_count_ -= recent_.front().size();
      room = std::move(recent_.front());
      recent_.pop_front();
    }
  }
  room.clear(); // keeps its room, for the next chunk
  spans = std::move(room);
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
