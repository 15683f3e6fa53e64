// SPDX-License-Identifier: Apache-2.0
#pragma once

// A node's spans on their way out: handlers hand them over (a lock and a
// move of a record that owns no heap memory in the common case), and a
// thread of the sink's own encodes and publishes them in batches on
// `$SYS.trace.<node>` every 50 ms (or at 256), so no handler encodes or
// publishes a span. Memory is bounded: past `max_pending` spans wait, new
// ones are dropped and counted. The last `kept` spans published stay, and
// a request on `$SYS.trace-query` (payload: a trace id, or `*` for all) is
// answered with those of that trace: `plexus trace ID` and `plexus graph`
// ask every node at once.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "plexus/client.hpp"
#include "span_record.hpp"

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
  /// Keeps a span; the caller decided it is kept (failed, or sampled).
  void record(span_record&& s);
  /// Whether a trace starting here is sampled (a cheap random draw).
  [[nodiscard]] bool sample_new_trace() const noexcept;
  /// Publishes what waits and ends the thread (before the client goes).
  void stop();
  [[nodiscard]] std::uint64_t dropped() const noexcept { return dropped_; }

  static constexpr std::size_t batch = 256;
  static constexpr std::size_t max_pending = 65536;
  static constexpr std::size_t kept = 8192;

private:
  void run();
  /// Publishes `spans` and keeps them; `spans` comes back empty, with room.
  void publish(std::vector<span_record>& spans);
  void answer(const message_view& query);

  client& c_;
  std::string node_, topic_;
  std::uint64_t threshold_; // a new trace is sampled when a random draw is below this
  bool keep_all_;

  std::mutex m_; // pending_, stopping_
  std::condition_variable cv_;
  std::vector<span_record> pending_;
  bool stopping_ = false;

  std::mutex names_m_;
  std::deque<std::string> names_; // stable addresses

  // The last `kept` spans published, as the batches they went out in
  // (kept whole: no span is copied twice); the oldest batch is dropped,
  // and its room reused, once the rest hold `kept`.
  std::mutex recent_m_;
  std::deque<std::vector<span_record>> recent_;
  std::size_t recent_count_ = 0;

  std::string encoded_; // the sink thread's
  std::uint32_t query_sid_ = 0;
  std::atomic<std::uint64_t> dropped_{0};
  std::thread thread_;
};

} // namespace plexus::detail
