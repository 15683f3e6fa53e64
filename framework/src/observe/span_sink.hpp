// SPDX-License-Identifier: Apache-2.0
#pragma once

// A node's spans on their way out. A handler's thread writes its span into
// a ring of its own (span_ring: plain stores and one release store, no
// lock), and a thread of the sink's own drains the rings, so no handler
// encodes or publishes a span. The sink paces itself: from the most one
// ring held at its last round and the time since, it comes back when the
// busiest ring should be a quarter full (1 to 50 ms). A handler's thread
// wakes it (a futex call) only when it finds its ring half full, which it
// looks at every 256 spans or 16 KiB of text.
//
// Spans go out on `$SYS.trace.<node>` in messages of up to `message_bytes`
// (at least every 50 ms while there are spans): few large messages, since
// each one wakes a thread at every hop (sink, client, broker, subscriber)
// and that, not the bytes, was most of what streaming spans cost.
//
// Whether anybody listens: one message each `probe_every` goes out with a
// publisher confirm. While the broker answers "no interest" (101: nobody
// subscribes, here or on a peer broker) the sink sends nothing but an
// empty confirmed batch each `probe_every`, and keeps the spans. When such
// a probe is heard, the spans since the last one that was not go out first:
// a new subscriber misses nothing recorded after it subscribed (it may get
// up to `probe_every` of spans from just before). (Encoding and carrying
// every span to a broker that drops it was most of what full tracing cost.)
//
// Memory is bounded: a span whose thread's ring is full (the sink thread
// was not scheduled for a while: at 1M spans/s, a 2048-slot ring lasts
// 2 ms) goes to an overflow shared by all threads, under a lock, up to
// `overflow_spans`; past that it is dropped and counted (dropped()). The last `kept` spans stay, and a
// request on `$SYS.trace-query` (payload: a trace id, or `*` for all) is
// answered with those of that trace: `plexus trace ID` and `plexus graph`
// ask every node at once.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "plexus/client.hpp"
#include "span_record.hpp"
#include "span_ring.hpp"

namespace plexus::detail {

class span_sink {
public:
  /// `sample`: the share of new traces whose ok spans are kept (failed
  /// spans always are). The decision travels in the traceparent's sampled
  /// flag (W3C), so a trace is kept whole across functions and nodes.
  span_sink(client& c, std::string node, double sample);
  ~span_sink();
  span_sink(const span_sink&) = delete;
  span_sink& operator=(const span_sink&) = delete;

  /// The name a function's spans carry ("service.function"), kept here for
  /// as long as the sink (a span may outlive its function's pool).
  const std::string* intern(std::string_view name);
  /// Keeps a span (the caller decided it is kept: failed, or sampled),
  /// with its texts.
  void record(const span_record& r, std::string_view topic, std::string_view msg_id,
              std::string_view cause, std::string_view callee) {
    auto& b = my_buffer();
    const auto text_before = b.ring.text_pushed();
    if (!b.ring.push(r, topic, msg_id, cause, callee)) {
      overflow(r, topic, msg_id, cause, callee);
      return;
    }
    // The sink comes on its own in time (see run()); it is woken only when
    // it fell behind by half a ring.
    if (((b.ring.pushed() & (check_every - 1)) == 0 ||
         text_before / check_text != b.ring.text_pushed() / check_text) &&
        b.ring.half_full())
      wake();
  }
  /// Whether a trace starting here is sampled (a cheap random draw).
  [[nodiscard]] bool sample_new_trace() const noexcept;
  /// Publishes what waits and ends the thread (before the client goes).
  void stop();
  [[nodiscard]] std::uint64_t dropped() const noexcept { return dropped_; }
  /// Whether the last probe was heard: spans are published, not only kept.
  [[nodiscard]] bool streaming() const noexcept {
    return interest_->heard.load(std::memory_order_relaxed);
  }

  // A ring looks at its fill each time it took this many spans, or text.
  static constexpr std::size_t check_every = 256;
  static constexpr std::size_t check_text = span_ring::text_bytes / 8;
  static constexpr std::size_t message_bytes = 256 * 1024; // a message's most (well under 1 MiB)
  static constexpr std::chrono::milliseconds flush_every{50};
  static constexpr std::size_t kept = 8192;
  // What the overflow holds at most (~13 MiB), for all threads.
  static constexpr std::size_t overflow_spans = 65536;
  static constexpr std::size_t overflow_text = 8u << 20;
  static constexpr std::chrono::milliseconds probe_every{250};

  /// What one thread recorded and the sink has not collected yet.
  struct buffer {
    span_ring ring;
    std::atomic<bool> orphan{false}; // its thread ended: drained one last time, then dropped
  };

private:
  buffer& my_buffer();
  /// A full ring's span, kept under a lock; dropped when that is full too.
  void overflow(const span_record& r, std::string_view topic, std::string_view msg_id,
                std::string_view cause, std::string_view callee);
  void wake();
  void run();
  /// Moves every thread's spans into `out`; the most one ring held.
  std::size_t collect(span_chunk& out);
  /// Publishes `spans` (when heard) and keeps them; `spans` comes back
  /// empty, with room.
  void publish(span_chunk& spans);
  /// Publishes `n` spans in messages of up to message_bytes; the last one
  /// confirmed when `probe`.
  void send(const span_ref* refs, std::size_t n, bool probe);
  /// A probe: its answer says whether anybody listens.
  void publish_probe(std::string_view payload);
  /// Publishes the kept spans from the `from`th on.
  void catch_up(std::uint64_t from);
  void answer(const message_view& query);

  const std::uint64_t id_; // process-unique: how a thread finds its buffer here
  client& c_;
  std::string node_, topic_;
  std::uint64_t threshold_; // a new trace is sampled when a random draw is below this
  bool keep_all_;

  std::mutex m_; // buffers_, full_, stopping_
  std::condition_variable cv_;
  std::vector<std::shared_ptr<buffer>> buffers_;
  bool full_ = false;
  bool stopping_ = false;

  std::mutex overflow_m_;
  span_chunk overflow_; // spans their thread's ring had no room for

  std::mutex names_m_;
  std::deque<std::string> names_; // stable addresses

  // The last `kept` spans, as the chunks they went out in (kept whole: no
  // span is copied twice), each with the number of the first of its spans
  // (spans are numbered in the order they pass publish()); the oldest chunk
  // is dropped, and its room reused, once the rest hold `kept`.
  struct kept_chunk {
    std::uint64_t first = 0;
    span_chunk spans;
  };
  std::mutex recent_m_;
  std::deque<kept_chunk> recent_;
  std::size_t recent_count_ = 0;

  // What the last probe's answer said (set from the client's thread, which
  // may outlive the sink: shared).
  struct interest {
    std::atomic<bool> heard{true};
    std::atomic<std::uint64_t> unheard_from{0}; // spans numbered from here were sent to nobody
  };
  std::shared_ptr<interest> interest_ = std::make_shared<interest>();
  // The sink thread's:
  std::uint64_t numbered_ = 0;   // spans that passed publish()
  std::uint64_t sent_until_ = 0; // every span numbered below went out
  bool streaming_ = true;
  std::chrono::steady_clock::time_point next_probe_{};
  std::string encoded_;
  std::vector<span_ref> refs_;
  std::uint32_t query_sid_ = 0;
  std::atomic<std::uint64_t> dropped_{0};
  std::thread thread_;
};

} // namespace plexus::detail
