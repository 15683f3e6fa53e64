// SPDX-License-Identifier: Apache-2.0
// The HTTP gateway's glue: cpp-httplib parses and writes HTTP; each
// connection is served on a thread of its own (made as connections come,
// up to max_connections), and a request's thread waits for the client's
// answer (a reply or a CONFIRM, handed over from the client's I/O thread
// under a mutex). The keep-alive loop is ours (Server's
// process_and_close_socket, the hook its SSLServer overrides too), so stop()
// can close idle connections at once instead of waiting out their timeout.
#include "plexus/actors/http.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>

#include <httplib.h>

#include "gateway_core.hpp"
#include "json_msgpack.hpp"
#include "http_io.hpp"
#include "plexus/metrics.hpp"
#include "plexus/node.hpp"

namespace plexus::actors {

namespace {

using namespace std::chrono;
using steady = steady_clock;
using detail::wait_fd;

constexpr std::size_t max_requests_per_connection = 1000; // nginx's keepalive_requests
constexpr auto reply_grace = seconds{1}; // past a request's timeout, should the client not answer

// A request's answer, handed from the client's I/O thread to the waiting one.
struct pending {
  std::mutex m;
  std::condition_variable cv;
  bool done = false, aborted = false;
  reply r;
};

std::uint64_t random64() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

std::uint64_t unix_ns() {
  return static_cast<std::uint64_t>(
    duration_cast<nanoseconds>(system_clock::now().time_since_epoch()).count());
}

} // namespace

struct gateway::impl {
  http_options opts;
  client* conn = nullptr;
  std::size_t max_body = 0; // max_body, or the broker's max_payload when smaller
  std::unique_ptr<httplib::Server> server;
  std::thread listener;
  int port = 0;
  int stop_fd = -1;
  std::atomic<bool> stopping{false};
  bool started = false, stopped = false;
  std::atomic<std::uint64_t> requests{0}, ok{0}, client_errors{0}, server_errors{0}, too_many{0};
  std::atomic<std::uint64_t> in_flight{0}, connections{0};
  observe::latency_histogram durations; // arrival to answer, every request
  std::mutex m; // guards the sets below; with drain_cv, stop()'s waits
  std::condition_variable drain_cv;
  std::set<int> sockets;
  std::set<pending*> waiting;

  // cpp-httplib's server with plexus's keep-alive loop.
  class server_type final : public httplib::Server {
  public:
    explicit server_type(impl& g) : g_(g) {}
    /// cpp-httplib 0.11 listens with a backlog of 5: connections opened
    /// together (a client's pool, keep-alive ending on many at once) then
    /// wait out a 1 s SYN retransmit. Linux takes a second listen().
    void widen_backlog() { ::listen(svr_sock_, SOMAXCONN); }

  private:
    bool process_and_close_socket(socket_t sock) override {
      int one = 1;
      ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); // headers and body are two writes
      g_.opened(sock);
      detail::socket_stream s{sock};
      bool ret = false;
      auto idle_ms = static_cast<int>(std::min<long long>(g_.opts.keep_alive_timeout.count(), 86'400'000));
      for (auto n = max_requests_per_connection; n > 0 && !g_.stopping; --n) {
        if (!s.buffered() && wait_fd(sock, POLLIN, g_.stop_fd, idle_ms) <= 0) break;
        bool closed = false;
        ret = process_request(s, n == 1 || g_.stopping, closed, [](httplib::Request&) {});
        if (!ret || closed) break;
      }
      g_.closed(sock);
      ::shutdown(sock, SHUT_RDWR);
      ::close(sock);
      return ret;
    }
    impl& g_;
  };

  void opened(int sock) {
    std::lock_guard lock{m};
    sockets.insert(sock);
    ++connections;
  }
  void closed(int sock) {
    {
      std::lock_guard lock{m};
      sockets.erase(sock);
      --connections;
    }
    if (stopping) drain_cv.notify_all();
  }

  void count(int status) {
    ++requests;
    if (status < 300) ++ok;
    else if (status < 500) ++client_errors;
    else ++server_errors;
  }

  static void write(const detail::http_answer& a, httplib::Response& res) {
    res.status = a.status;
    for (const auto& [k, v] : a.headers) res.set_header(k, v);
    res.set_content(a.body, a.content_type);
  }

  // Waits for `p` until `until`; false: timed out.
  bool wait(const std::shared_ptr<pending>& p, steady::time_point until) {
    {
      std::lock_guard lock{m};
      waiting.insert(p.get());
    }
    bool answered = false;
    {
      std::unique_lock lock{p->m};
      answered = p->cv.wait_until(lock, until, [&] { return p->done || p->aborted; });
    }
    std::lock_guard lock{m};
    waiting.erase(p.get());
    return answered;
  }

  detail::http_answer forward(const httplib::Request& req, const detail::route_target& t,
                              const detail::timeout_choice& tc, const std::string& traceparent) {
    publish_options po;
    po.traceparent = traceparent;
    auto start = steady::now();
    auto p = std::make_shared<pending>();
    auto settle = [p](reply r) {
      {
        std::lock_guard lock{p->m};
        p->r = std::move(r);
        p->done = true;
      }
      p->cv.notify_one();
    };
    // JSON in: msgpack on (a typed handler's map); JSON out for whoever asked.
    const bool json_in = opts.json && req.get_header_value("Content-Type").starts_with("application/json");
    const bool json_out =
      opts.json && (json_in || req.get_header_value("Accept").find("application/json") != std::string::npos);
    std::string converted;
    if (json_in) {
      std::string why;
      if (!detail::json_to_msgpack(req.body, converted, why))
        return detail::error_answer(400, "bad_json", "the body is not JSON: " + why);
    }
    const std::string& body = json_in ? converted : req.body;
    if (t.request) {
      po.deadline_ns = detail::deadline_ns(unix_ns(), tc.value);
      conn->request_async(t.topic, body, tc.value, settle, po);
      if (!wait(p, start + tc.value + reply_grace)) p->r.code = status_timeout;
      if (p->aborted && !p->done) return stopped_answer(t.topic);
      auto a = detail::answer_reply(p->r, t.topic, tc.value);
      if (std::string text; json_out && a.status == 200 && detail::msgpack_to_json(a.body, text)) {
        a.body = std::move(text);
        a.content_type = "application/json";
      }
      return a;
    }
    std::string id;
    if (req.has_header("X-Msg-Id")) {
      id = req.get_header_value("X-Msg-Id");
      if (!detail::valid_msg_id(id))
        return detail::error_answer(400, "bad_request", "X-Msg-Id: 1-64 bytes of visible ASCII");
    } else {
      id = detail::hex_id(random64(), random64());
    }
    po.msg_id = id;
    if (tc.from_header) po.deadline_ns = detail::deadline_ns(unix_ns(), tc.value);
    conn->publish_confirmed(
      t.topic, body,
      [settle](std::uint32_t code) {
        settle(reply{code, {}, {}, {}, {}});
      },
      po);
    if (!wait(p, start + tc.value)) p->r.code = status_timeout;
    if (p->aborted && !p->done) return stopped_answer(t.topic);
    return detail::answer_confirm(p->r.code, id, t.topic, tc.value);
  }

  static detail::http_answer stopped_answer(const std::string& topic) {
    return detail::error_answer(503, "stopping", "the gateway stopped before " + topic + " answered");
  }

  detail::http_answer answer(const httplib::Request& req, std::string& traceparent) {
    if (stopping) {
      auto a = detail::error_answer(503, "stopping", "the gateway is stopping");
      a.headers.emplace_back("Connection", "close");
      return a;
    }
    auto route = detail::match_route(opts, req.method, req.path);
    if (!route.target) return route.refusal;
    traceparent = req.get_header_value("traceparent");
    if (!detail::valid_traceparent(traceparent))
      traceparent = detail::make_traceparent(random64(), random64(), random64());
    std::string header;
    bool has_timeout = req.has_header("X-Request-Timeout");
    if (has_timeout) header = req.get_header_value("X-Request-Timeout");
    auto tc = detail::choose_timeout(has_timeout ? &header : nullptr, route.target->timeout, opts);
    if (!tc.error.empty()) return detail::error_answer(400, "bad_request", tc.error);
    if (req.body.size() > max_body) return detail::answer_status(413, max_body);
    if (++in_flight > opts.max_concurrent) {
      release();
      ++too_many;
      return detail::error_answer(429, "too_many_requests",
                                  std::to_string(opts.max_concurrent) +
                                    " requests in flight (max_concurrent)");
    }
    struct guard {
      impl& g;
      ~guard() { g.release(); }
    } g{*this};
    return forward(req, *route.target, tc, traceparent);
  }

  void release() {
    if (--in_flight == 0 && stopping) {
      { std::lock_guard lock{m}; }
      drain_cv.notify_all();
    }
  }

  void serve(const httplib::Request& req, httplib::Response& res) {
    const auto arrived = steady::now();
    std::string traceparent;
    detail::http_answer a;
    try {
      a = answer(req, traceparent);
    } catch (const std::exception& e) { // e.g. the broker's limits, met on publishing
      a = detail::error_answer(500, "internal", e.what());
    }
    if (!traceparent.empty()) a.headers.emplace_back("traceparent", traceparent);
    count(a.status);
    write(a, res);
    durations.record(static_cast<std::uint64_t>(duration_cast<nanoseconds>(steady::now() - arrived).count()));
  }

  std::string metrics_text() const {
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

  void start(client& c) {
    conn = &c;
    max_body = opts.max_body;
    if (auto broker_max = c.max_payload(); broker_max != 0 && broker_max < max_body)
      max_body = static_cast<std::size_t>(broker_max);
    stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd < 0) throw std::runtime_error(std::string{"http gateway: eventfd: "} + std::strerror(errno));
    server = std::make_unique<server_type>(*this);
    auto handler = [this](const httplib::Request& req, httplib::Response& res) { serve(req, res); };
    server->Get(".*", handler).Post(".*", handler).Put(".*", handler).Patch(".*", handler);
    server->Delete(".*", handler).Options(".*", handler);
    // Statuses cpp-httplib sets itself (413 past max_body, 400): with the JSON body.
    server->set_error_handler(
      httplib::Server::HandlerWithResponse{[this](const httplib::Request&, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        auto a = detail::answer_status(res.status, max_body);
        count(a.status);
        write(a, res);
        return httplib::Server::HandlerResponse::Handled;
      }});
    server->set_payload_max_length(max_body);
    server->set_keep_alive_max_count(max_requests_per_connection); // what Keep-Alive says
    server->set_keep_alive_timeout(
      std::max<time_t>(1, duration_cast<seconds>(opts.keep_alive_timeout).count()));
    server->new_task_queue = [n = opts.max_connections] { return new detail::elastic_pool(n); };
    // SO_REUSEADDR only: cpp-httplib's default adds SO_REUSEPORT, and a
    // second gateway on a port in use would then share it silently.
    server->set_socket_options([](socket_t s) {
      int yes = 1;
      ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    errno = 0;
    port = opts.port == 0 ? server->bind_to_any_port(opts.listen)
                          : (server->bind_to_port(opts.listen, opts.port) ? opts.port : -1);
    if (port <= 0) {
      auto why = errno == EADDRINUSE ? std::string{"port in use"}
                 : errno != 0        ? std::string{std::strerror(errno)}
                                     : std::string{"not an address of this host"};
      port = 0;
      server.reset();
      ::close(stop_fd);
      stop_fd = -1;
      throw config_error("http gateway: cannot listen on " + opts.listen + ":" + std::to_string(opts.port) +
                         ": " + why);
    }
    static_cast<server_type*>(server.get())->widen_backlog();
    listener = std::thread([s = server.get()] { s->listen_after_bind(); });
    // Server::stop() does nothing until the listen loop runs: wait for it.
    while (!server->is_running()) std::this_thread::yield();
    started = true;
  }

  void stop() {
    if (!started || stopped) return;
    stopped = true;
    stopping = true;
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(stop_fd, &one, sizeof one); // idle keep-alive connections close
    server->stop();                                               // no more accepts
    auto until = steady::now() + opts.drain_timeout;
    std::unique_lock lock{m};
    drain_cv.wait_until(lock, until, [this] { return in_flight == 0 && sockets.empty(); });
    for (auto* p : waiting) { // past the drain timeout: answered 503
      std::lock_guard pl{p->m};
      p->aborted = true;
      p->cv.notify_one();
    }
    for (int s : sockets) ::shutdown(s, SHUT_RD); // a client that sends nothing more
    lock.unlock();
    listener.join(); // cpp-httplib joins the connections' threads
    server.reset();
    ::close(stop_fd);
    stop_fd = -1;
  }
};

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
