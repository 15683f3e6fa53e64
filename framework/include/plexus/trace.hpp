// SPDX-License-Identifier: Apache-2.0
#pragma once

// Spans: one per function invocation and one per request a handler makes,
// each saying how it ended and, when it failed, why, derived from what
// happened (the handler's result, its exception, its deadline, the reply
// of the request it made) and never guessed. Nodes publish them in batches
// on `$SYS.trace.<node>` (compact msgpack, read by decode_spans); `plexus trace` reads
// them. CAF-free.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <string_view>
#include <tuple>
#include <vector>

namespace plexus {

/// How an invocation or a request ended.
enum class span_status : std::uint8_t {
  ok = 0,
  error = 1,         // the handler returned an error
  crash = 2,         // the handler threw
  timeout = 3,       // this invocation overran its own deadline; a request: no reply in time
  downstream = 4,    // a request it made failed in the callee (crash, error, timeout there)
  no_responders = 5, // a request it made found nobody subscribed
  rejected = 6,      // overload: a bounded queue on the way was full
  dead_lettered = 7, // rejected by the handler, or quarantined as poison
  circuit_open = 8,  // a request it made was refused by the caller's open circuit breaker
};
/// The highest status there is: what a decoder accepts, what the fuzzers check.
inline constexpr span_status last_span_status = span_status::circuit_open;
[[nodiscard]] const char* to_string(span_status s) noexcept;

struct span {
  std::string trace_id, span_id, parent_id; // W3C ids, hex; parent empty at a root
  std::string kind;                         // "invocation" or "request"
  std::string node, service, function;      // where it ran
  std::string topic, msg_id;                // what it handled (a request: where it went)
  std::uint32_t delivery = 0;               // the message's delivery count
  bool cold_start = false;
  std::uint64_t start_ns = 0, duration_ns = 0; // Unix epoch ns
  span_status status = span_status::ok;
  std::string cause;  // why, for anything but ok
  std::string callee; // downstream: the "service.function" that failed
};

/// The spans of one `$SYS.trace.<node>` payload; throws std::runtime_error
/// on anything else (within msgpack limits: a hostile payload costs little).
[[nodiscard]] std::vector<span> decode_spans(std::string_view payload);

/// One line: "crash svc.fn on orders.x 12.3 ms: boom (trace <id>)".
[[nodiscard]] std::string describe(const span& s);

/// A trace as a tree, one span a line, children under their parent (by
/// start), with durations and causes. Spans whose parent is not among them
/// are roots.
[[nodiscard]] std::string render_trace(std::vector<span> spans);

/// Spans as a Zipkin v2 JSON array (POST /api/v2/spans; Jaeger takes it
/// too): ids lower-case hex, timestamp and duration in microseconds (the
/// start truncated, the duration rounded up: never 0), kind CLIENT for a
/// request, SERVER for an invocation whose parent among `spans` is a
/// request, else CONSUMER; localEndpoint.serviceName the service; tags
/// function, topic, msg_id (0x-hex when not printable text), delivery,
/// cold_start, status, node, and cause and callee when set; a failed span
/// also carries Zipkin's "error" tag (its cause, else its status). Every
/// string is valid JSON: quotes, backslashes and control characters are
/// escaped, bytes that are not UTF-8 become U+FFFD.
[[nodiscard]] std::string zipkin_json(const std::vector<span>& spans);

/// POSTs `json` (from zipkin_json) to a collector's URL, e.g.
/// http://localhost:9411/api/v2/spans. nullopt when it answered 2xx, else
/// what went wrong, for a person (no connection, the status and body).
[[nodiscard]] std::optional<std::string> post_zipkin(std::string_view url, std::string_view json,
                                                     std::chrono::milliseconds timeout =
                                                       std::chrono::seconds{5});

/// The dependency graph observed in spans: an edge from the function that
/// called (a request) or published (a chain) to the function whose
/// invocation it caused, with how often and how often that failed.
struct dependency {
  std::string caller, callee; // "service.function"
  std::uint64_t calls = 0, failures = 0;
  bool request = false; // a request (else a publish)
};

/// Folds spans into dependencies: an invocation whose parent span is among
/// them is a call from the parent's function (the parent is an invocation
/// that published, or the request a handler made). Sorted by caller, callee
/// and kind (publishes first); a publish and a request between the same
/// two functions are two edges.
class dependency_graph {
public:
  void add(const std::vector<span>& spans);
  [[nodiscard]] std::vector<dependency> edges() const;
  /// Graphviz DOT: failing edges red, labels "calls, error %".
  [[nodiscard]] std::string dot() const;
  /// The same as a Mermaid flowchart.
  [[nodiscard]] std::string mermaid() const;

private:
  struct parent_info {
    std::string function;
    bool request = false;
  };
  std::map<std::string, parent_info> parents_;   // span id -> whose span
  std::vector<std::pair<std::string, span>> orphans_; // invocations whose parent is not seen yet
  // By caller, callee and request: a publish and a request between the
  // same two functions are two edges.
  std::map<std::tuple<std::string, std::string, bool>, dependency> edges_;
  void link(const std::string& parent, const span& child);
};

} // namespace plexus
