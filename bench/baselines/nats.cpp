// SPDX-License-Identifier: Apache-2.0
#include "baselines/nats.hpp"

#include <charconv>
#include <cstdio>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>
#include <memory>
#include <stop_token>
#include <thread>
#include <vector>

#if PLEXUS_BENCH_HAVE_NATS
#include <nats/nats.h>
#endif

#include "scenarios/durable.hpp"
#include "scenarios/reqrep.hpp"

namespace plexus::bench {

namespace {

/// The nats-server binary: PLEXUS_NATS_SERVER, else the one found at
/// configure time (empty if none was).
[[maybe_unused]] std::filesystem::path server_path() {
  if (const char* env = std::getenv("PLEXUS_NATS_SERVER"); env != nullptr && *env != '\0')
    return env;
  return PLEXUS_BENCH_NATS_SERVER;
}

} // namespace

std::string nats_missing() {
#if PLEXUS_BENCH_HAVE_NATS
  std::error_code ec;
  if (auto binary = server_path(); binary.empty() || !std::filesystem::exists(binary, ec))
    return "no nats-server binary (make bench installs it, or set PLEXUS_NATS_SERVER)";
  return {};
#else
  return "plexus-bench was built without libnats-dev (make bench installs it)";
#endif
}

#if PLEXUS_BENCH_HAVE_NATS

namespace {

using namespace std::chrono_literals;

// ---------------------------------------------------------------- libnats

[[noreturn]] void nats_failed(std::string_view what, natsStatus s) {
  std::string text = std::string{what} + ": " + natsStatus_GetText(s);
  natsStatus last = NATS_OK;
  if (const char* detail = nats_GetLastError(&last); detail != nullptr && *detail != '\0')
    text += std::string{" ("} + detail + ")";
  throw std::runtime_error(text);
}

void check(natsStatus s, std::string_view what) {
  if (s != NATS_OK) [[unlikely]] nats_failed(what, s);
}

struct nats_free {
  void operator()(natsOptions* p) const noexcept { natsOptions_Destroy(p); }
  // Closes the connection first if still open.
  void operator()(natsConnection* p) const noexcept { natsConnection_Destroy(p); }
  // Removes the interest on the server first if still subscribed.
  void operator()(natsSubscription* p) const noexcept { natsSubscription_Destroy(p); }
  void operator()(natsMsg* p) const noexcept { natsMsg_Destroy(p); }
};
using options_ptr = std::unique_ptr<natsOptions, nats_free>;
using connection_ptr = std::unique_ptr<natsConnection, nats_free>;
using subscription_ptr = std::unique_ptr<natsSubscription, nats_free>;
using message_ptr = std::unique_ptr<natsMsg, nats_free>;

constexpr std::int64_t connect_timeout_ms = 1000;
constexpr std::int64_t flush_timeout_ms = 30'000;
constexpr std::int64_t write_deadline_ms = 10'000;
constexpr std::int64_t next_msg_timeout_ms = 20; // how often a receiver sees a stop request

/// One connection, no reconnects: a benchmark connection that drops is a
/// failed run, not something to paper over.
/// `send_asap`: every publish is written at once instead of by libnats'
/// flusher thread (which batches): for latency, not throughput.
natsStatus try_connect(const std::string& url, connection_ptr& out, bool send_asap = false) {
  natsOptions* raw = nullptr;
  check(natsOptions_Create(&raw), "natsOptions_Create");
  options_ptr opts{raw};
  check(natsOptions_SetURL(opts.get(), url.c_str()), "natsOptions_SetURL");
  check(natsOptions_SetTimeout(opts.get(), connect_timeout_ms), "natsOptions_SetTimeout");
  check(natsOptions_SetAllowReconnect(opts.get(), false), "natsOptions_SetAllowReconnect");
  // Without one a publisher blocks forever in send() on a stalled server;
  // 10 s is nats-server's own write deadline towards clients.
  check(natsOptions_SetWriteDeadline(opts.get(), write_deadline_ms), "natsOptions_SetWriteDeadline");
  check(natsOptions_SetSendAsap(opts.get(), send_asap), "natsOptions_SetSendAsap");
  if (url.starts_with("tls://")) { // the bench's own self-signed server
    check(natsOptions_SetSecure(opts.get(), true), "natsOptions_SetSecure");
    check(natsOptions_SkipServerVerification(opts.get(), true),
          "natsOptions_SkipServerVerification");
  }
  natsConnection* nc = nullptr;
  auto s = natsConnection_Connect(&nc, opts.get());
  if (s == NATS_OK) out.reset(nc);
  return s;
}

connection_ptr connect(const std::string& url, bool send_asap = false) {
  connection_ptr nc;
  check(try_connect(url, nc, send_asap), "cannot connect to nats-server at " + url);
  return nc;
}

// ---------------------------------------------------------------- server

std::filesystem::path nats_server_binary() {
  auto configured = server_path(); // PLEXUS_NATS_SERVER overrides configure's
  if (configured.empty())
    throw std::runtime_error("nats-server was not found when plexus was configured; install "
                             "the Debian package nats-server (or set PLEXUS_NATS_SERVER)");
  return configured;
}

/// A self-signed certificate for 127.0.0.1 in `dir` (cert.pem, key.pem),
/// made with openssl: what the TLS baseline serves.
void make_certificate(const std::filesystem::path& dir) {
  const auto log = dir / "openssl.log";
  child_process openssl{{"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                         "/CN=127.0.0.1", "-keyout", (dir / "key.pem").string(), "-out",
                         (dir / "cert.pem").string()},
                        log};
  if (!openssl.wait_for_exit(10s) || !std::filesystem::exists(dir / "cert.pem"))
    throw std::runtime_error("openssl could not make the TLS baseline's certificate: "
                             + tail_of(log));
}

std::vector<std::string> server_argv(const std::filesystem::path& dir, bool tls) {
  auto binary = nats_server_binary();
  if (!std::filesystem::exists(binary))
    throw std::runtime_error(binary.string() + " does not exist; install the Debian package "
                             "nats-server (or set PLEXUS_NATS_SERVER)");
  // -p -1: the server picks a free port and writes it to a ports file in
  // --ports_file_dir once it listens. Defaults otherwise (max payload 1 MB,
  // per-client pending 64 MB, as nats-server ships).
  std::vector<std::string> argv{binary.string(), "-a", "127.0.0.1", "-p", "-1",
                                "--ports_file_dir", dir.string()};
  if (tls) {
    make_certificate(dir);
    argv.insert(argv.end(), {"--tls", "--tlscert", (dir / "cert.pem").string(), "--tlskey",
                             (dir / "key.pem").string()});
  }
  return argv;
}

/// As server_argv, with JetStream on and its file store in `store_dir`.
/// Its defaults otherwise: the file store syncs every 2 minutes, not per
/// message (nats-server 2.9 has no setting for it).
std::vector<std::string> jetstream_argv(const std::filesystem::path& dir,
                                        const std::filesystem::path& store_dir) {
  auto argv = server_argv(dir, false);
  argv.insert(argv.end(), {"-js", "-sd", store_dir.string()});
  return argv;
}

/// The client URL in a ports file ({"nats":["nats://127.0.0.1:4222"],...};
/// tls:// with TLS),
/// "" if there is none (yet).
std::string url_in_ports_file(const std::filesystem::path& dir) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator{dir, ec}) {
    if (entry.path().extension() != ".ports") continue;
    auto text = tail_of(entry.path(), 4096);
    auto begin = text.find("nats://"); // "tls://" when it serves TLS
    if (begin == std::string::npos) begin = text.find("tls://");
    auto end = text.find('"', begin);
    if (begin != std::string::npos && end != std::string::npos)
      return text.substr(begin, end - begin);
  }
  return {};
}

} // namespace

nats_server::nats_server(bool tls, std::chrono::milliseconds ready_within)
  : dir_("plexus-bench-nats-"), process_(server_argv(dir_.path(), tls), dir_.path() / "nats-server.log") {
  wait_ready(tls, ready_within);
}

nats_server::nats_server(const jetstream& js, std::chrono::milliseconds ready_within)
  : dir_("plexus-bench-nats-"),
    process_(jetstream_argv(dir_.path(), js.store_dir), dir_.path() / "nats-server.log") {
  wait_ready(false, ready_within);
}

void nats_server::wait_ready(bool tls, std::chrono::milliseconds ready_within) {
  const auto log = dir_.path() / "nats-server.log";
  const auto until = steady::now() + ready_within;
  natsStatus last = NATS_OK;
  // Ready means a client connected; polled, with a deadline.
  while (steady::now() < until) {
    if (!process_.running())
      throw std::runtime_error("nats-server " + process_.describe() +
                               " before it was ready; its log:\n" + tail_of(log));
    if (auto url = url_in_ports_file(dir_.path()); !url.empty()) {
      if (tls) url.replace(0, url.find("://"), "tls"); // try_connect then speaks TLS
      connection_ptr probe;
      last = try_connect(url, probe);
      if (last == NATS_OK) {
        url_ = url;
        return;
      }
    }
    std::this_thread::sleep_for(5ms);
  }
  throw std::runtime_error("nats-server was not ready within " +
                           std::to_string(ready_within.count()) + " ms (last connect: " +
                           natsStatus_GetText(last) + "); its log:\n" + tail_of(log));
}

namespace {

// ---------------------------------------------------------------- runs

constexpr const char* subject = "bench.throughput";
constexpr const char* queue_group = "bench-workers";

/// A sync subscription read by our own thread: we own the thread, so it is
/// joined before the sink it feeds goes away.
void receive(std::stop_token stop, natsSubscription* sub, message_sink& sink,
             std::size_t receiver) noexcept {
  try {
    while (!stop.stop_requested()) {
      natsMsg* raw = nullptr;
      auto s = natsSubscription_NextMsg(&raw, sub, next_msg_timeout_ms);
      if (s == NATS_OK) {
        message_ptr msg{raw};
        const char* data = natsMsg_GetData(msg.get());
        sink.on_message(receiver, natsMsg_GetDataLength(msg.get()) > 0 ? data[0] : '\0');
      } else if (s == NATS_TIMEOUT) {
        continue;
      } else if (s == NATS_SLOW_CONSUMER) {
        continue; // the library dropped messages: they show up as loss
      } else {
        nats_failed("nats subscriber " + std::to_string(receiver), s);
      }
    }
  } catch (...) {
    sink.fail(std::current_exception());
  }
}

run_result run_nats(std::size_t subscribers, const char* group, std::size_t size,
                    std::size_t count, std::vector<std::size_t>* per_subscriber, bool tls = false) {
  // Declaration order is teardown order, reversed: the publisher goes, the
  // receivers are joined, then the subscriber connections close (which
  // stops their reader threads) and only then the subscriptions are freed.
  // Freeing a subscription first races with a reader thread still parsing
  // MSGs for it when the connection is dying (libnats 3.4: use after free).
  nats_server server{tls};
  std::vector<subscription_ptr> subs;
  std::vector<connection_ptr> sub_conns;
  for (std::size_t i = 0; i < subscribers; ++i) {
    sub_conns.push_back(connect(server.url()));
    natsSubscription* raw = nullptr;
    check(group == nullptr
            ? natsConnection_SubscribeSync(&raw, sub_conns.back().get(), subject)
            : natsConnection_QueueSubscribeSync(&raw, sub_conns.back().get(), subject, group),
          "subscribe");
    subs.emplace_back(raw);
    // No client-side limit (the default, 65536 messages / 64 MB, drops as a
    // slow consumer when the subscriber lags): like ZeroMQ's HWM 0.
    check(natsSubscription_SetPendingLimits(raw, -1, -1), "natsSubscription_SetPendingLimits");
    // The server has the interest once it answers this PING.
    check(natsConnection_FlushTimeout(sub_conns.back().get(), flush_timeout_ms), "flush SUB");
  }
  message_sink sink{subscribers, warmup_count(count), count,
                    group == nullptr ? message_sink::delivery::every
                                     : message_sink::delivery::one_each};
  std::vector<std::jthread> receivers; // joined before the sink and subscriptions go
  for (std::size_t i = 0; i < subscribers; ++i)
    receivers.emplace_back(receive, subs[i].get(), std::ref(sink), i);
  auto pub = connect(server.url());

  natsConnection* nc = pub.get();
  auto result = drive(
    sink, size, count,
    [nc](std::span<const char> m) {
      if (auto s = natsConnection_Publish(nc, subject, m.data(), static_cast<int>(m.size()));
          s != NATS_OK) [[unlikely]]
        nats_failed("natsConnection_Publish", s);
    },
    [nc] { check(natsConnection_FlushTimeout(nc, flush_timeout_ms), "flush PUB"); });
  if (per_subscriber != nullptr) *per_subscriber = sink.measured_per_receiver();
  if (sink.malformed() != 0)
    throw std::runtime_error("nats: " + std::to_string(sink.malformed()) +
                             " messages arrived with a payload not sent");
  return result;
}

} // namespace

namespace {

// ---------------------------------------------------------------- request/reply

constexpr const char* rpc_subject = "bench.rpc";
constexpr std::string_view reply_prefix = "bench.reply.";

/// The responder: publishes each request's payload to its reply subject,
/// on the connection it came in on (libnats' delivery thread).
void on_request(natsConnection* nc, natsSubscription*, natsMsg* raw, void*) {
  message_ptr msg{raw};
  if (const char* reply = natsMsg_GetReply(msg.get()); reply != nullptr)
    (void)natsConnection_Publish(nc, reply, natsMsg_GetData(msg.get()),
                                 natsMsg_GetDataLength(msg.get()));
}

class nats_reqrep final : public reqrep_system {
public:
  nats_reqrep(std::size_t size, bool tls) : server_(tls), payload_(size, 'r') {
    // Send ASAP: a round trip waits for no flusher (plexus's client, too,
    // sends as soon as its I/O thread wakes).
    responder_conn_ = connect(server_.url(), true);
    requester_conn_ = connect(server_.url(), true);
    natsSubscription* raw = nullptr;
    check(natsConnection_Subscribe(&raw, responder_conn_.get(), rpc_subject, &on_request, nullptr),
          "subscribe requests");
    responder_sub_.reset(raw);
    check(natsSubscription_SetPendingLimits(raw, -1, -1), "natsSubscription_SetPendingLimits");
    const auto replies = std::string{reply_prefix} + "*";
    check(natsConnection_Subscribe(&raw, requester_conn_.get(), replies.c_str(), &on_reply, this),
          "subscribe replies");
    reply_sub_.reset(raw);
    check(natsSubscription_SetPendingLimits(raw, -1, -1), "natsSubscription_SetPendingLimits");
    // The server has both interests once it answers these PINGs.
    check(natsConnection_FlushTimeout(responder_conn_.get(), flush_timeout_ms), "flush SUB");
    check(natsConnection_FlushTimeout(requester_conn_.get(), flush_timeout_ms), "flush SUB");
  }

  ~nats_reqrep() override {
    // Connections close before their subscriptions are freed (see run_nats).
    requester_conn_.reset();
    responder_conn_.reset();
  }

  void send(std::size_t i) override {
    std::array<char, 48> reply{};
    std::snprintf(reply.data(), reply.size(), "%s%zu", reply_prefix.data(), i);
    if (auto st = natsConnection_PublishRequest(requester_conn_.get(), rpc_subject, reply.data(),
                                                payload_.data(), static_cast<int>(payload_.size()));
        st != NATS_OK) [[unlikely]]
      nats_failed("natsConnection_PublishRequest", st);
  }

private:
  static void on_reply(natsConnection*, natsSubscription*, natsMsg* raw, void* self) {
    message_ptr msg{raw};
    std::string_view reply{natsMsg_GetSubject(msg.get())};
    std::size_t i = 0;
    auto digits = reply.substr(std::min(reply.size(), reply_prefix.size()));
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), i);
    auto& log = static_cast<nats_reqrep*>(self)->log_;
    if (ec != std::errc{} || end != digits.data() + digits.size())
      log.failed("nats: a reply on " + std::string{reply});
    else
      log.answered(i);
  }

  nats_server server_;
  subscription_ptr responder_sub_, reply_sub_;
  connection_ptr responder_conn_, requester_conn_;
  std::string payload_;
};

} // namespace

std::unique_ptr<reqrep_system> make_nats_reqrep(std::size_t size, bool tls) {
  return std::make_unique<nats_reqrep>(size, tls);
}

run_result nats_pubsub_once(std::size_t size, std::size_t count, bool tls) {
  return run_nats(1, nullptr, size, count, nullptr, tls);
}

run_result nats_fanout_once(std::size_t subscribers, std::size_t size, std::size_t count) {
  return run_nats(subscribers, nullptr, size, count, nullptr);
}

run_result nats_queue_once(std::size_t subscribers, std::size_t size, std::size_t count,
                           std::vector<std::size_t>* per_subscriber) {
  return run_nats(subscribers, queue_group, size, count, per_subscriber);
}

// ---------------------------------------------------------------- JetStream

namespace {

constexpr const char* js_stream = "BENCH";
constexpr const char* js_subject = "bench.durable";
constexpr const char* js_consumer = "bench-consumer";
constexpr std::int64_t js_wait_ms = 30'000; // API calls, and a publish's ack

struct js_free {
  void operator()(jsCtx* p) const noexcept { jsCtx_Destroy(p); }
};
using js_ptr = std::unique_ptr<jsCtx, js_free>;

std::string_view data_of(natsMsg* m) {
  return {natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m))};
}

/// libnats' ack handler (its thread): the publish's ack, or why none.
/// The message is ours to destroy.
void on_pub_ack(jsCtx*, natsMsg* raw, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
  message_ptr msg{raw};
  auto& log = *static_cast<durable_log*>(closure);
  durable_kind kind{};
  std::uint64_t i = 0;
  if (!durable_log::parse(data_of(msg.get()), kind, i)) {
    log.fail("nats: an ack for a message never published");
  } else if (pa != nullptr) {
    log.confirmed(kind, i, true);
  } else {
    std::string why = "no ack";
    if (pae != nullptr)
      why = pae->ErrText != nullptr ? pae->ErrText : natsStatus_GetText(pae->Err);
    log.confirmed(kind, i, false, "nats: " + why);
  }
}

/// The consumer: a sync push subscription read (and each message acked)
/// by a thread of ours, joined before the log it feeds goes.
void consume(std::stop_token stop, natsSubscription* sub, durable_log& log) noexcept {
  try {
    while (!stop.stop_requested()) {
      natsMsg* raw = nullptr;
      auto s = natsSubscription_NextMsg(&raw, sub, next_msg_timeout_ms);
      if (s == NATS_TIMEOUT) continue;
      if (s != NATS_OK) nats_failed("nats JetStream consumer", s);
      message_ptr msg{raw};
      log.consumed(data_of(msg.get()));
      check(natsMsg_Ack(msg.get(), nullptr), "natsMsg_Ack");
    }
  } catch (const std::exception& e) {
    log.fail(e.what());
  }
}

js_ptr jetstream_of(natsConnection* nc, jsOptions* o) {
  jsCtx* raw = nullptr;
  check(natsConnection_JetStream(&raw, nc, o), "natsConnection_JetStream");
  return js_ptr{raw};
}

void check_js(natsStatus s, jsErrCode code, std::string_view what) {
  if (s != NATS_OK) nats_failed(std::string{what} + " (JetStream error " + std::to_string(code) + ")", s);
}

} // namespace

durable_result nats_jetstream_once(const durable_spec& spec) {
  nats_server server{nats_server::jetstream{spec.store}};
  durable_log log{spec};

  // Declaration order is teardown order, reversed (see run_nats): the
  // publisher goes, the consumer is joined, its connection closes, then its
  // subscription is freed.
  subscription_ptr sub;
  js_ptr consumer_js;
  connection_ptr consumer_conn;
  std::jthread consumer;

  auto pub = connect(server.url());
  jsOptions jo;
  check(jsOptions_Init(&jo), "jsOptions_Init");
  jo.Wait = js_wait_ms;
  jo.PublishAsync.MaxPending = static_cast<std::int64_t>(spec.window);
  jo.PublishAsync.StallWait = js_wait_ms; // a full window waits for acks, never fails
  jo.PublishAsync.AckHandler = &on_pub_ack;
  jo.PublishAsync.AckHandlerClosure = &log;
  auto js = jetstream_of(pub.get(), &jo);

  // A file stream that keeps a message until a consumer acks it (work
  // queue), with the durable's limits; past them it refuses (discard new).
  jsStreamConfig sc;
  check(jsStreamConfig_Init(&sc), "jsStreamConfig_Init");
  const char* subjects[] = {js_subject};
  sc.Name = js_stream;
  sc.Subjects = subjects;
  sc.SubjectsLen = 1;
  sc.Storage = js_FileStorage;
  sc.Retention = js_WorkQueuePolicy;
  sc.Discard = js_DiscardNew;
  sc.MaxMsgs = static_cast<std::int64_t>(spec.max_msgs);
  sc.MaxBytes = static_cast<std::int64_t>(spec.max_bytes);
  sc.Replicas = 1;
  jsErrCode jerr{};
  check_js(js_AddStream(nullptr, js.get(), &sc, nullptr, &jerr), jerr, "js_AddStream");

  if (spec.consumer) {
    consumer_conn = connect(server.url());
    consumer_js = jetstream_of(consumer_conn.get(), nullptr);
    jsSubOptions so;
    check(jsSubOptions_Init(&so), "jsSubOptions_Init");
    so.Stream = js_stream;
    so.ManualAck = true;
    so.Config.Durable = js_consumer;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.MaxAckPending = spec.credit;
    natsSubscription* raw = nullptr;
    check_js(js_SubscribeSync(&raw, consumer_js.get(), js_subject, nullptr, &so, &jerr), jerr,
             "js_SubscribeSync");
    sub.reset(raw);
    check(natsSubscription_SetPendingLimits(raw, -1, -1), "natsSubscription_SetPendingLimits");
    consumer = std::jthread(consume, raw, std::ref(log));
  }

  auto start = publish_durable(spec, log, [&js](std::string_view p) {
    if (auto s = js_PublishAsync(js.get(), js_subject, p.data(), static_cast<int>(p.size()), nullptr);
        s != NATS_OK) [[unlikely]]
      nats_failed("js_PublishAsync", s);
  }, [&js] {
    jsPubOptions po;
    check(jsPubOptions_Init(&po), "jsPubOptions_Init");
    po.MaxWait = durable_settle_within.count() * 1000;
    check(js_PublishAsyncComplete(js.get(), &po), "js_PublishAsyncComplete");
  });
  return log.result(start);
}


#else // built without libnats: nats_missing() says so and scenarios leave the rows out

namespace {
[[noreturn]] void absent() { throw std::runtime_error(nats_missing()); }
} // namespace

std::unique_ptr<reqrep_system> make_nats_reqrep(std::size_t, bool) { absent(); }
run_result nats_pubsub_once(std::size_t, std::size_t, bool) { absent(); }
run_result nats_fanout_once(std::size_t, std::size_t, std::size_t) { absent(); }
run_result nats_queue_once(std::size_t, std::size_t, std::size_t, std::vector<std::size_t>*) {
  absent();
}
durable_result nats_jetstream_once(const durable_spec&) { absent(); }

#endif

} // namespace plexus::bench
