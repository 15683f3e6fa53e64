// SPDX-License-Identifier: Apache-2.0
// The webhook sink: a blocking function whose instances each POST one
// message at a time with cpp-httplib's client. One attempt per delivery:
// a failure worth retrying NACKs with its backoff as the delay
// (plexus::error::retry_after), so the message waits in the broker, not in
// an instance, and the broker redelivers it then (its delivery count is the
// attempt count, so max_deliver bounds the attempts across nodes and
// restarts).

#include "plexus/actors/sinks.hpp"

#include <chrono>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <httplib.h>

#include "plexus/topic.hpp"
#include "actor_support.hpp"
#include "sink_core.hpp"

namespace plexus::actors {
namespace {

using std::chrono::milliseconds;

struct webhook_config {
  webhook_options o;
  detail::url_parts url;
  std::string base; // scheme://host:port, what httplib::Client takes
};

/// Idle clients (each keeps its connection alive), lent to one POST at a
/// time: instances are threads, and one client serves one request at once.
class client_pool {
public:
  explicit client_pool(std::shared_ptr<const webhook_config> cfg) : cfg_(std::move(cfg)) {}

  std::unique_ptr<httplib::Client> take() {
    {
      std::lock_guard lock{m_};
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    auto c = std::make_unique<httplib::Client>(cfg_->base);
    auto t = cfg_->o.timeout;
    c->set_connection_timeout(t);
    c->set_read_timeout(t);
    c->set_write_timeout(t);
    c->set_keep_alive(true);
    return c;
  }
  void give_back(std::unique_ptr<httplib::Client> c) {
    std::lock_guard lock{m_};
    idle_.push_back(std::move(c));
  }

private:
  std::shared_ptr<const webhook_config> cfg_;
  std::mutex m_;
  std::vector<std::unique_ptr<httplib::Client>> idle_;
};

double jitter_unit() {
  thread_local std::minstd_rand gen{std::random_device{}()};
  return std::uniform_real_distribution<double>{0.0, 1.0}(gen);
}

/// This invocation's span as the parent of the POST (the incoming flags kept).
std::string outgoing_traceparent(context& ctx) {
  auto in = ctx.traceparent();
  std::string_view flags = in.size() == 55 ? in.substr(53) : std::string_view{"01"};
  return "00-" + std::string{ctx.trace_id()} + "-" + std::string{ctx.span_id()} + "-" + std::string{flags};
}

result<void> post(const webhook_config& cfg, client_pool& pool, std::string_view payload, context& ctx) {
  httplib::Headers h;
  for (auto& [k, v] : cfg.o.headers) h.emplace(k, v);
  h.emplace("X-Plexus-Topic", std::string{ctx.topic()});
  h.emplace("X-Plexus-Msg-Id", std::string{ctx.msg_id()});
  h.emplace("X-Plexus-Delivery", std::to_string(ctx.delivery()));
  h.emplace("traceparent", outgoing_traceparent(ctx));
  auto c = pool.take();
  auto res = c->Post(cfg.url.path, h, payload.data(), payload.size(), cfg.o.content_type);
  int status = res ? res->status : 0;
  auto text = detail::answer_text(status, res ? std::string_view{res->body} : std::string_view{},
                                  res ? std::string{} : httplib::to_string(res.error()));
  pool.give_back(std::move(c));
  switch (detail::classify_answer(status)) {
    case detail::webhook_verdict::delivered:
      return {};
    case detail::webhook_verdict::refused:
      return reject{"webhook " + cfg.o.url + ": " + text};
    case detail::webhook_verdict::retry:
      break;
  }
  auto attempt = ctx.delivery();
  if (attempt >= cfg.o.max_deliver)
    return error{"webhook " + cfg.o.url + ": gave up after " + std::to_string(attempt) + " attempts: " + text};
  return error{"webhook " + cfg.o.url + ": " + text}.retry_after(
    detail::backoff_after(attempt, cfg.o.backoff_initial, cfg.o.backoff_max, jitter_unit()));
}

bool valid_header_name(std::string_view n) {
  return !n.empty() && n.find_first_of(" \t\r\n:") == std::string_view::npos;
}
bool valid_header_value(std::string_view v) { return v.find_first_of("\r\n") == std::string_view::npos; }

std::shared_ptr<const webhook_config> check(webhook_options o) {
  std::string problems;
  auto bad = [&](const std::string& what) { detail::add_problem(problems, what); };
  if (!detail::valid_token(o.name, detail::max_sink_name))
    bad("name \"" + o.name + "\": 1-40 letters, digits, '_' or '-'");
  if (auto why = detail::topic_problem("on", o.on, true); !why.empty()) bad(why);
  auto url = detail::parse_url(o.url);
  if (!url) bad("url \"" + o.url + "\": not http://host[:port][/path] or https://...");
  if (o.timeout.count() <= 0) bad("timeout " + std::to_string(o.timeout.count()) + "ms: more than 0");
  if (o.max_deliver == 0 || o.max_deliver > 100)
    bad("max_deliver " + std::to_string(o.max_deliver) + ": 1 to 100");
  if (o.backoff_initial.count() <= 0 || o.backoff_max < o.backoff_initial)
    bad("backoff " + std::to_string(o.backoff_initial.count()) + "ms to " + std::to_string(o.backoff_max.count()) +
        "ms: initial more than 0, max at least initial");
  else if (o.timeout + o.backoff_max >= std::chrono::seconds{15})
    bad("timeout + backoff_max " + std::to_string((o.timeout + o.backoff_max).count()) +
        "ms: under 15000 (a message may wait for one attempt before its own, and an unACKed one is "
        "redelivered after 30 s)");
  if (o.content_type.empty() || !valid_header_value(o.content_type))
    bad("content_type \"" + o.content_type + "\": not empty, no CR or LF");
  for (auto& [k, v] : o.headers)
    if (!valid_header_name(k) || !valid_header_value(v))
      bad("header \"" + k + "\": a name without spaces or ':', a value without CR or LF");
  if (o.concurrency == 0 || o.concurrency > 256)
    bad("concurrency " + std::to_string(o.concurrency) + ": 1 to 256");
  if (!problems.empty()) throw std::invalid_argument("webhook \"" + o.name + "\": " + problems);
  auto host = url->host.find(':') != std::string::npos ? "[" + url->host + "]" : url->host;
  auto base = (url->https ? "https://" : "http://") + host + ":" + std::to_string(url->port);
  return std::make_shared<const webhook_config>(webhook_config{std::move(o), std::move(*url), std::move(base)});
}

} // namespace

std::string webhook_function_name(std::string_view name) { return "webhook-" + std::string{name}; }

function_builder& add_webhook_sink(service& svc, webhook_options o) {
  auto cfg = check(std::move(o));
  auto pool = std::make_shared<client_pool>(cfg);
  return svc.function(webhook_function_name(cfg->o.name))
    .on(cfg->o.on)
    .instances(cfg->o.concurrency)
    .prefetch(cfg->o.concurrency) // each waits behind one attempt at most (see the 15 s bound)
    .blocking()
    .max_deliver(cfg->o.max_deliver)
    .handle([cfg, pool](std::string_view payload, context& ctx) -> result<void> {
      return post(*cfg, *pool, payload, ctx);
    });
}

} // namespace plexus::actors
