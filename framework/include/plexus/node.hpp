// SPDX-License-Identifier: Apache-2.0
#pragma once

// What a service author writes against: a node hosts services; a service
// is a supervised group of functions; a function is a pool of CAF actors
// subscribed to a topic as one queue group, taking work only against the
// credit its free instances give.
//
//   plexus::node node{argc, argv};
//   auto& shop = node.service("shipping");
//   shop.function("validate-address").on("orders.shipped")
//       .handle([](const order& o, plexus::context& ctx) -> plexus::result<void> {
//         ctx.publish("address.validated", o);
//         return {};
//       });
//   return node.run();
//
// No CAF here: the runtime lives in framework/src/runtime.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "plexus/client.hpp"
#include "plexus/payload.hpp"
#include "plexus/queues.hpp"

namespace plexus {

/// A handler's failure: the message is NACKed and waits in the broker for
/// its next try (the function's retry_policy says how long), and is
/// dead-lettered with this text when no try is left.
///
///   return plexus::error{"rates service down"}.retry_after(2s);
struct error {
  std::string text;
  /// Asked by the handler: the next try after exactly this long (negative:
  /// the function's backoff decides). It never adds a try.
  std::chrono::milliseconds after{-1};
  error& retry_after(std::chrono::milliseconds d) & {
    after = d;
    return *this;
  }
  error&& retry_after(std::chrono::milliseconds d) && {
    after = d;
    return std::move(*this);
  }
};

/// A failure no retry can fix (e.g. a payload of the wrong type): the
/// message goes to $DLQ.<topic> at once with this text.
struct reject {
  std::string text;
};

template <class T = void>
class result;

namespace detail {
struct pending_tag {};
struct delivery;
struct invocation;
struct actor_hook; // plexus/actor.hpp
} // namespace detail

template <>
class result<void> {
public:
  result() = default; // ok
  result(error e) // NOLINT: implicit by design
    : why_(std::move(e.text)), retry_after_(e.after), kind_(kind::error) {}
  result(reject r) : why_(std::move(r.text)), kind_(kind::reject) {} // NOLINT
  explicit result(detail::pending_tag) : kind_(kind::pending) {}
  [[nodiscard]] bool ok() const noexcept { return kind_ == kind::ok; }
  [[nodiscard]] bool rejected() const noexcept { return kind_ == kind::reject; }
  /// Waiting on a request the handler made (see context::request).
  [[nodiscard]] bool pending() const noexcept { return kind_ == kind::pending; }
  [[nodiscard]] const std::string& why() const noexcept { return why_; }
  /// An error's error::retry_after; negative when it asked for none.
  [[nodiscard]] std::chrono::milliseconds retry_after() const noexcept { return retry_after_; }

private:
  enum class kind { ok, error, reject, pending };
  std::string why_;
  std::chrono::milliseconds retry_after_{-1};
  kind kind_ = kind::ok;
};

class context;

/// What runs when a request made in a handler is answered: the reply, or
/// reply.code status_timeout / no responders (100) / status_disconnected.
using continuation = std::function<result<void>(const reply&, context&)>;

enum class log_level : std::uint8_t { debug, info, warn, error };

/// What a handler can do besides computing: publish, request, reply, log,
/// and read the message's envelope. Valid during the handler call (and
/// during a continuation, for the same message).
class context {
public:
  context(client& c, const detail::delivery& d, detail::invocation* inv = nullptr) noexcept
    : client_(c), d_(d), inv_(inv) {}

  [[nodiscard]] std::string_view topic() const noexcept;
  [[nodiscard]] std::string_view msg_id() const noexcept;
  [[nodiscard]] std::string_view reply_to() const noexcept;
  [[nodiscard]] std::uint32_t delivery() const noexcept; // 1 on first delivery
  /// How long this message waits in the broker before its next try should
  /// this invocation fail with an error (the function's retry_policy, its
  /// jitter drawn already: the same delay the NACK will carry); nullopt
  /// when this is its last try (a failure dead-letters it) or outside a
  /// function's instance. error::retry_after overrides it.
  [[nodiscard]] std::optional<std::chrono::milliseconds> next_retry_delay() const noexcept;
  /// True when this invocation is a cold start (the function was at zero).
  [[nodiscard]] bool cold_start() const noexcept;
  /// A cold start's cost: from the message's arrival at the node to this
  /// handler's start, in ns; 0 when warm.
  [[nodiscard]] std::uint64_t cold_start_ns() const noexcept;
  /// ns since this node took the message in (its connection's I/O thread
  /// received it). Read first thing in a handler, it is what the message
  /// waited: in the pool's queue, for the hand-off to an instance, and
  /// for a cold start's spawn (>= cold_start_ns()). Costs a clock read
  /// when called, nothing otherwise; 0 outside a function's instance.
  [[nodiscard]] std::uint64_t since_arrival_ns() const noexcept;
  /// Unix epoch ns by which the caller wants an answer; 0 = none.
  [[nodiscard]] std::uint64_t deadline_ns() const noexcept;
  /// W3C trace context: the incoming traceparent, and this invocation's
  /// trace id and span id (new ones when the message carried none). What
  /// the handler publishes or requests carries this span as its parent.
  [[nodiscard]] std::string_view traceparent() const noexcept;
  [[nodiscard]] std::string_view trace_id();
  [[nodiscard]] std::string_view span_id();

  void publish(std::string_view topic, std::string_view payload);
  template <class T>
    requires(!std::is_convertible_v<const T&, std::string_view>)
  void publish(std::string_view topic, const T& value) {
    publish(topic, std::string_view{encode_payload(value)});
  }
  /// Answers a request (publishes on its reply-to); no-op without one.
  void reply(std::string_view payload);
  template <class T>
    requires(!std::is_convertible_v<const T&, std::string_view>)
  void reply(const T& value) {
    reply(std::string_view{encode_payload(value)});
  }

  /// Asks another function and goes on in `then` when it answers, inside
  /// this instance: no scheduler thread waits, and the message stays in
  /// flight (unACKed) until `then` returns a result other than pending.
  /// The handler returns what this returns. The timeout is cut to the
  /// message's own deadline, which the request carries on. One request at
  /// a time per message (`then` may make the next one).
  ///
  ///   return ctx.request("rates.quote", o, 200ms, [](const reply& r, context& ctx) {
  ///     if (r.code != 0) return result<void>{error{"no quote: " + r.text}};
  ///     ...
  ///   });
  result<void> request(std::string_view topic, std::string_view payload,
                       std::chrono::milliseconds timeout, continuation then);
  template <class T>
    requires(!std::is_convertible_v<const T&, std::string_view>)
  result<void> request(std::string_view topic, const T& value, std::chrono::milliseconds timeout,
                       continuation then) {
    return request(topic, std::string_view{encode_payload(value)}, timeout, std::move(then));
  }

  /// One line on stderr: level, service.function, msg id, trace id, text.
  void log(log_level level, std::string_view text);

private:
  std::string outgoing_traceparent();

  client& client_;
  const detail::delivery& d_;
  detail::invocation* inv_;
  std::string trace_id_, span_id_; // made on first use
};

/// The raw form every handler is turned into.
using raw_handler = std::function<result<void>(std::string_view payload, context&)>;

namespace detail {
template <class F>
struct handler_traits : handler_traits<decltype(&F::operator())> {};
template <class C, class R, class A, class B>
struct handler_traits<R (C::*)(A, B) const> {
  using payload = std::decay_t<A>;
};
template <class R, class A, class B>
struct handler_traits<R (*)(A, B)> {
  using payload = std::decay_t<A>;
};
} // namespace detail

/// How a service restarts its functions when an instance crashes (OTP's
/// strategies): the crashed instance alone; every instance of every
/// function in the service; or those of the crashed function and of the
/// functions declared after it (for chains where later steps depend on
/// earlier ones). Siblings are replaced once they finish the message in
/// hand: nothing in flight is lost.
enum restart_strategy : std::uint8_t { one_for_one, one_for_all, rest_for_one };

/// When an instance that ended is replaced: always; only after a crash
/// (a raw actor may also quit normally); never (the function stops when
/// its last instance ends).
enum restart_type : std::uint8_t { permanent, transient, temporary };

/// How many instances (actors, i.e. messages handled at once) a function
/// runs: between min and max, following its demand (messages at work or
/// waiting in the pool) with Knative's autoscaler: a stable window for
/// scaling down, a short panic window for bursts, scale to zero after
/// idle_grace when min is 0 (the next message pays a cold start, which is
/// measured). min == max is a fixed pool; min > 0 is provisioned
/// concurrency, always warm.
struct scale_options {
  std::uint32_t min = 4;
  std::uint32_t max = 4;
  double target = 1.0; // demand per instance the scaler aims at
  std::chrono::milliseconds tick{100};          // one demand sample
  std::chrono::milliseconds panic_window{1000}; // Knative: 6 s (10% of stable)
  std::chrono::milliseconds stable_window{10000}; // Knative: 60 s
  double panic_threshold = 2.0; // a burst: the panic window wants 2x what runs
  std::chrono::milliseconds idle_grace{30000};  // Knative's scale-to-zero grace
};

/// How a backoff delay is spread (AWS's names): not at all; drawn from
/// [0, d] (full, the most spread: retries of many messages that failed
/// together do not come back together); or from [d/2, d] (equal: spread,
/// yet never much shorter than d).
enum jitter_mode : std::uint8_t { no_jitter, full_jitter, equal_jitter };

/// When a message whose handler returned an error is tried again: after
/// initial, then each delay `multiplier` times the one before, up to
/// max_delay, jittered; at most `max` retries (max + 1 deliveries), then
/// the message goes to $DLQ.<topic> with the last error's text. The
/// message waits in the broker (a NACK with the delay), not in an
/// instance, which takes the next message meanwhile. A crash is not an
/// error (poison_after quarantines), nor is a reject (dead-lettered now).
///
///   .retry({.max = 5, .initial = 100ms, .max_delay = 30s, .multiplier = 2,
///           .jitter = plexus::full_jitter})
///
/// The default (every function without .retry()) is Moleculer's retry
/// policy, 100 ms doubling up to 2 s, with equal jitter and 4 retries
/// (max_deliver's 5 deliveries): an error waits 0.75 to 1.5 s in all
/// before it is dead-lettered, where an immediate requeue burned all five
/// tries in about a millisecond.
struct retry_policy {
  std::uint32_t max = 4;
  std::chrono::milliseconds initial{100};
  std::chrono::milliseconds max_delay{2000};
  double multiplier = 2.0;
  jitter_mode jitter = equal_jitter;
};

/// A function's rate: at most `per_second` handler starts a second, with
/// bursts of up to `burst` at once (a token bucket). A message above the
/// rate goes back to the broker to wait (a NACK with the delay until its
/// turn, reserved for it), never dropped. per_second 0: no limit.
struct rate_limit_options {
  double per_second = 0;
  std::uint32_t burst = 1;
};

/// A dispatcher of its own for a function's handlers (SObjectizer's
/// thread-pool dispatcher): `threads` threads, shared by every function
/// (and service) naming the same dispatcher; the handlers run there and
/// never on the threads the node's other functions share, so a CPU-bound
/// function cannot hold up a neighbour (a bulkhead), and at most `threads`
/// of its handlers run at once. threads 0: the shared scheduler.
struct thread_pool {
  std::string name;
  std::uint32_t threads = 0;
};

struct function_options {
  std::string pattern;
  std::string queue;             // queue group; default: "<service>.<function>"
  scale_options scale;
  /// Messages the pool may hold beyond those running, so the next one is
  /// already here when an instance frees up: credit covers the round trip
  /// to the broker (measured: with credit = instances only, 1 instance ran
  /// 2,800 msg/s, bound by the round trip; with 128, a trivial handler ran
  /// ~250k msg/s, still bound by it: broker -> I/O thread -> pool ->
  /// instance -> pool -> I/O thread -> broker is several thread hand-offs;
  /// 1024 doubled that, yet on 2 busy cores, where that round trip takes
  /// about 1 ms, its pool still sat idle most of the time, waiting on it:
  /// 4096 ran ~30% more). More prefetch is less even spread over a queue
  /// group's nodes when handlers are slow, and more memory (prefetch x
  /// payload): lower it for slow handlers and big payloads.
  std::uint32_t prefetch = 4096;
  std::uint32_t max_deliver = 5; // then $DLQ.<topic>; retry.max + 1 (see function_builder::retry)
  retry_policy retry{};
  rate_limit_options rate{};
  thread_pool dispatcher{}; // none: the service's, else the shared scheduler
  /// Requests (messages with a reply-to) that would wait behind this many
  /// others in the pool (taken in, not started) are refused at once: the
  /// requester gets the failure `rejected` (overload) instead of waiting,
  /// and the message is settled. 0: no bound but the credit. Other
  /// messages are never refused: they wait (the broker holds the rest).
  std::uint32_t max_queued = 0;
  std::uint32_t poison_after = 3; // crashes on one msg id before it is quarantined
  std::uint32_t ack_wait_ms = 30000;
  restart_type restart = permanent;
  /// Handlers that block (sleep, synchronous I/O) get a thread per
  /// instance (CAF's detached actors): instances then scale past the
  /// cores; non-blocking ones share the scheduler's threads.
  bool blocking = false;
  /// What the handler publishes is confirmed before its message is ACKed:
  /// a chain of functions then loses nothing when any process or broker
  /// dies (at least once, end to end). Each publish gets a msg id derived
  /// from the message's, so when the message is run again (its worker
  /// died before the ACK) the broker drops the repeat within its dedup
  /// window instead of passing it on. Costs: the message stays unACKed
  /// (and holds its credit) until downstream consumers ACK what it
  /// published (a confirm is end to end).
  bool reliable = false;
  /// Its queue group is a durable queue (brokers/PROTOCOL.md "Durable
  /// queues"): at start the node declares it on its broker (its name the
  /// queue group's, its subject the pattern; see plexus/queues.hpp), so
  /// messages published while no instance runs anywhere (scaled to zero,
  /// redeployed, crashed) wait on the broker's disk instead of being
  /// dropped. The broker needs a store (--store; node_options::store for
  /// the embedded one), or start() fails with config_error saying so.
  bool durable = false;
  queue_spec durable_limits{}; // name and subjects are the function's
};

class function_builder {
public:
  explicit function_builder(std::string name) : name_(std::move(name)) {}

  function_builder& on(std::string pattern) {
    opts_.pattern = std::move(pattern);
    return *this;
  }
  function_builder& queue(std::string group) {
    opts_.queue = std::move(group);
    return *this;
  }
  /// A fixed pool of n instances.
  function_builder& instances(std::uint32_t n) {
    opts_.scale.min = opts_.scale.max = n;
    return *this;
  }
  /// Autoscaled between min (0 = scale to zero) and max instances.
  function_builder& scale(std::uint32_t min, std::uint32_t max) {
    opts_.scale.min = min;
    opts_.scale.max = max;
    return *this;
  }
  function_builder& scale(scale_options o) {
    opts_.scale = o;
    return *this;
  }
  function_builder& prefetch(std::uint32_t n) {
    opts_.prefetch = n;
    return *this;
  }
  /// Deliveries before $DLQ: retry().max + 1, kept in step with it.
  function_builder& max_deliver(std::uint32_t n) {
    opts_.max_deliver = n;
    opts_.retry.max = n > 0 ? n - 1 : 0;
    return *this;
  }
  /// See retry_policy; sets max_deliver to p.max + 1 (the broker's bound).
  function_builder& retry(retry_policy p) {
    opts_.retry = p;
    opts_.max_deliver = p.max + 1;
    return *this;
  }
  /// See rate_limit_options.
  function_builder& rate_limit(double per_second, std::uint32_t burst = 1) {
    opts_.rate = {per_second, burst};
    return *this;
  }
  /// A bulkhead's two numbers (Moleculer's 3 concurrent + 10 queued): at
  /// most `concurrent` handlers at once (its instances) and requests past
  /// `queued` waiting refused at once (see function_options::max_queued).
  function_builder& bulkhead(std::uint32_t concurrent, std::uint32_t queued) {
    opts_.scale.min = opts_.scale.max = concurrent;
    opts_.max_queued = queued;
    return *this;
  }
  /// See function_options::max_queued.
  function_builder& max_queued(std::uint32_t n) {
    opts_.max_queued = n;
    return *this;
  }
  /// See thread_pool: the function's handlers run on that dispatcher.
  function_builder& dispatcher(thread_pool d) {
    opts_.dispatcher = std::move(d);
    return *this;
  }
  function_builder& poison_after(std::uint32_t n) {
    opts_.poison_after = n;
    return *this;
  }
  function_builder& restart(restart_type r) {
    opts_.restart = r;
    return *this;
  }
  /// See function_options::reliable.
  function_builder& reliable(bool on = true) {
    opts_.reliable = on;
    return *this;
  }
  /// See function_options::durable; `limits` (max_msgs, max_bytes,
  /// max_age) apply when the node creates the queue.
  function_builder& durable(queue_spec limits = {}) {
    opts_.durable = true;
    opts_.durable_limits = std::move(limits);
    return *this;
  }
  function_builder& blocking(bool b = true) {
    opts_.blocking = b;
    return *this;
  }
  /// Runs once in each new instance before its first message (load
  /// config, open a connection): part of a cold start, timed apart
  /// (function_stats::init_ns_max). If it throws, the message is retried
  /// and the next message tries the init again.
  function_builder& init(std::function<void()> f) {
    init_ = std::move(f);
    return *this;
  }

  /// `f(const T&, context&) -> result<void>`; T is decoded with msgpack
  /// (or std::string_view for the raw bytes). A payload that does not decode
  /// as T is dead-lettered with the reason, never handed to `f`.
  template <class F>
  function_builder& handle(F f) {
    using T = typename detail::handler_traits<F>::payload;
    if constexpr (std::is_same_v<T, std::string_view> || std::is_same_v<T, std::string>) {
      handler_ = [f = std::move(f)](std::string_view bytes, context& ctx) {
        return f(T{bytes}, ctx);
      };
    } else {
      handler_ = [f = std::move(f)](std::string_view bytes, context& ctx) -> result<void> {
        T value{};
        if (auto why = decode_payload(bytes, value)) return reject{*why};
        return f(value, ctx);
      };
    }
    return *this;
  }

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const function_options& options() const noexcept { return opts_; }
  [[nodiscard]] const raw_handler& handler() const noexcept { return handler_; }
  [[nodiscard]] const std::function<void()>& init_hook() const noexcept { return init_; }
  /// Set by plexus::actor_function (plexus/actor.hpp): the function's
  /// instances are raw CAF actors instead of a handler.
  void set_actor(std::shared_ptr<const detail::actor_hook> hook) { actor_ = std::move(hook); }
  [[nodiscard]] const std::shared_ptr<const detail::actor_hook>& actor() const noexcept {
    return actor_;
  }

private:
  std::string name_;
  function_options opts_;
  raw_handler handler_;
  std::shared_ptr<const detail::actor_hook> actor_;
  std::function<void()> init_;
};

struct service_options {
  restart_strategy strategy = one_for_one;
  /// Restart intensity (OTP's default is 1 within 5 s): when more than
  /// max_restarts fresh messages (first delivery) crash the service's
  /// functions within `within` with no success in between, the service
  /// escalates: it stops cleanly (unsubscribes, so other nodes take the
  /// work) and the node's root supervisor restarts it after a backoff or
  /// stops the node (node_options::on_failure). Unlike OTP a success
  /// clears the count and redelivered messages, poison suspects, never
  /// count: poison is quarantined and never stops a service.
  std::uint32_t max_restarts = 5;
  std::chrono::milliseconds within{10000};
  /// Crashes in a row (no success between) delay the next restart: the
  /// first restart is immediate, then backoff_initial doubling up to
  /// backoff_max, each drawn from [d/2, d] (jitter).
  std::chrono::milliseconds backoff_initial{10};
  std::chrono::milliseconds backoff_max{1000};
  /// The dispatcher of the service's functions that name none of their own
  /// (see thread_pool): the whole service is one bulkhead.
  thread_pool dispatcher{};
};

/// A supervision event, published as msgpack on
/// `$SYS.supervisor.<kind>.<service>[.<function>]`, kind one of restart,
/// recycle, quarantine, escalate, revive, stop.
struct supervisor_event {
  std::string kind{}, node{}, service{}, function{}, reason{};
  std::uint64_t delay_ms = 0;  // restart, revive: the backoff applied
  std::uint32_t intensity = 0; // fresh crashes in the window (restart, escalate)
  std::uint32_t attempt = 0;   // revive: restarts of the service in a row
  MSGPACK_DEFINE_MAP(kind, node, service, function, reason, delay_ms, intensity, attempt)
};

class service {
public:
  service(std::string name, service_options o) : name_(std::move(name)), opts_(o) {}
  function_builder& function(std::string name);

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const service_options& options() const noexcept { return opts_; }
  [[nodiscard]] const std::vector<std::unique_ptr<function_builder>>& functions() const noexcept {
    return functions_;
  }

private:
  std::string name_;
  service_options opts_;
  std::vector<std::unique_ptr<function_builder>> functions_;
};

/// A scaling decision, published as msgpack on
/// `$SYS.scale.<service>.<function>` at the pool's next tick.
struct scale_event {
  std::string node{}, service{}, function{};
  std::uint32_t from = 0, to = 0;
  std::string why{}; // load, burst, steady, idle, min, max, cold start
  MSGPACK_DEFINE_MAP(node, service, function, from, to, why)
};

/// Counters a node keeps per function (for tests, the demo's summary).
struct function_stats {
  std::string service, function;
  std::uint64_t ok = 0, errors = 0, crashes = 0, restarts = 0, rejected = 0, quarantined = 0;
  std::uint64_t recycled = 0; // instances replaced because a sibling crashed
  std::uint64_t escalations = 0, revivals = 0; // the service's, past its intensity
  bool stopped = false; // escalated and not (yet) restarted, or temporary and ended
  std::uint32_t instances = 0;     // the instance count to run (the autoscaler's target)
  std::uint32_t live = 0;          // instance actors alive now (retiring ones aside)
  std::uint64_t cold_starts = 0;   // messages that found the function at zero
  std::uint64_t cold_start_ns_total = 0, cold_start_ns_max = 0; // arrival -> handler start
  std::uint64_t inits = 0, init_ns_max = 0; // the init hook's runs (part of cold starts)
  /// Handler durations (start -> result), within 1%: how many, and quantiles.
  std::uint64_t invocations = 0;
  std::uint64_t duration_p50_ns = 0, duration_p99_ns = 0, duration_p999_ns = 0;
  /// Gauges, now: messages whose handler runs (one per busy instance, a
  /// handler waiting on its request included); messages the pool took in
  /// that wait for an instance (in its queue, or behind the message an
  /// instance runs); the credit the broker holds for the pool (messages it
  /// may still send before the pool grants more).
  std::uint32_t in_flight = 0, queue_depth = 0, credit = 0;
  /// Messages taken in, then given back to the broker unfinished (for
  /// another member): at a stop (never started, waiting past the confirm
  /// grace, running past the drain timeout), an escalation, or held half
  /// their ack_wait while a downstream group was paused; each time.
  std::uint64_t handed_back = 0;
  /// Errors that sent their message back to wait for a later try (the
  /// retry policy's backoff), and messages over the function's rate that
  /// went back to wait for their turn.
  std::uint64_t retries = 0, throttled = 0;
  std::uint64_t shed = 0; // requests refused at once: max_queued were waiting
  /// Flow control downstream (docs/backpressure.md): invocations that
  /// published to a queue group the broker had paused (their message went
  /// back to wait; not errors, crashes or retries), and the times the
  /// function took no more work until that group was resumed.
  std::uint64_t overloaded = 0, downstream_pauses = 0;
  /// Every node publishes its functions' stats each second on
  /// `$SYS.node.<id>.stats` (a msgpack array of these maps): `plexus top`.
  MSGPACK_DEFINE_MAP(service, function, ok, errors, crashes, restarts, rejected, quarantined,
                     recycled, escalations, revivals, stopped, instances, live, cold_starts,
                     cold_start_ns_total, cold_start_ns_max, inits, init_ns_max, invocations,
                     duration_p50_ns, duration_p99_ns, duration_p999_ns, in_flight, queue_depth,
                     credit, handed_back, retries, throttled, shed, overloaded, downstream_pauses)
};

/// A program's own flag, parsed with the node's: `--name VALUE` into *value
/// (kept when absent), listed in --help as `--name TYPE` (say INT or FLOAT
/// for a number the program parses).
struct flag {
  std::string name;
  std::string help;
  std::string* value = nullptr;
  std::string type = "TEXT";
};

struct node_options {
  std::string broker{};          // empty: an embedded broker in this process
  std::chrono::seconds duration{0}; // 0: until SIGINT/SIGTERM
  /// What the root supervisor does with a service past its restart
  /// intensity: restart it after restart_initial, doubling up to
  /// restart_max while it keeps failing (the node's other services run
  /// on); or stop the node, run() returning exit_service_failed, so a
  /// process supervisor (systemd, Kubernetes) takes over.
  enum class failure_policy : std::uint8_t { restart_service, stop_node };
  failure_policy on_failure = failure_policy::restart_service;
  std::chrono::milliseconds restart_initial{1000};
  std::chrono::milliseconds restart_max{30000};
  /// On stop, how long in-flight handlers may run on; past it their
  /// messages go back to the broker (redelivered elsewhere) and stop()
  /// returns without them. A reliable function's finished handlers wait
  /// for their publishes' confirms 1 s at most (never longer than this).
  std::chrono::milliseconds drain_timeout{10000};
  /// The share of traces whose successful spans are published on
  /// `$SYS.trace.<node>` (failed spans always are); 0 publishes failures
  /// only. 1% by default: at a million invocations a second, every span
  /// out costs more than the invocations (measured in the bench's
  /// `function` scenario, `traced` beside `plexus`).
  double trace_sample = 0.01;
  /// Prometheus text on http://127.0.0.1:<port>/metrics: 0 = none, -1 = a
  /// free port (node::metrics_port() says which).
  int metrics_port = 0;
  /// A credentials file (`plexus keys user`; plexus/creds.hpp) for a
  /// --broker with --auth: the node connects with its CURVE keys. Empty:
  /// plaintext. Unreadable or malformed: start() fails with config_error.
  std::string creds{};
  /// The embedded broker's store directory (no --broker): durable queues
  /// (function_builder::durable()) keep their messages there across
  /// restarts of the node. Empty: no store, and then no durable function.
  std::string store{};
  /// Circuit breakers on the node's requests (ctx.request and
  /// node::client()'s), one per callee topic; off unless `enabled`.
  /// Fallbacks: node::client().fallback(). docs/circuit-breakers.md.
  breaker_options breaker{};
};

/// run()'s exit code when a service failed under failure_policy::stop_node.
inline constexpr int exit_service_failed = 3;
/// run()'s exit code when the node could not start: its broker did not
/// answer within the connect timeout (plexus::connect_error), or else.
inline constexpr int exit_start_failed = 1;
/// The exit code of a program given a bad flag, and run()'s when the node
/// could not start for its configuration (plexus::config_error).
inline constexpr int exit_bad_config = 2;

/// start() failed for the node's configuration, not the world's: a
/// malformed broker endpoint, a metrics port already in use. The text
/// names the setting and the problem.
struct config_error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

class node {
public:
  /// Parses the node's standard flags: --broker ENDPOINT, --duration SECONDS,
  /// --help. --help prints the help and exits 0; a bad flag, one line and 2.
  /// Such a node is a program's: when it cannot start, it prints one line
  /// on stderr, and start() exits the process (run() returns the code):
  /// exit_bad_config for a config_error (a malformed --broker, a
  /// --metrics-port in use), exit_start_failed otherwise (a --broker that
  /// does not answer).
  node(int argc, const char* const* argv, std::vector<flag> extra = {});
  /// A node for code that handles errors itself: start() throws
  /// config_error, connect_error (the broker did not answer) or another
  /// std::exception, and run() prints the text and returns the exit code.
  explicit node(node_options opts);
  ~node();
  node(const node&) = delete;
  node& operator=(const node&) = delete;

  plexus::service& service(std::string name, service_options o = {});

  /// Starts every function, serves until SIGINT/SIGTERM or --duration,
  /// then stops; returns the process exit code.
  int run();
  /// run() in parts, for programs with threads of their own and for tests:
  /// start() (returns once the broker has the subscriptions, and from then
  /// SIGINT/SIGTERM mean a graceful stop), wait() (until a signal,
  /// --duration or request_stop()), stop(). stop()
  /// unsubscribes, lets every function finish what it runs, then closes;
  /// call it on the thread that called start() (CAF 0.17's actor system
  /// hung when destroyed from another thread).
  void start();
  void wait();
  void stop();
  /// Makes wait() (and so run()) return, from any thread, handlers too.
  void request_stop();
  /// True when the node runs its own broker (no --broker): nobody outside
  /// this process can reach its functions.
  [[nodiscard]] bool embedded_broker() const noexcept;

  /// The node's connection, for publishing and requests from outside a
  /// handler (available after start()).
  plexus::client& client();
  [[nodiscard]] std::vector<function_stats> stats() const;
  /// The metrics endpoint's port once started; 0 when there is none.
  [[nodiscard]] int metrics_port() const noexcept;
  /// What /metrics serves: the Prometheus text exposition.
  [[nodiscard]] std::string metrics_text() const;
  /// Adds to what /metrics serves, after the node's own families: `render`
  /// runs on each scrape (on the metrics thread, or metrics_text()'s
  /// caller) and returns whole families (# HELP, # TYPE, samples). For
  /// what runs beside the functions: an HTTP gateway (actors::gateway's
  /// start(node&) adds its own), a program's counters. Kept for the node's
  /// life: what `render` reads must outlive the node or be shared with it.
  void add_metrics(std::function<std::string()> render);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace plexus
