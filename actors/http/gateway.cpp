// SPDX-License-Identifier: Apache-2.0
// The HTTP gateway's I/O shell, on Boost.Beast: event loops
// (http_options::threads, each an io_context run by a thread of its own)
// serve every connection without a thread each. A request goes to the
// client (request_async, publish_confirmed) and its answer comes back as a
// handler the client's I/O thread posts to the connection's loop; nothing
// here waits. What to answer (routes, outcome to status, headers,
// deadlines) is gateway_core's, sans-IO.
//
// A connection is a `session`, owned by its loop and touched only on the
// loop's thread, from accept to close. Its timeouts (idle keep-alive, a
// stalled body or write, an answer waited for past its deadline) are a
// time each session keeps and its loop sweeps every 100 ms, not a timer
// armed per operation: a request costs a read, a write and the client's
// round trip, nothing more. The client's answers hold only a weak pointer
// and go through a `mailbox` that stop() closes before the loops go, so an
// answer that comes after (a request abandoned past the drain) is dropped.
#include "plexus/actors/http.hpp"

#include <array>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>

#include "gateway_core.hpp"
#include "json_msgpack.hpp"
#include "plexus/metrics.hpp"
#include "plexus/node.hpp"

namespace plexus::actors {

namespace {

using namespace std::chrono;
using steady = steady_clock;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using loop_executor = asio::io_context::executor_type;
using socket_type = asio::basic_stream_socket<tcp, loop_executor>;

constexpr std::size_t max_requests_per_connection = 1000; // nginx's keepalive_requests
constexpr auto reply_grace = seconds{1};    // past a request's timeout, should the client not answer
constexpr auto io_timeout = seconds{5};     // a body, or an answer's write, that stalls this long: closed
constexpr auto linger_time = seconds{1};    // a closing connection's unread input, read and dropped
constexpr auto sweep_every = milliseconds{100}; // how often a loop looks for what timed out
constexpr auto accept_retry = milliseconds{100}; // out of descriptors: accept again after
constexpr std::string_view continue_100 = "HTTP/1.1 100 Continue\r\n\r\n";
constexpr auto never = steady::time_point::max();

std::uint64_t random64() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

std::uint64_t unix_ns() {
  return static_cast<std::uint64_t>(
    duration_cast<nanoseconds>(system_clock::now().time_since_epoch()).count());
}

std::string_view sv(beast::string_view s) { return {s.data(), s.size()}; }

// Where the client's I/O thread hands answers to the loops.
struct mailbox {
  std::mutex m;
  bool open = true;
  template <class F>
  void post(const loop_executor& ex, F&& f) {
    std::lock_guard lock{m};
    if (open) asio::post(ex, std::forward<F>(f));
  }
  void close() {
    std::lock_guard lock{m};
    open = false;
  }
};

} // namespace

struct gateway::impl {
  class session;

  // An event loop: its io_context, its thread, the sessions it serves.
  struct loop {
    asio::io_context ctx{1};
    asio::executor_work_guard<loop_executor> busy{ctx.get_executor()};
    asio::steady_timer sweep{ctx};
    std::unordered_map<session*, std::shared_ptr<session>> sessions; // its thread only
    std::thread thread;
  };

  http_options opts;
  client* conn = nullptr;
  std::size_t max_body = 0; // max_body, or the broker's max_payload when smaller
  int port = 0;
  bool started = false, stopped = false;
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> requests{0}, ok{0}, client_errors{0}, server_errors{0}, too_many{0};
  std::atomic<std::uint64_t> in_flight{0}, connections{0};
  observe::latency_histogram durations; // arrival to answer, every request

  std::vector<std::unique_ptr<loop>> loops;
  std::shared_ptr<mailbox> box = std::make_shared<mailbox>();
  // On loops[0]'s thread only: the listener, and its pause.
  std::optional<asio::basic_socket_acceptor<tcp, loop_executor>> acceptor;
  std::optional<asio::steady_timer> accept_timer;
  std::size_t next_loop = 0;
  bool accept_paused = false; // max_connections reached

  std::mutex m; // with drain_cv, stop()'s waits
  std::condition_variable drain_cv;

  void count(int status) {
    ++requests;
    if (status < 300) ++ok;
    else if (status < 500) ++client_errors;
    else ++server_errors;
  }

  void release() {
    if (--in_flight == 0 && stopping) {
      { std::lock_guard lock{m}; }
      drain_cv.notify_all();
    }
  }

  // A session went (its loop's thread, or stop()'s once the loops are done).
  void closed() {
    {
      std::lock_guard lock{m};
      --connections;
    }
    drain_cv.notify_all();
    if (stopping) return;
    asio::post(loops[0]->ctx, [this] { // below max_connections again: accept
      if (accept_paused && !stopping && connections < opts.max_connections) {
        accept_paused = false;
        accept();
      }
    });
  }

  void accept();
  void sweep(loop& l);
  void start(client& c);
  void stop();
  void each_session(void (session::*what)());
  bool wait_sessions(steady::time_point until, bool for_requests);
  std::string metrics_text() const;
};

// One connection: read a request, hand it to the client, write the answer,
// read the next (keep-alive), on its loop's thread.
class gateway::impl::session : public std::enable_shared_from_this<session> {
public:
  session(impl& g, loop& l, socket_type s) : g_(g), loop_(l), socket_(std::move(s)) {}
  ~session() { g_.closed(); }
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  void run() { read_header(); }

  /// The loop's sweep: what waited past its time ends.
  void tick(steady::time_point now) {
    if (now < deadline_) return;
    if (state_ == state::waiting) return answered(call_, reply{status_timeout, {}, {}, {}, {}});
    close();
  }

  /// stop(): a connection waiting for its next request closes now.
  void close_if_idle() {
    if (state_ == state::idle && buf_.size() == 0) close();
  }

  /// Past the drain timeout: a request still waiting is answered 503, and
  /// a connection doing anything else closes.
  void abort() {
    if (state_ == state::waiting) {
      finish(detail::error_answer(503, "stopping", "the gateway stopped before " + topic_ + " answered"));
      return;
    }
    if (state_ != state::closed) close();
  }

private:
  enum class state { idle, reading, waiting, writing, closed };

  void read_header() {
    state_ = state::idle;
    if (g_.stopping && buf_.size() == 0) return close();
    parser_.emplace();
    parser_->body_limit(g_.max_body);
    deadline_ = steady::now() + g_.opts.keep_alive_timeout;
    bhttp::async_read_header(socket_, buf_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_header(ec);
    });
  }

  void on_header(beast::error_code ec) {
    if (ec) return refuse(ec);
    state_ = state::reading;
    arrived_ = steady::now();
    if (auto n = parser_->content_length(); n && *n > g_.max_body) // 413 unread: the body stays on the wire
      return finish(detail::answer_status(413, g_.max_body), false);
    auto expect = parser_->get()[bhttp::field::expect];
    if (beast::iequals(expect, "100-continue") && !parser_->is_done()) {
      deadline_ = arrived_ + io_timeout;
      asio::async_write(socket_, asio::buffer(continue_100.data(), continue_100.size()),
                        [self = shared_from_this()](beast::error_code e, std::size_t) {
                          if (e) return self->close();
                          self->read_body();
                        });
      return;
    }
    read_body();
  }

  void read_body() {
    if (parser_->is_done()) return on_request({});
    deadline_ = steady::now() + io_timeout;
    bhttp::async_read(socket_, buf_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_request(ec);
    });
  }

  // A read that failed: the peer went, or what it sent is not HTTP.
  void refuse(beast::error_code ec) {
    if (state_ == state::closed) return;
    if (ec == bhttp::error::body_limit) return finish(detail::answer_status(413, g_.max_body), false);
    if (ec == bhttp::error::header_limit)
      return finish(detail::error_answer(431, "headers_too_large", "the request's headers are over 8 KiB"), false);
    const bool malformed = ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category() &&
                           ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message;
    if (!malformed) return close(); // the peer went (or idled), or stop() closed it
    if (state_ == state::idle) arrived_ = steady::now();
    finish(detail::answer_status(400, g_.max_body), false);
  }

  void on_request(beast::error_code ec) {
    if (ec) return refuse(ec);
    ++served_;
    auto& req = parser_->get();
    keep_alive_ = req.keep_alive() && served_ < max_requests_per_connection;
    traceparent_.clear();
    std::optional<detail::http_answer> now;
    try {
      now = dispatch(req);
    } catch (const std::exception& e) { // e.g. the broker's limits, met on publishing
      now = detail::error_answer(500, "internal", e.what());
    }
    if (now) finish(std::move(*now), keep_alive_);
  }

  // The answer now, or nothing: the request went to the broker and its
  // answer comes to answered().
  std::optional<detail::http_answer> dispatch(const bhttp::request<bhttp::string_body>& req) {
    if (g_.stopping) return detail::error_answer(503, "stopping", "the gateway is stopping");
    auto path = sv(req.target());
    path = path.substr(0, path.find('?'));
    auto route = detail::match_route(g_.opts, sv(req.method_string()), path);
    if (!route.target) return std::move(route.refusal);
    const auto& t = *route.target;
    traceparent_ = std::string{sv(req["traceparent"])};
    if (!detail::valid_traceparent(traceparent_))
      traceparent_ = detail::make_traceparent(random64(), random64(), random64());
    std::optional<std::string> header;
    if (auto it = req.find("X-Request-Timeout"); it != req.end()) header.emplace(sv(it->value()));
    auto tc = detail::choose_timeout(header ? &*header : nullptr, t.timeout, g_.opts);
    if (!tc.error.empty()) return detail::error_answer(400, "bad_request", tc.error);
    // JSON in: msgpack on (a typed handler's map); JSON out for whoever asked.
    const bool json_in = g_.opts.json && sv(req[bhttp::field::content_type]).starts_with("application/json");
    json_out_ = g_.opts.json &&
                (json_in || sv(req[bhttp::field::accept]).find("application/json") != std::string_view::npos);
    std::string converted;
    if (json_in) {
      std::string why;
      if (!detail::json_to_msgpack(req.body(), converted, why))
        return detail::error_answer(400, "bad_json", "the body is not JSON: " + why);
    }
    std::string id;
    if (!t.request) {
      if (auto it = req.find("X-Msg-Id"); it != req.end()) {
        id = std::string{sv(it->value())};
        if (!detail::valid_msg_id(id))
          return detail::error_answer(400, "bad_request", "X-Msg-Id: 1-64 bytes of visible ASCII");
      } else {
        id = detail::hex_id(random64(), random64());
      }
    }
    if (++g_.in_flight > g_.opts.max_concurrent) {
      g_.release();
      ++g_.too_many;
      return detail::error_answer(429, "too_many_requests",
                                  std::to_string(g_.opts.max_concurrent) + " requests in flight (max_concurrent)");
    }
    holding_ = true;
    topic_ = t.topic;
    request_ = t.request;
    timeout_ = tc.value;
    msg_id_ = std::move(id);
    const std::string& body = json_in ? converted : req.body();
    publish_options po;
    po.traceparent = traceparent_;
    const auto call = ++call_;
    auto back = [box = g_.box, ex = loop_.ctx.get_executor(), w = weak_from_this(), call](reply r) {
      box->post(ex, [w, call, r = std::move(r)]() mutable {
        if (auto s = w.lock()) s->answered(call, std::move(r));
      });
    };
    state_ = state::waiting;
    // The client answers a request at its timeout itself; the sweep is
    // the safety net past it, and a confirm's only timeout.
    deadline_ = arrived_ + tc.value + (t.request ? duration_cast<steady::duration>(reply_grace) : steady::duration{});
    if (request_) {
      po.deadline_ns = detail::deadline_ns(unix_ns(), tc.value);
      g_.conn->request_async(topic_, body, tc.value, std::move(back), po);
    } else {
      po.msg_id = msg_id_;
      if (tc.from_header) po.deadline_ns = detail::deadline_ns(unix_ns(), tc.value);
      g_.conn->publish_confirmed(
        topic_, body, [back = std::move(back)](std::uint32_t code) { back(reply{code, {}, {}, {}, {}}); }, po);
    }
    return std::nullopt;
  }

  void answered(std::uint64_t call, reply r) {
    if (state_ != state::waiting || call != call_) return; // late: answered already
    if (!request_) return finish(detail::answer_confirm(r.code, msg_id_, topic_, timeout_), keep_alive_);
    auto a = detail::answer_reply(r, topic_, timeout_);
    if (std::string text; json_out_ && a.status == 200 && detail::msgpack_to_json(a.body, text)) {
      a.body = std::move(text);
      a.content_type = "application/json";
    }
    finish(std::move(a), keep_alive_);
  }

  // Writes the answer: the head by hand (status line, Content-Type,
  // Content-Length, the answer's headers, Connection), then the body.
  void finish(detail::http_answer a, bool keep = false) {
    if (holding_) {
      holding_ = false;
      g_.release();
    }
    if (g_.stopping) keep = false;
    g_.count(a.status);
    const unsigned version = parser_ && parser_->is_header_done() ? parser_->get().version() : 11;
    auto& h = head_;
    h.clear();
    h += "HTTP/1.1 ";
    h += std::to_string(a.status);
    h += ' ';
    h += sv(bhttp::obsolete_reason(bhttp::int_to_status(static_cast<unsigned>(a.status))));
    h += "\r\nContent-Type: ";
    h += a.content_type;
    h += "\r\nContent-Length: ";
    h += std::to_string(a.body.size());
    for (const auto& [k, v] : a.headers) ((((h += "\r\n") += k) += ": ") += v);
    if (!traceparent_.empty()) (h += "\r\ntraceparent: ") += traceparent_;
    if (!keep) h += "\r\nConnection: close";
    else if (version < 11) h += "\r\nConnection: keep-alive";
    h += "\r\n\r\n";
    body_ = std::move(a.body);
    g_.durations.record(static_cast<std::uint64_t>(duration_cast<nanoseconds>(steady::now() - arrived_).count()));
    state_ = state::writing;
    deadline_ = steady::now() + io_timeout;
    const std::array<asio::const_buffer, 2> out{asio::buffer(head_), asio::buffer(body_)};
    asio::async_write(socket_, out, [self = shared_from_this(), keep](beast::error_code ec, std::size_t) {
      if (ec) return self->close();
      if (!keep) return self->linger();
      self->read_header();
    });
  }

  // Closing after an answer: input the peer still sends (a body not read,
  // a pipelined request) is read and dropped for a while, so the close
  // does not reset the connection before the answer is read.
  void linger() {
    state_ = state::closed;
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return close();
    deadline_ = steady::now() + linger_time;
    drain();
  }

  void drain() {
    buf_.consume(buf_.size());
    socket_.async_read_some(buf_.prepare(4096), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->close();
      self->drain();
    });
  }

  // Closes the socket (what waits on it ends, operation_aborted) and
  // leaves the loop, once: the last handler holding it frees it.
  void close() {
    if (!socket_.is_open()) return;
    if (holding_) {
      holding_ = false;
      g_.release();
    }
    state_ = state::closed;
    deadline_ = never;
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    asio::post(loop_.ctx, [&l = loop_, self = this] { l.sessions.erase(self); });
  }

  impl& g_;
  loop& loop_;
  socket_type socket_;
  beast::flat_buffer buf_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::string head_, body_; // the answer being written
  state state_ = state::idle;
  steady::time_point deadline_ = never; // what it waits for ends then (the loop's sweep)
  std::size_t served_ = 0;
  std::uint64_t call_ = 0; // the request waited for; answers to older ones are dropped
  bool holding_ = false;   // counted in in_flight
  steady::time_point arrived_;
  std::string traceparent_, topic_, msg_id_;
  bool request_ = true, json_out_ = false, keep_alive_ = true;
  milliseconds timeout_{0};
};

void gateway::impl::accept() {
  auto& l = *loops[next_loop];
  next_loop = (next_loop + 1) % loops.size();
  acceptor->async_accept(l.ctx, [this, &l](beast::error_code ec, socket_type s) {
    if (ec == asio::error::operation_aborted || stopping) return;
    if (ec) { // out of descriptors, most likely: try again in a while
      accept_timer->expires_after(accept_retry);
      accept_timer->async_wait([this](beast::error_code e) {
        if (!e && !stopping) accept();
      });
      return;
    }
    s.set_option(tcp::no_delay(true), ec); // an answer is one write: no Nagle wait for the peer's ACK
    ++connections;
    auto sess = std::make_shared<session>(*this, l, std::move(s));
    asio::post(l.ctx, [&l, sess] {
      l.sessions.emplace(sess.get(), sess);
      sess->run();
    });
    if (connections >= opts.max_connections) accept_paused = true; // closed() accepts again
    else accept();
  });
}

void gateway::impl::sweep(loop& l) {
  l.sweep.expires_after(sweep_every);
  l.sweep.async_wait([this, &l](beast::error_code ec) {
    if (ec) return;
    const auto now = steady::now();
    std::vector<session*> all; // a session's tick may close it (its erase is posted)
    all.reserve(l.sessions.size());
    for (auto& [raw, s] : l.sessions) all.push_back(raw);
    for (auto* s : all) s->tick(now);
    sweep(l);
  });
}

void gateway::impl::each_session(void (session::*what)()) {
  for (auto& l : loops)
    asio::post(l->ctx, [&l = *l, what] {
      std::vector<std::shared_ptr<session>> all;
      for (auto& [raw, s] : l.sessions) all.push_back(s);
      for (auto& s : all) ((*s).*what)();
    });
}

bool gateway::impl::wait_sessions(steady::time_point until, bool for_requests) {
  std::unique_lock lock{m};
  return drain_cv.wait_until(lock, until,
                             [&] { return (!for_requests || in_flight == 0) && connections == 0; });
}

void gateway::impl::start(client& c) {
  conn = &c;
  max_body = opts.max_body;
  if (auto broker_max = c.max_payload(); broker_max != 0 && broker_max < max_body)
    max_body = static_cast<std::size_t>(broker_max);
  for (std::size_t i = 0; i < opts.threads; ++i) loops.push_back(std::make_unique<loop>());
  auto& first = loops[0]->ctx;
  auto fail = [&](const std::string& why) {
    acceptor.reset();
    loops.clear();
    throw config_error("http gateway: cannot listen on " + opts.listen + ":" + std::to_string(opts.port) + ": " +
                       why);
  };
  beast::error_code ec;
  tcp::endpoint at;
  if (auto a = asio::ip::make_address(opts.listen, ec); !ec) {
    at = {a, static_cast<unsigned short>(opts.port)};
  } else { // a host name: its first address
    tcp::resolver r{first};
    auto found = r.resolve(opts.listen, std::to_string(opts.port), ec);
    if (ec || found.empty()) fail("not an address of this host");
    at = found.begin()->endpoint();
  }
  // SO_REUSEADDR only (a restart binds at once); never SO_REUSEPORT, with
  // which a second gateway on a port in use would share it silently.
  acceptor.emplace(first);
  acceptor->open(at.protocol(), ec);
  if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor->bind(at, ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    fail(ec == asio::error::address_in_use                     ? std::string{"port in use"}
         : ec == boost::system::errc::address_not_available ? std::string{"not an address of this host"}
                                                              : ec.message());
  }
  port = acceptor->local_endpoint().port();
  accept_timer.emplace(first);
  accept();
  for (auto& l : loops) {
    sweep(*l);
    l->thread = std::thread([&ctx = l->ctx] {
      for (;;) {
        try {
          ctx.run();
          return;
        } catch (const std::exception&) { // a handler's bug: the loop serves on
        }
      }
    });
  }
  started = true;
}

void gateway::impl::stop() {
  if (!started || stopped) return;
  stopped = true;
  stopping = true;
  asio::post(loops[0]->ctx, [this] { // no more accepts
    beast::error_code ec;
    acceptor->close(ec);
    accept_timer->cancel();
  });
  each_session(&session::close_if_idle);
  if (!wait_sessions(steady::now() + opts.drain_timeout, true)) {
    each_session(&session::abort); // past the drain timeout: answered 503, or closed
    wait_sessions(steady::now() + io_timeout + linger_time, false);
  }
  box->close(); // a late answer from the client: dropped
  for (auto& l : loops) {
    l->busy.reset();
    l->ctx.stop();
  }
  for (auto& l : loops) l->thread.join();
  acceptor.reset();
  accept_timer.reset();
  for (auto& l : loops) l->sessions.clear();
  loops.clear(); // what was still queued goes, and the sessions it held
}

std::string gateway::impl::metrics_text() const {
  observe::prometheus_text t;
  const auto name = opts.listen + ":" + std::to_string(port);
  const observe::labels l{{"gateway", name}};
  t.family("plexus_http_requests_total", "counter", "HTTP requests the gateway answered, by status class.");
  const std::pair<const char*, std::uint64_t> by[] = {
    {"2xx", ok.load()}, {"4xx", client_errors.load()}, {"5xx", server_errors.load()}};
  for (const auto& [cls, n] : by) t.sample("plexus_http_requests_total", {{"gateway", name}, {"class", cls}}, n);
  t.family("plexus_http_too_many_total", "counter", "Requests answered 429 past max_concurrent.");
  t.sample("plexus_http_too_many_total", l, too_many.load());
  t.family("plexus_http_in_flight", "gauge", "Requests waiting on the broker now.");
  t.sample("plexus_http_in_flight", l, in_flight.load());
  t.family("plexus_http_connections", "gauge", "Connections open and served now.");
  t.sample("plexus_http_connections", l, connections.load());
  t.family("plexus_http_request_duration_seconds", "histogram",
           "Requests from arrival to answer (the broker's round trip included).");
  observe::write_histogram(t, "plexus_http_request_duration_seconds", l, durations);
  return t.str();
}

gateway::gateway(http_options o) : impl_(std::make_shared<impl>()) {
  auto bad = detail::check_options(o);
  if (!bad.empty()) {
    std::string text = "http gateway: ";
    for (std::size_t i = 0; i < bad.size(); ++i) text += (i ? "; " : "") + bad[i];
    throw std::invalid_argument(text);
  }
  impl_->opts = std::move(o);
}

gateway::~gateway() { stop(); }

void gateway::start(client& c) {
  if (impl_->started || impl_->stopped) throw std::logic_error("http gateway: started twice");
  impl_->start(c);
}

void gateway::start(node& n) {
  start(n.client());
  n.add_metrics([w = std::weak_ptr<impl>{impl_}] {
    auto g = w.lock(); // a gateway gone before its node: nothing
    return g ? g->metrics_text() : std::string{};
  });
}

void gateway::stop() { impl_->stop(); }

std::string gateway::metrics_text() const { return impl_->metrics_text(); }

int gateway::port() const noexcept { return impl_->port; }

gateway_stats gateway::stats() const noexcept {
  const auto& g = *impl_;
  return {g.requests, g.ok, g.client_errors, g.server_errors, g.too_many, g.in_flight, g.connections};
}

} // namespace plexus::actors
