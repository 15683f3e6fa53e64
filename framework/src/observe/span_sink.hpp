// SPDX-License-Identifier: Apache-2.0
#pragma once

// A node's spans on their way out. A handler's thread writes its span into
// a ring of its own (span_ring: plain stores and one release store, no
// lock), and a thread of the sink's own drains the rings, encodes and
// publishes them in batches on `$SYS.trace.<node>` every 50 ms (sooner
// when a ring has taken 256 more), so no handler encodes or publishes a
// span. One batch each `probe_every` goes out with a publisher confirm:
// while the broker answers "no interest" (nobody subscribes to the node's
// spans, here or on a peer broker), the sink publishes that batch only, to
// notice a subscriber, and neither encodes nor sends the rest; they are
// kept for `$SYS.trace-query` all the same. (Encoding and carrying every
// span to a broker that drops it was most of what full tracing cost.) Memory is bounded: a ring the sink has not drained in time
// refuses new spans, which are counted (dropped()). The last `kept` spans
// published stay, and a request on `$SYS.trace-query` (payload: a trace
// id, or `*` for all) is answered with those of that trace: `plexus trace
// ID` and `plexus graph` ask every node at once.

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
    if (!b.ring.push(r, topic, msg_id, cause, callee)) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if ((b.ring.pushed() & (batch - 1)) == 0) wake();
  }
  /// Whether a trace starting here is sampled (a cheap random draw).
  [[nodiscard]] bool sample_new_trace() const noexcept;
  /// Publishes what waits and ends the thread (before the client goes).
  void stop();
  [[nodiscard]] std::uint64_t dropped() const noexcept { return dropped_; }

  static constexpr std::size_t batch = 256;
  static constexpr std::size_t kept = 8192;
  static constexpr std::chrono::milliseconds probe_every{250};

  /// What one thread recorded and the sink has not collected yet.
  struct buffer {
    span_ring ring;
    std::atomic<bool> orphan{false}; // its thread ended: drained one last time, then dropped
  };

private:
  buffer& my_buffer();
  void wake();
  void run();
  /// Moves every thread's spans into `out`.
  void collect(span_chunk& out);
  /// Publishes `spans` and keeps them; `spans` comes back empty, with room.
  void publish(span_chunk& spans);
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

  std::mutex names_m_;
  std::deque<std::string> names_; // stable addresses

  // The last `kept` spans published, as the chunks they went out in (kept
  // whole: no span is copied twice); the oldest chunk is dropped, and its
  // room reused, once the rest hold `kept`.
  std::mutex recent_m_;
  std::deque<span_chunk> recent_;
  std::size_t recent_count_ = 0;

  // Whether the last confirmed batch reached a subscriber (set from the
  // client's thread, which may outlive the sink: shared).
  std::shared_ptr<std::atomic<bool>> heard_ = std::make_shared<std::atomic<bool>>(true);
  std::chrono::steady_clock::time_point next_probe_{}; // the sink thread's
  std::string encoded_; // the sink thread's
  std::vector<span_ref> refs_; // the sink thread's
  std::uint32_t query_sid_ = 0;
  std::atomic<std::uint64_t> dropped_{0};
  std::thread thread_;
};

} // namespace plexus::detail
