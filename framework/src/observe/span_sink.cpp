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

/// Calls `out(refs + at, count)` for consecutive runs of the `n` spans at
/// `refs` whose encoding fits in `most` bytes (a span alone may not: at
/// most 4 texts of span_text_max).
template <class Out>
void in_messages(const span_ref* refs, std::size_t n, std::size_t most, Out&& out) {
  auto bound = [&](std::size_t i) { return span_chunk::wire_bound(refs[i].chunk->spans[refs[i].index]); };
  for (std::size_t at = 0; at < n;) {
    std::size_t end = at + 1, bytes = bound(at);
    for (std::size_t next = 0; end < n && (next = bound(end)) + bytes <= most; ++end) bytes += next;
    out(refs + at, end - at);
    at = end;
  }
}

// Out of line: two random_devices take ~10 KiB of stack, which would
// otherwise be set up (and registers saved) on every draw.
[[gnu::noinline, gnu::cold]] std::uint64_t random_seed() {
  return ((std::uint64_t{std::random_device{}()} << 32) | std::random_device{}()) | 1;
}

} // namespace

std::uint64_t random_id() noexcept {
  thread_local std::uint64_t x = 0; // constant-initialised: no guard on each call
  if (x == 0) [[unlikely]] x = random_seed();
  x += 0x9e3779b97f4a7c15ull;
  auto z = x;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return z != 0 ? z : 1;
}

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
  // Most threads record into one sink: the last one found is asked first.
  thread_local std::uint64_t last_id = 0;
  thread_local buffer* last = nullptr;
  if (last_id == id_) return *last;
  auto& mine = this_thread_buffers.of;
  for (auto& [id, b] : mine)
    if (id == id_) {
      last_id = id_;
      last = b.get();
      return *b;
    }
  // This thread's first span here. (Entries of sinks gone stay until the
  // thread ends: a few bytes each.)
  auto b = std::make_shared<buffer>();
  {
    std::lock_guard lock{m_};
    buffers_.push_back(b);
  }
  mine.emplace_back(id_, b);
  last_id = id_;
  last = b.get();
  return *b;
}

void span_sink::overflow(const span_record& r, std::string_view topic, std::string_view msg_id,
                         std::string_view cause, std::string_view callee) {
  topic = topic.substr(0, span_text_max);
  msg_id = msg_id.substr(0, span_text_max);
  cause = cause.substr(0, span_text_max);
  callee = callee.substr(0, span_text_max);
  bool first = false;
  {
    std::lock_guard lock{overflow_m_};
    if (overflow_.size() >= overflow_spans ||
        overflow_.text.size() + topic.size() + msg_id.size() + cause.size() + callee.size() > overflow_text) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    first = overflow_.empty();
    overflow_.add(r, topic, msg_id, cause, callee);
  }
  if (first) wake();
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
  // As many answers as it takes to stay within a payload's limit: the
  // asker takes every one that comes within its wait.
  std::vector<std::string> out;
  {
    std::lock_guard lock{recent_m_};
    std::vector<span_ref> found;
    for (auto& [first, chunk] : recent_)
      for (std::size_t i = 0; i < chunk.spans.size(); ++i)
        if (all || (chunk.spans[i].trace_hi == hi && chunk.spans[i].trace_lo == lo))
          found.push_back({&chunk, i});
    // Only nodes that have some answer do.
    in_messages(found.data(), found.size(), message_bytes, [&](const span_ref* refs, std::size_t n) {
      auto& o = out.emplace_back();
      o.resize(encode_span_batch(node_, refs, n, o).size());
    });
  }
  for (auto& o : out) c_.publish(query.reply_to, o);
}

bool span_sink::sample_new_trace() const noexcept {
  if (keep_all_) return true;
  return threshold_ != 0 && random_id() < threshold_;
}

std::size_t span_sink::collect(span_chunk& out) {
  std::vector<std::shared_ptr<buffer>> buffers;
  {
    std::lock_guard lock{m_};
    buffers = buffers_;
  }
  std::vector<const buffer*> orphans;
  std::size_t most = 0;
  for (auto& b : buffers) {
    // An orphan's thread has ended: what it pushed is all there is.
    if (b->orphan.load(std::memory_order_acquire)) orphans.push_back(b.get());
    most = std::max(most, b->ring.drain(out));
  }
  {
    std::lock_guard lock{overflow_m_};
    out.append(overflow_);
    overflow_.clear();
  }
  if (orphans.empty()) return most;
  std::lock_guard lock{m_};
  std::erase_if(buffers_, [&](const std::shared_ptr<buffer>& b) {
    return std::find(orphans.begin(), orphans.end(), b.get()) != orphans.end();
  });
  return most;
}

void span_sink::run() {
  using clock = std::chrono::steady_clock;
  span_chunk chunk; // publish() hands back the room of the oldest it drops
  bool last = false;
  auto round = clock::now();
  auto flush_at = round + flush_every;
  auto next = flush_at;
  while (!last) {
    {
      std::unique_lock lock{m_};
      cv_.wait_until(lock, next, [&] { return stopping_ || full_; });
      full_ = false;
      last = stopping_;
    }
    const auto most = collect(chunk);
    // Back when the busiest ring should be a quarter full, at its rate so
    // far: soon enough that it seldom fills, seldom enough to be cheap.
    const auto now = clock::now();
    auto pause = flush_every;
    if (most > 0)
      pause = std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(
                           (now - round) * static_cast<long>(span_ring::slots / 4) / static_cast<long>(most)),
                         std::chrono::milliseconds{1}, flush_every);
    round = now;
    // Spans go out in large messages, or when they waited flush_every.
    if (last || now >= flush_at || chunk.wire_bound() >= message_bytes) {
      publish(chunk);
      flush_at = now + flush_every;
    }
    next = std::min(flush_at, now + pause);
  }
}

void span_sink::send(const span_ref* refs, std::size_t n, bool probe) {
  in_messages(refs, n, message_bytes, [&](const span_ref* run, std::size_t count) {
    auto payload = encode_span_batch(node_, run, count, encoded_);
    if (probe && run + count == refs + n) publish_probe(payload);
    else c_.publish(topic_, payload);
  });
}

void span_sink::publish_probe(std::string_view payload) {
  // 101: accepted, nobody subscribes; what went out up to here reached
  // nobody. Anything else (delivered, or a failure on the way) counts as
  // heard: keep publishing.
  c_.publish_confirmed(topic_, payload, [in = interest_, upto = numbered_](std::uint32_t code) {
    bool unheard = code == code_of(status::no_interest);
    if (unheard) in->unheard_from.store(upto, std::memory_order_relaxed);
    in->heard.store(!unheard, std::memory_order_release);
  });
}

void span_sink::catch_up(std::uint64_t from) {
  // Copied out: a publish may wait on the client's thread, which may be
  // waiting on recent_m_ to answer a query.
  span_chunk missed;
  {
    std::lock_guard lock{recent_m_};
    for (auto& [first, chunk] : recent_)
      missed.append(chunk, first >= from ? 0 : static_cast<std::size_t>(std::min<std::uint64_t>(from - first, chunk.size())));
  }
  refs_.clear();
  for (std::size_t i = 0; i < missed.size(); ++i) refs_.push_back({&missed, i});
  send(refs_.data(), refs_.size(), false);
}

void span_sink::publish(span_chunk& spans) {
  // One message each probe_every goes out with a confirm, whose answer
  // says whether anybody subscribes (few confirmed publishes: each takes a
  // place in the broker's dedup window and in the client's outbox).
  const auto now = std::chrono::steady_clock::now();
  const auto first = numbered_;
  numbered_ += spans.size();
  const bool heard = interest_->heard.load(std::memory_order_acquire);
  bool probe = false;
  if (heard) {
    if (!streaming_) { // a subscriber came: first what it may have missed
      catch_up(std::max(sent_until_, interest_->unheard_from.load(std::memory_order_relaxed)));
      streaming_ = true;
    }
    probe = now >= next_probe_ && !spans.empty();
    refs_.clear();
    for (std::size_t i = 0; i < spans.size(); ++i) refs_.push_back({&spans, i});
    send(refs_.data(), refs_.size(), probe);
    sent_until_ = numbered_;
  } else {
    // Nobody listens: the spans are kept, and an empty batch asks again
    // (until one has answered for every span kept).
    streaming_ = false;
    probe = now >= next_probe_ &&
            numbered_ > std::max(sent_until_, interest_->unheard_from.load(std::memory_order_relaxed));
    if (probe) {
      publish_probe(encode_span_batch(node_, nullptr, 0, encoded_));
    }
  }
  if (probe) next_probe_ = now + probe_every;
  if (spans.empty()) return;
  span_chunk room;
  {
    std::lock_guard lock{recent_m_};
    recent_count_ += spans.size();
    recent_.push_back({first, std::move(spans)});
    while (recent_count_ - recent_.front().spans.size() >= kept) {
      recent_count_ -= recent_.front().spans.size();
      room = std::move(recent_.front().spans);
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
