// SPDX-License-Identifier: Apache-2.0
#pragma once

// A node's spans on their way out: handlers hand them over (a lock and a
// move), and a thread of the sink's own publishes them in batches on
// `$SYS.trace.<node>` every 50 ms (or at 256), so no handler encodes or
// publishes a span. Memory is bounded: past `max_pending` spans wait, new
// ones are dropped and counted. The last `kept` spans published stay, and
// a request on `$SYS.trace-query` (payload: a trace id, or `*` for all) is
// answered with those of that trace: `plexus trace ID` and `plexus graph`
// ask every node at once.

#include <atomic>
#include <condition_variable>
#include <deque>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "plexus/client.hpp"
#include "plexus/trace.hpp"

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

  /// Keeps a span: a failed one always, an ok one when `sampled`.
  void record(span s, bool sampled);
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
  void publish(std::vector<span>& spans);
  void answer(const message_view& query);

  client& c_;
  std::string topic_;
  std::uint64_t threshold_; // a new trace is sampled when a random draw is below this
  bool keep_all_;
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<span> pending_;
  std::deque<span> recent_; // the last `kept` published, for $SYS.trace-query
  bool stopping_ = false;
  std::uint32_t query_sid_ = 0;
  std::atomic<std::uint64_t> dropped_{0};
  std::thread thread_;
};

} // namespace plexus::detail
