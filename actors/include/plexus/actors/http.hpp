// SPDX-License-Identifier: Apache-2.0
#pragma once

// The HTTP gateway: routes HTTP requests to topics on the node's broker.
//
//   POST /events/<topic>  a confirmed publish of the body; 202 {"msg_id": ...}
//                         once a consumer has it (the broker's CONFIRM)
//   POST /rpc/<topic>     a request with the body; the reply is the body (200)
//   routes                e.g. {"POST", "/orders", "orders.create"}: either
//
//   plexus::node node{argc, argv};
//   ... services ...
//   node.start();
//   plexus::actors::gateway http{{.port = 8080, .routes = {{"POST", "/orders", "orders.create"}}}};
//   http.start(node.client());
//   node.wait();
//   http.stop(); // before node.stop(): in-flight requests still need the client
//   node.stop();
//
// Bodies pass as bytes both ways, except JSON (http_options::json): a JSON
// body goes on as msgpack, and a msgpack reply to a JSON request comes back
// as JSON; other replies go out as application/octet-stream. Headers in: `traceparent` (W3C;
// the trace goes on, and the same value comes back out; without a valid
// one the gateway starts a trace and returns that), `X-Request-Timeout`
// (whole ms: how long the gateway waits, capped at max_timeout; a default
// applies without it), `X-Msg-Id` (/events: the msg id, so a retry of the
// same event is dropped by the broker's dedup window). A request carries
// its timeout as its deadline; an event only when X-Request-Timeout asked
// for one (an event is not stale because its caller stopped waiting: the
// gateway then answers 504 with the msg id, and it may still be handled).
//
// How outcomes map to status codes (the JSON body of every error is
// {"error": <name>, "cause": <why>} plus "from" when a function failed):
//
//   reply / CONFIRM 0                        200 (rpc) / 202 (events)
//   no responders (100); events: no subscriber (101)        503
//   timeout (900), expired (104), failure "timeout"          504
//   failure "downstream", "crash", "error" (or other)        502
//   failure "no_responders" (the callee's own request)       503
//   circuit open (906, client_options::breaker), failure
//   "circuit_open" (the callee's own breaker)                 503 + Retry-After
//   overloaded (103), outbox full (902), failure "rejected"  429 + Retry-After
//   failure "dead_lettered" (plexus::reject), events: 102    422
//   forbidden (105), permission denied (114), reserved topic 403
//   body over max_body (or the broker's max_payload)         413
//   past max_concurrent                                      429 + Retry-After
//   unknown path 404; known path, other method 405 + Allow; malformed
//   topic, X-Request-Timeout or X-Msg-Id 400; stopping 503 + Retry-After
//
// A function's failure (903) also comes as X-Plexus-Failure (how it
// ended), X-Plexus-From (service.function) and X-Plexus-Cause (why).
//
// Threads: `threads` event loops (Boost.Asio) serve every connection,
// none waits: a request goes to the client, and its answer comes back to
// the connection's loop from the client's I/O thread. No CAF thread ever
// blocks on HTTP. No CAF, Boost or cpp-httplib in this header.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "plexus/client.hpp"
#include "plexus/node.hpp"

namespace plexus::actors {

struct http_route {
  std::string method = "POST"; // GET, POST, PUT, PATCH or DELETE
  std::string path;            // matched exactly: "/orders"
  std::string topic;           // a concrete topic outside $SYS., $DLQ., _INBOX.
  bool request = true;         // false: a confirmed publish, as /events
  std::chrono::milliseconds timeout{0}; // 0: default_timeout
};

struct http_options {
  std::string listen = "127.0.0.1";
  int port = 8080; // 0: a free port (gateway::port() says which)
  std::vector<http_route> routes;
  bool events = true; // POST /events/<topic>
  bool rpc = true;    // POST /rpc/<topic>
  /// A body sent as `Content-Type: application/json` goes on as the
  /// msgpack of that JSON (a map for a typed handler: plexus::decode_payload),
  /// 400 when it is not JSON; a reply to a JSON request, or to one that
  /// `Accept`s application/json, comes back as JSON when it is msgpack.
  /// false: bodies pass as bytes both ways.
  bool json = true;
  /// 413 past it (and past the broker's max_payload, when smaller).
  std::size_t max_body = std::size_t{1} << 20;
  /// Requests waiting on the broker at once; past it 429 with Retry-After.
  std::size_t max_concurrent = 256;
  /// Connections open at once. Past it the gateway stops accepting until
  /// one closes (more wait in the kernel's listen backlog). A connection
  /// costs a few KiB and no thread.
  std::size_t max_connections = 10000;
  /// Event loops, a thread each, sharing the connections (round robin).
  /// One serves tens of thousands of requests a second; more help only
  /// with cores to spare (the broker, the functions and the client's I/O
  /// thread need theirs).
  std::size_t threads = 1;
  /// X-Request-Timeout overrides (and a route's timeout), capped at max_timeout.
  std::chrono::milliseconds default_timeout{10000};
  std::chrono::milliseconds max_timeout{60000};
  /// A keep-alive connection idle this long is closed (as cpp-httplib's
  /// 5 s; nginx's keepalive_timeout is 75 s). A request's headers must
  /// come within it too; its body within 5 s more.
  std::chrono::milliseconds keep_alive_timeout{5000};
  /// stop(): in-flight requests may finish this long (as node_options'
  /// drain_timeout); past it they are answered 503.
  std::chrono::milliseconds drain_timeout{10000};
};

struct gateway_stats {
  std::uint64_t requests = 0;                 // answered, by any status
  std::uint64_t ok = 0;                       // 2xx
  std::uint64_t client_errors = 0;            // 4xx, 429 included
  std::uint64_t server_errors = 0;            // 5xx
  std::uint64_t too_many = 0;                 // 429 past max_concurrent
  std::uint64_t in_flight = 0;                // waiting on the broker now
  std::uint64_t connections = 0;              // open and served now
};

class gateway {
public:
  /// Checks every option and throws one std::invalid_argument naming each
  /// bad one: `http gateway: port: ...; routes[1] "/orders": ...`.
  explicit gateway(http_options o);
  /// stop()s.
  ~gateway();
  gateway(const gateway&) = delete;
  gateway& operator=(const gateway&) = delete;

  /// Listens (returns once it does) and serves through `c` (a node's
  /// client(), which must outlive stop()) on threads of its own. Throws
  /// plexus::config_error when it cannot listen on listen:port, and
  /// std::logic_error when started twice.
  void start(client& c);
  /// start(n.client()), and the gateway's counters join the node's
  /// /metrics (metrics_text()), labelled with listen:port.
  void start(node& n);
  /// Graceful: stops accepting, closes idle keep-alive connections,
  /// answers requests arriving on open ones 503, lets those in flight
  /// finish (up to drain_timeout, then answers them 503), and returns
  /// once every connection is closed. Idempotent.
  void stop();
  /// The port it listens on once started (0 before).
  [[nodiscard]] int port() const noexcept;
  [[nodiscard]] gateway_stats stats() const noexcept;
  /// Its Prometheus families: plexus_http_requests_total by class (2xx,
  /// 4xx, 5xx), plexus_http_too_many_total, plexus_http_in_flight,
  /// plexus_http_connections, plexus_http_request_duration_seconds (arrival
  /// to answer), each labelled gateway="listen:port".
  [[nodiscard]] std::string metrics_text() const;

private:
  struct impl;
  std::shared_ptr<impl> impl_; // shared with the node's metrics, when start(node&)
};

} // namespace plexus::actors
