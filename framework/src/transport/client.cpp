// SPDX-License-Identifier: Apache-2.0
// The client connector's API: what callers' threads do before handing an
// envelope to the I/O thread (connector.cpp).
#include "plexus/client.hpp"

#include <pthread.h>

#include <algorithm>
#include <charconv>
#include <future>
#include <random>
#include <utility>

#include "breaker_core.hpp"
#include "connector.hpp"
#include "plexus/creds.hpp"

namespace plexus {

using steady = std::chrono::steady_clock;

// ---------------------------------------------------------------- set-up and envelopes

std::string detail::random_hex(std::size_t bytes) {
  static constexpr char hex[] = "0123456789abcdef";
  std::random_device rd;
  std::mt19937_64 gen{(std::uint64_t{rd()} << 32) ^ rd()};
  std::string s;
  for (std::size_t i = 0; i < bytes; ++i) {
    auto b = static_cast<unsigned>(gen() & 0xff);
    s += hex[b >> 4];
    s += hex[b & 15];
  }
  return s;
}

namespace {

client_options checked(client_options o) {
  // Before any thread or socket: ZeroMQ's connect throws on these, and on
  // the I/O thread that would end the process.
  if (auto why = detail::endpoint_problem(o.endpoint); !why.empty()) throw std::invalid_argument(why);
  for (auto& f : o.fallback)
    if (auto why = detail::endpoint_problem(f); !why.empty()) throw std::invalid_argument(why);
  bool curve = !o.curve_public_key.empty() || !o.curve_secret_key.empty() || !o.curve_server_key.empty();
  if (curve) {
    for (auto [name, key] : {std::pair{"curve_public_key", &o.curve_public_key},
                             std::pair{"curve_secret_key", &o.curve_secret_key},
                             std::pair{"curve_server_key", &o.curve_server_key}})
      if (!is_z85_key(*key))
        throw std::invalid_argument(std::string{name} + ": a CURVE key is 40 characters of Z85 "
                                    "(all three keys or none)");
    if (!zmq_has("curve"))
      throw std::invalid_argument("CURVE keys given, but this libzmq was built without CurveZMQ");
  }
  if (o.node_id.empty()) o.node_id = "n" + detail::random_hex(8);
  if (validate_topic(o.node_id) != topic_errc::ok || o.node_id.find('.') != std::string::npos)
    throw std::invalid_argument("node id must be one topic token: '" + o.node_id + "'");
  return o;
}

detail::connector_config core_config(const client_options& o, std::string_view id_prefix,
                                     std::string inbox_prefix) {
  detail::connector_config c;
  c.node_id = o.node_id;
  // The broker scopes msg ids to (node, lineage): this client's ids never
  // meet another's, and stay its own across reconnects and failovers.
  std::from_chars(id_prefix.data(), id_prefix.data() + id_prefix.size(), c.lineage, 16);
  if (c.lineage == 0) c.lineage = 1;
  c.endpoints.push_back(o.endpoint);
  for (auto& f : o.fallback) c.endpoints.push_back(f);
  c.inbox_prefix = std::move(inbox_prefix);
  c.heartbeat = o.heartbeat;
  c.liveness = o.liveness;
  c.silence_timeout = o.silence_timeout;
  c.reconnect_min = o.reconnect_min;
  c.reconnect_max = o.reconnect_max;
  c.retry_unkept = o.retry_unkept;
  c.unkept_retry_min = o.unkept_retry_min;
  c.unkept_retry_max = o.unkept_retry_max;
  c.flow_control = o.flow_control;
  c.retry_overloaded = o.retry_overloaded;
  c.publish_window = o.publish_window;
  c.publish_window_bytes = o.publish_window_bytes;
  c.max_batch_bytes = std::min<std::size_t>(detail::batch_frame_bytes, o.limits.max_batch_bytes / 2);
  c.max_batch_envelopes = detail::batch_frame_envelopes;
  return c;
}

} // namespace

client::impl::impl(client_options o)
  : opts(checked(std::move(o))), id_prefix(detail::random_hex(8)),
    inbox_prefix("_INBOX." + opts.node_id + "."), box(opts.outbox_limit),
    window(opts.max_unconfirmed),
    owned_ctx(opts.zmq_context ? nullptr : std::make_unique<zmq::context_t>(1)),
    ctx(opts.zmq_context ? *static_cast<zmq::context_t*>(opts.zmq_context) : *owned_ctx),
    core(core_config(opts, id_prefix, inbox_prefix)) {}

std::optional<publish_error> client::impl::oversized(std::size_t payload_bytes) const {
  auto limit = max_payload.load(std::memory_order_relaxed);
  if (limit == 0 || payload_bytes <= limit) return std::nullopt;
  return publish_error{static_cast<std::uint32_t>(wire::errc::payload_too_large),
                       "payload is " + std::to_string(payload_bytes)
                         + " bytes; the broker's max_payload is " + std::to_string(limit)};
}

bool client::impl::enqueue(envelope e, bool wait, bool control) {
  return box.push(std::move(e), wait && !on_io_thread(), control || on_io_thread());
}

wire::header client::impl::pub_header(std::string_view topic, const publish_options& o) {
  // A bad topic is the caller's bug: say so here, not as a broker ERR later.
  if (auto e = validate_topic(topic, opts.limits.topic); e != topic_errc::ok)
    throw std::invalid_argument("bad topic '" + std::string{topic} + "': " + to_string(e));
  wire::header h;
  h.kind = wire::op::pub;
  h.topic = topic;
  h.reply_to = o.reply_to;
  h.deadline_ns = o.deadline_ns;
  h.traceparent = o.traceparent;
  h.headers = o.headers;
  h.msg_id = o.msg_id;
  if (o.shared_id) {
    if (o.msg_id.empty()) throw std::invalid_argument("publish_options::shared_id needs a msg_id");
    h.flags |= wire::flag_shared_id;
  }
  return h;
}

std::string client::impl::next_msg_id() {
  return id_prefix + std::to_string(msg_counter.fetch_add(1, std::memory_order_relaxed));
}

client::impl::envelope client::impl::sub_envelope(std::uint32_t sid, const subscription_record& r) {
  wire::header h;
  h.kind = wire::op::sub;
  h.sid = sid;
  h.topic = r.pattern;
  h.queue = r.opts.queue;
  h.ack = r.opts.acked ? wire::ack_mode::explicit_ack : wire::ack_mode::none;
  h.credit = r.opts.credit;
  h.ack_wait_ms = r.opts.ack_wait_ms;
  h.max_deliver = r.opts.max_deliver;
  return detail::make_envelope(h);
}

// ---------------------------------------------------------------- API

curve_key_pair make_curve_key_pair() {
  char pub[41] = {}, sec[41] = {};
  if (zmq_curve_keypair(pub, sec) != 0)
    throw std::runtime_error("cannot make a CURVE key pair: this libzmq was built without CurveZMQ");
  return {pub, sec};
}

// The request breakers' shell: the core under a lock (requests come from
// any thread, their outcomes on the I/O thread), and the fallbacks.
struct client::breaker_shell {
  explicit breaker_shell(const breaker_options& o) : enabled(o.enabled), core(o) {}
  const bool enabled;
  mutable std::mutex mutex;
  detail::breaker_core core;                                   // guarded by mutex
  std::vector<std::pair<std::string, fallback_handler>> fallbacks; // guarded by mutex
  std::atomic<std::uint64_t> refused{0}, answered{0};

  // Before a request goes: its ticket, or nullopt when refused (`done`
  // has run then, with status_circuit_open or the fallback's reply).
  std::optional<detail::breaker_ticket> admit(client& c, std::string_view topic,
                                              std::string_view payload, reply_handler& done) {
    detail::breaker_admission a;
    std::vector<detail::breaker_transition> changes;
    fallback_handler fb;
    {
      std::lock_guard lock{mutex};
      a = core.admit(topic, steady::now());
      changes = core.take_transitions();
      if (!a.admitted)
        for (auto& [pattern, f] : fallbacks)
          if (matches(pattern, topic)) {
            fb = f;
            break;
          }
    }
    announce(c, changes);
    if (a.admitted) return a.ticket;
    ++refused;
    reply r;
    r.code = status_circuit_open;
    r.text = refusal_text(topic, a);
    if (fb) {
      try {
        auto answer = fb(topic, payload);
        answer.fallback = true;
        if (answer.text.empty()) answer.text = r.text + "; its fallback answered";
        ++answered;
        done(std::move(answer));
        return std::nullopt;
      } catch (const std::exception& e) {
        r.text += std::string{"; its fallback threw: "} + e.what();
      } catch (...) {
        r.text += "; its fallback threw";
      }
    }
    done(std::move(r));
    return std::nullopt;
  }

  // A request admitted with `ticket` ended with `r`.
  void record(client& c, std::string_view topic, const detail::breaker_ticket& ticket,
              const reply& r) {
    std::vector<detail::breaker_transition> changes;
    {
      std::lock_guard lock{mutex};
      core.record(topic, ticket, detail::outcome_of(r.code, r.failure), steady::now());
      changes = core.take_transitions();
    }
    announce(c, changes);
  }

  // Changes of state go out as $SYS.breaker.<node> events.
  static void announce(client& c, const std::vector<detail::breaker_transition>& changes) {
    for (const auto& t : changes) {
      breaker_event e{c.node_id(), t.topic, detail::event_word(t.to), t.requests, t.failures,
                      t.trials};
      try {
        c.publish("$SYS.breaker." + c.node_id(), detail::encode_breaker_event(e));
      } catch (const std::exception&) { // a topic past the broker's max_payload: the gauge stays
      }
    }
  }

  static std::string refusal_text(std::string_view topic, const detail::breaker_admission& a) {
    std::string t = "circuit open for " + std::string{topic};
    if (a.state == breaker_state::half_open) return t + " (half-open: its trial requests are in flight)";
    t += ": " + std::to_string(a.failures) + " of " + std::to_string(a.requests)
         + " requests failed; half-open in "
         + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(a.half_open_in).count())
         + " ms";
    return t;
  }
};

client::client(client_options opts)
  : impl_(std::make_unique<impl>(std::move(opts))),
    breakers_(std::make_unique<breaker_shell>(impl_->opts.breaker)) {
  auto& i = *impl_;
  // The inbox for replies: one wildcard subscription per client.
  auto rec = std::make_shared<detail::subscription_record>();
  rec->pattern = i.inbox_prefix + ">";
  i.subs.emplace(detail::inbox_sid, rec);
  i.io = std::thread([&i] {
    pthread_setname_np(pthread_self(), "plexus-io"); // for top -H, perf, gdb
    i.run();
  });
  std::unique_lock lock{i.state_mutex};
  if (!i.state_cv.wait_for(lock, i.opts.connect_timeout, [&] { return i.connected_once; })) {
    lock.unlock();
    i.stopping = true;
    i.box.close();
    i.io.join();
    auto why = "no answer from broker at " + i.opts.endpoint + " within "
               + std::to_string(i.opts.connect_timeout.count()) + " ms";
    std::lock_guard state{i.state_mutex};
    if (!i.handshake_failure.empty()) why += ": " + i.handshake_failure;
    throw connect_error(why);
  }
}

client::~client() {
  impl_->stopping.store(true, std::memory_order_release);
  impl_->box.close();
  impl_->window.close();
  impl_->gate.close();
  if (impl_->io.joinable()) impl_->io.join();
}

namespace {

bool plain(const publish_options& o) noexcept {
  return o.reply_to.empty() && o.deadline_ns == 0 && o.traceparent.empty() && o.headers.empty()
         && o.msg_id.empty() && !o.shared_id;
}

// The last topic this thread published on with default options, validated
// against these limits, and its encoded PUB header (which depends on
// nothing else): a publisher that keeps to one topic validates and encodes
// it once, then copies bytes.
struct last_pub {
  std::string topic;
  topic_limits limits{0, 0};
  std::string header;
};
thread_local last_pub last_plain_pub;

} // namespace

detail::envelope client::impl::make_pub(std::string_view topic, std::string_view payload,
                                        const publish_options& o) {
  if (!plain(o)) return detail::make_envelope(pub_header(topic, o), payload);
  auto& last = last_plain_pub;
  const auto& lim = opts.limits.topic;
  if (topic != last.topic || lim.max_bytes != last.limits.max_bytes
      || lim.max_tokens != last.limits.max_tokens) {
    auto h = pub_header(topic, o); // throws on a bad topic: nothing cached
    last.header.clear();
    wire::encode_header(h, last.header);
    last.topic.assign(topic);
    last.limits = lim;
  }
  envelope e;
  e.kind = wire::op::pub;
  e.bytes = detail::envelope_buffer();
  e.bytes.reserve(last.header.size() + payload.size());
  e.bytes.append(last.header);
  e.header_size = static_cast<std::uint32_t>(last.header.size());
  e.bytes.append(payload);
  return e;
}

namespace {
thread_local std::optional<paused_override> thread_paused; // thread_when_paused's
} // namespace

std::optional<paused_override> thread_when_paused(std::optional<paused_override> o) noexcept {
  return std::exchange(thread_paused, o);
}

namespace {
// This thread's override of when_paused for `self`, if it has one.
std::optional<paused_publish> thread_override(const client* self) noexcept {
  if (thread_paused && (thread_paused->only == nullptr || thread_paused->only == self))
    return thread_paused->how;
  return std::nullopt;
}

// A thread whose override says anything but block must never wait in
// publish: a node's actor threads, whose waiting could starve the very
// consumers whose ACKs would end the wait.
bool never_waits(const client* self) noexcept {
  auto how = thread_override(self);
  return how && *how != paused_publish::block;
}
} // namespace

bool client::impl::pass_gate(std::string_view topic, const client* self) {
  // The I/O thread never waits: what it publishes is held by the core.
  if (on_io_thread() || !gate.paused(topic)) return true;
  switch (thread_override(self).value_or(opts.when_paused)) {
    case paused_publish::block:
      if (gate.wait(topic)) ++paused_waits;
      return true;
    case paused_publish::hold: {
      // The core holds it until RESUME. What the PAUSE found queued is held
      // too (up to outbox_limit): as many again may be held this way (as
      // the I/O thread last counted), then it fails as `fail` does.
      auto now = held.load(std::memory_order_relaxed);
      if (now < 2 * opts.outbox_limit) {
        ++paused_holds;
        return true;
      }
      ++paused_failures;
      throw publish_error{code_of(status::overloaded),
                          "'" + std::string{topic} + "': the broker paused its queue group and "
                            + std::to_string(now) + " PUBs are held already (2 x outbox_limit)",
                          std::string{topic}};
    }
    case paused_publish::drop: ++paused_drops; return false;
    case paused_publish::fail: break;
  }
  ++paused_failures;
  throw publish_error{code_of(status::overloaded),
                      "'" + std::string{topic}
                        + "': the broker paused its queue group (its consumers are full)",
                      std::string{topic}};
}

void client::publish(std::string_view topic, std::string_view payload, const publish_options& o) {
  if (auto e = impl_->oversized(payload.size())) throw *e;
  if (impl_->gate.any() && !impl_->pass_gate(topic, this)) return;
  impl_->enqueue(impl_->make_pub(topic, payload, o), true);
  ++impl_->published;
}

bool client::try_publish(std::string_view topic, std::string_view payload,
                         const publish_options& o) {
  if (auto e = impl_->oversized(payload.size())) throw *e;
  if (impl_->gate.any() && impl_->gate.paused(topic)) {
    ++impl_->paused_refusals;
    return false;
  }
  if (!impl_->enqueue(impl_->make_pub(topic, payload, o), false)) return false;
  ++impl_->published;
  return true;
}

bool client::paused(std::string_view topic) const {
  return impl_->gate.any() && impl_->gate.paused(topic);
}

void client::publish_confirmed(std::string_view topic, std::string_view payload,
                               confirm_handler done, const publish_options& o) {
  auto h = impl_->pub_header(topic, o);
  if (impl_->oversized(payload.size())) { // the broker would drop it, and never confirm
    done(static_cast<std::uint32_t>(wire::errc::payload_too_large));
    return;
  }
  std::string id = o.msg_id.empty() ? impl_->next_msg_id() : std::string{o.msg_id};
  h.msg_id = id;
  h.flags |= wire::flag_confirm;
  auto e = detail::make_envelope(h, payload);
  auto& i = *impl_;
  // The I/O thread goes through even when full: it would wait for itself.
  // A thread that must never wait (never_waits) is answered
  // status_outbox_full at once instead of blocking.
  bool io = i.on_io_thread();
  bool wait = i.opts.when_unconfirmed_full == unconfirmed_full::block && !never_waits(this);
  if (!i.window.acquire(wait, io)) {
    ++i.outbox_full;
    done(status_outbox_full);
    return;
  }
  e.extras = std::make_unique<detail::envelope_extras>();
  e.extras->msg_id = id;
  e.extras->on_confirm = std::move(done);
  i.enqueue(std::move(e), true);
  ++i.published;
}

std::uint32_t client::subscribe(std::string_view pattern, message_handler h, subscribe_options o) {
  // One message at a time, with the I/O thread's turn between them: a
  // slow handler working through a backlog still keeps the session alive.
  auto* io = impl_.get();
  return subscribe_batch(pattern, [h = std::move(h), io](std::span<const message_view> batch) {
    for (std::size_t k = 0; k < batch.size(); ++k) {
      h(batch[k]);
      if (k + 1 < batch.size()) io->handler_returned(batch[k].sid);
    }
  }, std::move(o));
}

std::uint32_t client::subscribe_batch(std::string_view pattern, batch_handler h,
                                      subscribe_options o) {
  if (auto e = validate_pattern(pattern, impl_->opts.limits.topic); e != topic_errc::ok)
    throw std::invalid_argument("bad pattern '" + std::string{pattern} + "': " + to_string(e));
  auto rec = std::make_shared<detail::subscription_record>();
  rec->pattern = std::string{pattern};
  rec->opts = std::move(o);
  rec->on_batch = std::move(h);
  auto sid = impl_->next_sid++;
  {
    std::lock_guard lock{impl_->subs_mutex};
    impl_->subs.emplace(sid, rec);
  }
  impl_->enqueue(impl_->sub_envelope(sid, *rec), false, true);
  return sid;
}

void client::unsubscribe(std::uint32_t sid) {
  {
    std::lock_guard lock{impl_->subs_mutex};
    if (!impl_->subs.erase(sid)) return;
  }
  wire::header h;
  h.kind = wire::op::unsub;
  h.sid = sid;
  impl_->enqueue_control(h);
}

void client::ack(std::uint32_t sid, std::uint64_t seq, std::uint32_t count) {
  if (count == 0) return;
  wire::header h;
  h.kind = wire::op::ack;
  h.sid = sid;
  h.seq = seq & detail::broker_seq_mask;
  h.count = count > 1 ? count : 0; // a single ACK stays as it always was
  impl_->enqueue_settlement(h, detail::session_of(seq));
}

void client::nack(std::uint32_t sid, std::uint64_t seq, wire::nack_action action,
                  std::uint32_t delay_ms, std::string_view reason) {
  wire::header h;
  h.kind = wire::op::nack;
  h.sid = sid;
  h.seq = seq & detail::broker_seq_mask;
  h.action = action;
  h.delay_ms = delay_ms;
  h.text = reason.substr(0, impl_->opts.limits.max_text_bytes);
  impl_->enqueue_settlement(h, detail::session_of(seq));
}

void client::grant_credit(std::uint32_t sid, std::uint32_t n) {
  wire::header h;
  h.kind = wire::op::credit;
  h.sid = sid;
  h.credit = n;
  impl_->enqueue_control(h);
}

void client::withdraw_credit(std::uint32_t sid) { set_credit(sid, 0); }

void client::set_credit(std::uint32_t sid, std::uint32_t n) {
  {
    std::lock_guard lock{impl_->subs_mutex};
    auto it = impl_->subs.find(sid);
    if (it == impl_->subs.end()) return;
    it->second->opts.credit = n; // what a re-SUB after a failover asks for
  }
  wire::header h;
  h.kind = wire::op::credit;
  h.sid = sid;
  h.credit = n;
  h.flags = wire::flag_credit_set;
  impl_->enqueue_control(h);
}

void client::request_async(std::string_view topic, std::string_view payload,
                           std::chrono::milliseconds timeout, reply_handler done,
                           const publish_options& o) {
  auto id = impl_->request_counter++;
  auto inbox = impl_->inbox_prefix + std::to_string(id);
  auto h = impl_->pub_header(topic, o);
  if (breakers_->enabled) { // after the topic's check: a bad one never holds a trial
    auto ticket = breakers_->admit(*this, topic, payload, done);
    if (!ticket) return; // refused: `done` has run
    if (ticket->tracked)
      done = [this, t = std::string{topic}, k = *ticket, d = std::move(done)](reply r) {
        breakers_->record(*this, t, k, r);
        d(std::move(r));
      };
  }
  if (auto too_big = impl_->oversized(payload.size())) { // the broker would drop it
    done({too_big->code, {}, too_big->what(), {}, {}});
    return;
  }
  h.reply_to = inbox;
  auto e = detail::make_envelope(h, payload);
  e.extras = std::make_unique<detail::envelope_extras>();
  e.extras->on_reply = std::move(done);
  e.extras->request_id = id;
  e.extras->request_deadline = steady::now() + timeout;
  impl_->enqueue(std::move(e), true);
  ++impl_->published;
}

reply client::request(std::string_view topic, std::string_view payload,
                      std::chrono::milliseconds timeout, const publish_options& o) {
  std::promise<reply> p;
  auto f = p.get_future();
  request_async(topic, payload, timeout, [&p](reply r) { p.set_value(std::move(r)); }, o);
  return f.get(); // the I/O thread completes it: reply, no responders or timeout
}

void client::fallback(std::string_view pattern, fallback_handler f) {
  if (auto e = validate_pattern(pattern, impl_->opts.limits.topic); e != topic_errc::ok)
    throw std::invalid_argument("bad pattern '" + std::string{pattern} + "': " + to_string(e));
  std::lock_guard lock{breakers_->mutex};
  auto& fs = breakers_->fallbacks;
  auto it = std::find_if(fs.begin(), fs.end(), [&](const auto& p) { return p.first == pattern; });
  if (it != fs.end()) it->second = std::move(f);
  else fs.emplace_back(std::string{pattern}, std::move(f));
}

std::vector<breaker_info> client::breakers() const {
  std::lock_guard lock{breakers_->mutex};
  return breakers_->core.snapshot(steady::now());
}

void client::on_error(error_handler h) {
  std::lock_guard lock{impl_->state_mutex};
  impl_->error_cb = std::move(h);
}

bool client::flush(std::chrono::milliseconds timeout) { return impl_->box.wait_sent(timeout); }

const std::string& client::node_id() const noexcept { return impl_->opts.node_id; }

std::string client::broker_id() const {
  std::lock_guard lock{impl_->state_mutex};
  return impl_->broker;
}

std::uint64_t client::max_payload() const noexcept {
  return impl_->max_payload.load(std::memory_order_relaxed);
}

client_stats client::stats() const {
  auto& i = *impl_;
  auto& c = i.core.counts();
  client_stats s;
  s.published = i.published.load();
  s.received = i.received.load();
  s.errors = c.errors.load();
  s.reconnects = c.reconnects.load();
  s.failovers = c.failovers.load();
  s.resent = c.resent.load();
  s.stale_acks = c.stale_acks.load();
  s.outbox_full = i.outbox_full.load();
  s.dropped = c.broker_dropped.load();
  s.sessions_lost = c.sessions_lost.load();
  s.stalls = c.stalls.load();
  s.unkept_retries = c.unkept_retries.load();
  s.pauses = c.pauses.load();
  s.overload_retries = c.overload_retries.load();
  s.paused_waits = i.paused_waits.load();
  s.paused_drops = i.paused_drops.load();
  s.paused_failures = i.paused_failures.load();
  s.paused_refusals = i.paused_refusals.load();
  s.paused_holds = i.paused_holds.load();
  s.circuit_open = breakers_->refused.load();
  s.fallbacks = breakers_->answered.load();
  return s;
}

} // namespace plexus
